//! The allocation budget of one proxied HTTPS request (a test): the proxy service, its front
//! HTTP/1.1 connection and its pooled backend connection run on the test thread, counted by
//! the counting allocator the unit tests install (`crate::allocs`); the client and the backend
//! run on another thread, not counted. It fails when a change makes the request path allocate
//! more than [`BUDGET`] times per request, or when the request's future grows over
//! [`FUTURE_BUDGET`] bytes, so such a change is made on purpose.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::oneshot};

use super::{Authority, ConnInfo, Proxy, TlsInfo};
use crate::{allocs, config::Config, edge::Edge};

/// Heap allocations (and reallocations) per proxied HTTPS request, at most: measured
/// 2026-12-01 as 14 (701 for 50 requests; 46 before that day's changes: no body watch for a
/// request without a body, the backend URI shared with the request, the forwarding headers
/// written without formatting twice and with constant names, our own backend pool instead
/// of hyper-util's legacy client; 19 until the copy kept for a repeat was taken before the
/// forwarding headers are added, which its clone made allocate again; 17 until the client's
/// address was made a header value once per connection and the ports 80 and 443 constant
/// ones; the request carries `Accept-Encoding`, as browsers' and h2load's do, which cost one
/// more until the filters kept the header value instead of a `String` copy of it): the front
/// connection's request and response heads, the forwarding headers, the backend exchange, the
/// filter chain (HSTS). 9 (450 for 50) since the direct path writes this edge's fields
/// straight into the backend request head (`request::upstream_fields`) instead of inserting
/// them into the client's header map: no map growth, no `Forwarded` value, no copy of the
/// host and no first clone of it; 8 (400 for 50) since the HSTS value is made once, when the
/// configuration is read, and shared by every response. No margin: the count is the same
/// every run, so any growth fails. Raise it on purpose, and say why.
const BUDGET: u64 = 8;

/// Bytes of the future that serves one proxied request ([`Proxy::handle`]), at most: 4,232
/// measured 2026-12-01, 6,808 before that day's changes (the request was sent by a future
/// held twice, moved into the timeout's block and pinned there again, with two `Pool::send`
/// futures in it; `handle` kept a third copy of the request). Every move of the future
/// copies this many bytes (HTTP/2 spawns it as a task), and with hundreds of connections
/// those bytes are cold: moves of futures were about 50 of the 358 cache misses a request
/// had at 512 in flight (BENCHMARKS.md, run N). Run P (2026-12-01): 4,368 once the request's
/// `Accept-Encoding` was kept as the `HeaderValue` (40 bytes, shared with the request)
/// instead of a `String` (24 bytes, one allocation a request), then 3,704 once
/// `Proxy::handle` and `Upstream::forward` returned `async` blocks instead of being `async
/// fn`s, which held the request, the connection's facts and the other by-value parameters
/// twice, and 3,176 since `Pool::send` does the same and the sending block in `forward` stopped
/// rebinding what it took. 1,552 since 2026-12-02 (3,208 before; run Z): hyper's client path
/// (requests with a body, upgrades) and a new backend connection's connect are boxed apart,
/// the request is lent to `Upstream::forward` instead of given (it was held three times), the
/// first try's result is not kept while the second goes, and the fields the filters need are
/// kept once.
const FUTURE_BUDGET: usize = 1600;

/// Requests counted after the warm-up.
const REQUESTS: u64 = 50;

/// The largest request future seen by the test's service.
static FUTURE_SIZE: AtomicUsize = AtomicUsize::new(0);

struct Everything;

impl Authority for Everything {
    fn covers(&self, _: &str) -> bool {
        true
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The backend (128 bytes, as in the bench) and the client, on their own thread.
fn client_and_backend(
    front: SocketAddr,
    backend_tx: std::sync::mpsc::Sender<SocketAddr>,
    warm: oneshot::Sender<()>,
    done: oneshot::Sender<u64>,
) {
    runtime().block_on(async move {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        backend_tx.send(backend.local_addr().unwrap()).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = backend.accept().await else {
                    return;
                };
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                    TokioIo::new(s),
                    service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/plain")
                                .body(Full::new(Bytes::from_static(&[b'x'; 128])))
                                .unwrap(),
                        )
                    }),
                ));
            }
        });
        // The front listener is up before this thread starts.
        let s = tokio::net::TcpStream::connect(front).await.unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        let get = || {
            Request::get("/cart?x=1")
                .header("host", "shop.example.com")
                .header("user-agent", "alloc-budget/1")
                .header("accept", "*/*")
                .header("accept-encoding", "gzip, deflate, br")
                .body(Empty::<Bytes>::new())
                .unwrap()
        };
        let mut ok = 0;
        let mut warm = Some(warm);
        for i in 0..REQUESTS + 5 {
            if i == 5
                && let Some(warm) = warm.take()
            {
                // Warmed up: the backend connection is pooled, the maps have grown.
                warm.send(()).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let resp = tx.send_request(get()).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert!(resp.headers().contains_key("strict-transport-security"));
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 128);
            ok += 1;
        }
        done.send(ok).unwrap();
    });
}

#[test]
fn one_proxied_https_request_stays_within_its_allocation_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (backend_tx, backend_rx) = std::sync::mpsc::channel();
    let (warm_tx, warm_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let rt = runtime();
    let front = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let front_addr = front.local_addr().unwrap();
    let client =
        std::thread::spawn(move || client_and_backend(front_addr, backend_tx, warm_tx, done_tx));
    let backend = backend_rx.recv().unwrap();
    let text = format!(
        "[state]\ndir = \"{}\"\n[[site]]\nname = \"shop\"\ndomains = [\"shop.example.com\"]\n\
         backend = \"http://{backend}\"\nforce_https = true\n",
        dir.path().display()
    );
    let config = Config::from_toml(std::path::Path::new("t.toml"), &text).unwrap();
    let edge = Arc::new(Edge::new(&config).unwrap());
    let proxy = Arc::new(Proxy::new(edge, &config.proxy));
    let (count, served) = rt.block_on(async move {
        tokio::spawn(async move {
            let (s, peer) = front.accept().await.unwrap();
            let tls = Arc::new(TlsInfo {
                sni: Some("shop.example.com".into()),
                authority: Box::new(Everything),
            });
            let conn = ConnInfo::https(peer, 443, tls);
            let svc = service_fn(move |req| {
                let fut = proxy.clone().handle(conn.clone(), req);
                FUTURE_SIZE.fetch_max(std::mem::size_of_val(&fut), Relaxed);
                fut
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
        warm_rx.await.unwrap();
        let before = allocs::this_thread_allocations();
        allocs::count_this_thread(true);
        let t0 = Instant::now();
        let served = done_rx.await.unwrap();
        allocs::count_this_thread(false);
        assert!(t0.elapsed() < Duration::from_secs(30));
        (allocs::this_thread_allocations() - before, served)
    });
    client.join().unwrap();
    let per_request = count / REQUESTS;
    eprintln!("allocations: {count} for {REQUESTS} proxied HTTPS requests ({per_request} each)");
    assert_eq!(served, REQUESTS + 5);
    let size = FUTURE_SIZE.load(Relaxed);
    eprintln!("the request future: {size} bytes");
    assert!(
        size <= FUTURE_BUDGET,
        "the future of one proxied request is now {size} bytes (budget {FUTURE_BUDGET}): box \
         what made it grow, or raise FUTURE_BUDGET and say why"
    );
    assert!(
        per_request <= BUDGET,
        "one proxied HTTPS request now allocates {per_request} times (budget {BUDGET}): if that \
         is on purpose, raise BUDGET and say why"
    );
}
