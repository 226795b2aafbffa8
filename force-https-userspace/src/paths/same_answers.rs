//! One table of requests fed to the three paths' first-request logic: the port-80 socket
//! path ([`super::http80::first`]), the AF_XDP responder ([`super::xdp::responder`]) and the
//! proxy service's decision ([`crate::proxy::Proxy::early`]). They must give the same answer,
//! byte for byte where force-https writes the bytes itself.

use std::{path::Path, sync::Arc};

use force_https_proto::response::{self, RedirectStatus};
use hyper::{Request, Version};

use super::{
    http80::first::{FirstRequest, first_request},
    xdp::responder::{
        Outcome, Responder,
        testing::{frame, payload_of},
    },
};
use crate::{
    config::Config,
    edge::Edge,
    metrics::Metrics,
    proxy::{ConnInfo, Early, Proxy},
};

fn edge(dir: &Path, https_port: u16) -> (Config, Arc<Edge>) {
    let text = format!(
        r#"
[state]
dir = "{}"
[redirect]
https_port = {https_port}
[[site]]
name = "shop"
domains = ["shop.example.test", "*.shop.example.test", "[2001:db8::1]"]
backend = "http://127.0.0.1:9"
force_https = true
exempt_paths = ["/healthz"]
[[site]]
name = "static"
domains = ["x.shop.example.test"]
redirect_code = 308
force_https = true
[[site]]
name = "blog"
domains = ["blog.example.test"]
backend = "http://127.0.0.1:9"
[[site]]
name = "part"
domains = ["part.example.test"]
backend = "http://127.0.0.1:9"
force_https = true
force_paths = ["/admin/", "/login"]
exempt_paths = ["/admin/health"]
"#,
        dir.display()
    );
    let cfg = Config::from_toml(Path::new("t.toml"), &text).unwrap();
    let edge = Arc::new(Edge::new(&cfg).unwrap());
    (cfg, edge)
}

/// What every path must agree on.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    /// A redirect with exactly these bytes (all three paths).
    Redirect(RedirectStatus, &'static str),
    /// Answered by force-https with this status, not by the fast path.
    Local(u16),
    /// Proxied to the backend (the fast path does not answer it).
    Proxy,
}

/// A request head as hyper hands it to the proxy service.
fn hyper_request(raw: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Request::new(&mut headers);
    r.parse(raw).ok()?;
    let mut b = Request::builder()
        .method(r.method?)
        .uri(r.path?)
        .version(if r.version? == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        });
    for h in r.headers.iter() {
        b = b.header(h.name, h.value);
    }
    b.body(()).ok()
}

/// A hyper response as the port-80 connection writes it (Title-Case names, no Date).
fn wire_bytes(resp: &hyper::Response<crate::proxy::Body>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        resp.status().as_u16(),
        resp.status().canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (n, v) in resp.headers() {
        let name: String = n
            .as_str()
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-");
        out.extend_from_slice(format!("{name}: ").as_bytes());
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn status_of(bytes: &[u8]) -> u16 {
    std::str::from_utf8(bytes.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_three_paths_answer_alike() {
    use RedirectStatus::{Moved301, Permanent308};
    let cases: &[(&[u8], Want)] = &[
        (
            b"GET /a?b HTTP/1.1\r\nHost: Shop.Example.test.\r\n\r\n",
            Want::Redirect(Moved301, "https://shop.example.test/a?b"),
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: a.shop.example.test:80\r\n\r\n",
            Want::Redirect(Moved301, "https://a.shop.example.test/"),
        ),
        (
            b"POST /p HTTP/1.1\r\nHost: shop.example.test\r\nContent-Length: 0\r\n\r\n",
            Want::Redirect(Permanent308, "https://shop.example.test/p"),
        ),
        (
            b"DELETE /x HTTP/1.1\r\nHost: shop.example.test\r\n\r\n",
            Want::Redirect(Permanent308, "https://shop.example.test/x"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x.shop.example.test\r\n\r\n",
            Want::Redirect(Permanent308, "https://x.shop.example.test/"),
        ),
        (
            b"GET /%7Euser HTTP/1.0\r\nHost: [2001:DB8::1]\r\n\r\n",
            Want::Redirect(Moved301, "https://[2001:db8::1]/%7Euser"),
        ),
        (
            b"GET /.well-known/acme-challenge/t HTTP/1.1\r\nHost: shop.example.test\r\n\r\n",
            Want::Proxy,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: shop.example.test\r\n\r\n",
            Want::Proxy,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: blog.example.test\r\n\r\n",
            Want::Proxy,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: nope.example.test\r\n\r\n",
            Want::Local(404),
        ),
        (
            b"GET /.well-known/acme-challenge/t HTTP/1.1\r\nHost: x.shop.example.test\r\n\r\n",
            Want::Local(404),
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: shop.example.test\r\n\r\n",
            Want::Local(200),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: shop.example.test\r\nHost: shop.example.test\r\n\r\n",
            Want::Local(400),
        ),
        (b"GET / HTTP/1.1\r\n\r\n", Want::Local(400)),
        // Path rules: only the forced prefixes, under any reading of the path; exempt wins.
        (
            b"GET /admin/x?y HTTP/1.1\r\nHost: part.example.test\r\n\r\n",
            Want::Redirect(Moved301, "https://part.example.test/admin/x?y"),
        ),
        (
            b"POST /login HTTP/1.1\r\nHost: part.example.test\r\n\r\n",
            Want::Redirect(Permanent308, "https://part.example.test/login"),
        ),
        (
            b"GET /%61dmin/ HTTP/1.1\r\nHost: part.example.test\r\n\r\n",
            Want::Redirect(Moved301, "https://part.example.test/%61dmin/"),
        ),
        (
            b"GET /public/../admin/ HTTP/1.1\r\nHost: part.example.test\r\n\r\n",
            Want::Redirect(Moved301, "https://part.example.test/public/../admin/"),
        ),
        (
            b"GET /public/ HTTP/1.1\r\nHost: part.example.test\r\n\r\n",
            Want::Proxy,
        ),
        (
            b"GET /admin/health HTTP/1.1\r\nHost: part.example.test\r\n\r\n",
            Want::Proxy,
        ),
        (
            b"GET /.well-known/acme-challenge/t HTTP/1.1\r\nHost: part.example.test\r\n\r\n",
            Want::Proxy,
        ),
    ];
    for https_port in [443, 8443] {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, edge) = edge(dir.path(), https_port);
        let proxy = Proxy::new(edge.clone(), &cfg.proxy);
        let mut responder = Responder::new(https_port, None, 16384);
        let table = edge.policy.table();
        let m = Metrics::default();
        for (raw, want) in cases {
            let what = String::from_utf8_lossy(raw);
            // 1. The socket path.
            let socket = first_request(&edge.settings(), &table, &m, raw);
            // 2. The fast path, over IPv4 and IPv6.
            let mut fast = Vec::new();
            for v6 in [false, true] {
                let (mut buf, len) = frame(v6, raw, 0x18);
                fast.push(match responder.handle(&table, &mut buf, len) {
                    Outcome::Redirect { len, .. } => Some(payload_of(&buf, len)),
                    Outcome::Fallback(_) => None,
                    o => panic!("{what}: fast path {o:?}"),
                });
            }
            // 3. The proxy service's decision on the same request.
            let early = hyper_request(raw).map(|req| {
                proxy.early(
                    &table,
                    &ConnInfo::http("198.51.100.2:1".parse().unwrap(), 80),
                    &req,
                )
            });
            match want {
                Want::Redirect(status, location) => {
                    let port = if https_port == 443 {
                        String::new()
                    } else {
                        format!(":{https_port}")
                    };
                    let location = location
                        .replacen(".test/", &format!(".test{port}/"), 1)
                        .replacen("]/", &format!("]{port}/"), 1);
                    let expected = format!(
                        "HTTP/1.1 {} {}\r\nLocation: {location}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                        status.code(),
                        if *status == Moved301 {
                            "Moved Permanently"
                        } else {
                            "Permanent Redirect"
                        }
                    );
                    let FirstRequest::Answer(bytes, _) = &socket else {
                        panic!("{what}: socket path {socket:?}");
                    };
                    assert_eq!(
                        String::from_utf8_lossy(bytes),
                        expected,
                        "{what}: socket path"
                    );
                    for f in &fast {
                        assert_eq!(f.as_deref(), Some(expected.as_bytes()), "{what}: fast path");
                    }
                    match early {
                        Some(Early::Answer(resp, _)) => assert_eq!(
                            String::from_utf8_lossy(&wire_bytes(&resp)),
                            expected,
                            "{what}: proxy"
                        ),
                        _ => panic!("{what}: proxy did not answer"),
                    }
                }
                Want::Local(status) => {
                    let FirstRequest::Answer(bytes, _) = &socket else {
                        panic!("{what}: socket path {socket:?}");
                    };
                    assert_eq!(status_of(bytes), *status, "{what}: socket path");
                    assert!(
                        fast.iter().all(Option::is_none),
                        "{what}: fast path answered"
                    );
                    match early {
                        Some(Early::Answer(resp, _)) => {
                            assert_eq!(resp.status().as_u16(), *status, "{what}: proxy");
                            if *status == 200 {
                                assert_eq!(
                                    wire_bytes(&resp),
                                    response::options_asterisk(),
                                    "{what}: proxy"
                                );
                                assert_eq!(&bytes[..], response::options_asterisk());
                            }
                        }
                        // hyper itself refuses what httparse cannot turn into a request.
                        None => assert_eq!(*status, 400, "{what}"),
                        Some(Early::Upstream(..)) => panic!("{what}: proxy would forward"),
                    }
                }
                Want::Proxy => {
                    assert_eq!(socket, FirstRequest::Proxy, "{what}: socket path");
                    assert!(
                        fast.iter().all(Option::is_none),
                        "{what}: fast path answered"
                    );
                    assert!(matches!(early, Some(Early::Upstream(..))), "{what}: proxy");
                }
            }
        }
    }
}
