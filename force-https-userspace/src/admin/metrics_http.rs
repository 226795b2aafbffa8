//! The Prometheus endpoint (`[metrics] listen`): `GET /metrics` in the text exposition format,
//! from the admin service's counters.

use std::sync::Arc;

use http_body_util::Full;
use hyper::{
    Response, StatusCode,
    body::Bytes,
    header::{CONTENT_TYPE, HeaderValue},
    service::service_fn,
};
use tokio::net::TcpListener;

use super::Admin;
use crate::{
    metrics::prometheus_text,
    net::{Shutdown, accept_loop, serve_connection},
};

/// Serves `/metrics` until shutdown.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: Shutdown) {
    let sd = shutdown.clone();
    accept_loop(listener, "metrics listener", sd, move |stream, _| {
        let (admin, shutdown) = (admin.clone(), shutdown.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let admin = admin.clone();
                async move {
                    let (status, body) = if req.uri().path() == "/metrics" {
                        (StatusCode::OK, prometheus_text(&admin.stats()))
                    } else {
                        (StatusCode::NOT_FOUND, "not found\n".to_string())
                    };
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = status;
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = serve_connection(conn, shutdown, |c| c.graceful_shutdown()).await;
        });
    })
    .await;
}
