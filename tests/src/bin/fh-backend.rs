//! `fh-backend`: a tiny HTTP/1.1 backend for the black-box tests.
//!
//! ```text
//! fh-backend --listen ADDR --name NAME [--delay-ms N] [--hsts VALUE] [--fixed-bytes N]
//! ```
//!
//! Every request gets `200`, `Content-Type: text/plain`, `X-Backend: NAME` and a body of lines:
//! `backend=NAME`, `method=..`, `path=..` (path and query), `host=..`, one
//! `header:<name>=<value>` per request header (lowercase names, in order), then
//! `body-bytes=N` (the request body is read and counted, streaming), then `trailer:<name>=<value>`
//! per request trailer. A request with `x-want-trailers` gets a response trailer
//! `x-backend-trailer: done`. `--delay-ms` sleeps before
//! answering, `--hsts` adds `Strict-Transport-Security: VALUE`. `GET /ws` with
//! `Upgrade: websocket` answers `101` and then echoes raw bytes back. Plain HTTP only.
//! Prints `listening on ADDR` once bound.
//!
//! `--fixed-bytes N` is the benchmark mode (`cargo xtask bench`): every request, whatever its
//! method or path, gets `200`, `Content-Type: text/plain`, `X-Backend: NAME` and the same body
//! of N bytes, built once at start, so the backend's cost per request is small and constant.
//! The request body is still read (and discarded) so keep-alive works.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Opts {
    listen: SocketAddr,
    name: String,
    delay: Duration,
    hsts: Option<String>,
    /// `--fixed-bytes N`: the fixed body every request gets.
    fixed: Option<Bytes>,
}

fn usage(msg: &str) -> ! {
    eprintln!("fh-backend: {msg}");
    eprintln!(
        "usage: fh-backend --listen ADDR --name NAME [--delay-ms N] [--hsts VALUE] [--fixed-bytes N]"
    );
    std::process::exit(2);
}

fn parse_args() -> Opts {
    let mut listen = None;
    let mut name = None;
    let mut delay = Duration::ZERO;
    let mut hsts = None;
    let mut fixed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "--listen" => {
                let v = value("--listen");
                listen = Some(
                    v.parse()
                        .unwrap_or_else(|_| usage(&format!("bad address {v:?}"))),
                );
            }
            "--name" => name = Some(value("--name")),
            "--delay-ms" => {
                let v = value("--delay-ms");
                delay = Duration::from_millis(
                    v.parse()
                        .unwrap_or_else(|_| usage(&format!("bad delay {v:?}"))),
                );
            }
            "--hsts" => hsts = Some(value("--hsts")),
            "--fixed-bytes" => {
                let v = value("--fixed-bytes");
                let n: usize = v
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("bad size {v:?}")));
                fixed = Some(fixed_body(n));
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    Opts {
        listen: listen.unwrap_or_else(|| usage("--listen is required")),
        name: name.unwrap_or_else(|| usage("--name is required")),
        delay,
        hsts,
        fixed,
    }
}

/// N bytes of printable text ending in a newline (`ok` then dots), the fixed benchmark body.
fn fixed_body(n: usize) -> Bytes {
    let mut body: Vec<u8> = b"ok"
        .iter()
        .copied()
        .chain(std::iter::repeat(b'.'))
        .take(n)
        .collect();
    if let Some(last) = body.last_mut() {
        *last = b'\n';
    }
    Bytes::from(body)
}

/// The benchmark answer: the request body is drained, the fixed body sent.
async fn fixed_response(
    opts: &Opts,
    body: Bytes,
    req: Request<Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let mut incoming = req.into_body();
    while let Some(frame) = incoming.frame().await {
        if frame.is_err() {
            break;
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "text/plain")
        .header("X-Backend", opts.name.as_str())
        .body(Full::new(body).boxed())
        .expect("fixed response")
}

fn is_ws_upgrade(req: &Request<Incoming>) -> bool {
    req.uri().path() == "/ws"
        && req
            .headers()
            .get(hyper::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn handle(
    opts: Arc<Opts>,
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    if let Some(body) = opts.fixed.clone() {
        return Ok(fixed_response(&opts, body, req).await);
    }
    if is_ws_upgrade(&req) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() || io.flush().await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(hyper::header::UPGRADE, "websocket")
            .header(hyper::header::CONNECTION, "Upgrade")
            .header("X-Backend", opts.name.as_str())
            .body(Full::new(Bytes::new()).boxed())
            .expect("101 response");
        return Ok(resp);
    }

    let mut text = String::new();
    text.push_str(&format!("backend={}\n", opts.name));
    text.push_str(&format!("method={}\n", req.method()));
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    text.push_str(&format!("path={path}\n"));
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    text.push_str(&format!("host={host}\n"));
    for (name, value) in req.headers() {
        text.push_str(&format!(
            "header:{}={}\n",
            name.as_str(),
            String::from_utf8_lossy(value.as_bytes())
        ));
    }

    let want_trailers = req.headers().contains_key("x-want-trailers");
    let mut request_trailers = String::new();
    let mut body = req.into_body();
    let mut count: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    count += data.len() as u64;
                }
                if let Some(trailers) = frame.trailers_ref() {
                    for (name, value) in trailers {
                        request_trailers.push_str(&format!(
                            "trailer:{}={}\n",
                            name.as_str(),
                            String::from_utf8_lossy(value.as_bytes())
                        ));
                    }
                }
            }
            Err(e) => {
                eprintln!("fh-backend: body error: {e}");
                break;
            }
        }
    }
    text.push_str(&format!("body-bytes={count}\n"));
    text.push_str(&request_trailers);

    if !opts.delay.is_zero() {
        tokio::time::sleep(opts.delay).await;
    }

    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "text/plain")
        .header("X-Backend", opts.name.as_str());
    if let Some(hsts) = &opts.hsts {
        resp = resp.header(hyper::header::STRICT_TRANSPORT_SECURITY, hsts.as_str());
    }
    if want_trailers {
        // hyper's HTTP/1.1 server sends only the trailer fields declared here.
        resp = resp.header(hyper::header::TRAILER, "x-backend-trailer");
        resp = resp.header(hyper::header::TRANSFER_ENCODING, "chunked");
    }
    let body = Full::new(Bytes::from(text));
    let body = if want_trailers {
        // `x-want-trailers: 1` asks for a response trailer (chunked over HTTP/1.1).
        body.with_trailers(async {
            let mut t = hyper::HeaderMap::new();
            t.insert(
                "x-backend-trailer",
                hyper::header::HeaderValue::from_static("done"),
            );
            Some(Ok(t))
        })
        .boxed()
    } else {
        body.boxed()
    };
    Ok(resp.body(body).expect("200 response"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let opts = Arc::new(parse_args());
    let listener = match TcpListener::bind(opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fh-backend: bind {}: {e}", opts.listen);
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("local_addr");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {local}");
        let _ = out.flush();
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fh-backend: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let opts = opts.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(opts.clone(), req));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                eprintln!("fh-backend: connection: {e}");
            }
        });
    }
}
