//! Conformance faults found by replaying public bug reports (issue "Conformance faults"), each
//! example with its right value, on the port-80 socket path, on a kept-alive proxied port-80
//! connection (hyper), and with the XDP fast path on. The TLS examples (421, HSTS on the
//! edge's own errors, forwarding headers over TLS) are in `tls.rs`.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fh_tests::*;

const SHOP: &str = "shop.example.test";
const BLOG: &str = "blog.example.test";

/// The `OPTIONS *` answer, exactly.
const OPTIONS_ANSWER: &str = "HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, DELETE, PATCH, \
OPTIONS\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// shop enforced (its backend sends HSTS), blog not enforced (its backend sends HSTS too).
struct Edge {
    d: Daemon,
    _shop: Backend,
    _blog: Backend,
    ns: Netns,
}

fn edge(xdp: bool) -> Edge {
    let ns = Netns::new();
    let shop = Backend::start_with(&ns, "shop", 0, &["--hsts", "max-age=600"]);
    let blog = Backend::start_with(&ns, "blog", 0, &["--hsts", "max-age=600"]);
    let mut cfg = Config::new()
        .site(Site::new("shop", &[SHOP]).enforced().backend(&shop.url()))
        .site(Site::new("blog", &[BLOG]).backend(&blog.url()));
    if xdp {
        cfg = cfg.extra(&format!(
            "[xdp]\ninterface = {}\nmode = \"generic\"",
            toml_str(&ns.veth_edge)
        ));
    }
    let d = Daemon::start(&ns, &cfg);
    Edge {
        d,
        _shop: shop,
        _blog: blog,
        ns,
    }
}

fn head(line: &[u8], host: &str, extra: &str) -> Vec<u8> {
    let mut v = line.to_vec();
    v.extend_from_slice(format!("\r\nHost: {host}\r\n{extra}\r\n").as_bytes());
    v
}

/// The raw requests of faults 1, 2, 7 and 8 with the exact answer each must get.
fn raw_cases() -> Vec<(Vec<u8>, String)> {
    let loc = |p: &str| redirect_bytes(301, &format!("https://{SHOP}{p}"));
    let bad = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
               Content-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n"
        .to_string();
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 17_000));
    long.extend_from_slice(b" HTTP/1.1");
    vec![
        // 1. Location is a URI: bytes RFC 3986 does not allow are percent-encoded.
        (
            head(b"GET /caf\xC3\xA9 HTTP/1.1", SHOP, ""),
            loc("/caf%C3%A9"),
        ),
        (
            head(b"GET /\\evil.example/x HTTP/1.1", SHOP, ""),
            loc("/%5Cevil.example/x"),
        ),
        (
            head(b"GET /a%2Fb?c=%2f HTTP/1.1", SHOP, ""),
            loc("/a%2Fb?c=%2f"),
        ),
        (head(b"GET /100% HTTP/1.1", SHOP, ""), loc("/100%25")),
        (
            head(b"GET /q?a=\"<x>\"&b={|}^` HTTP/1.1", SHOP, ""),
            loc("/q?a=%22%3Cx%3E%22&b=%7B%7C%7D%5E%60"),
        ),
        (
            head(
                b"GET http://Shop.Example.Test/caf\xC3\xA9?q=\xC3\xA9 HTTP/1.1",
                SHOP,
                "",
            ),
            loc("/caf%C3%A9?q=%C3%A9"),
        ),
        // 2. A too-long request-target is 414, not 431.
        (
            head(&long, SHOP, ""),
            "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 17\r\nConnection: close\r\n\r\n414 URI Too Long\n"
                .to_string(),
        ),
        // 7. OPTIONS * is answered, never redirected.
        (
            head(b"OPTIONS * HTTP/1.1", SHOP, ""),
            OPTIONS_ANSWER.to_string(),
        ),
        // 8. Transfer-Encoding whose final coding is not chunked: 400.
        (
            head(
                b"POST /x HTTP/1.1",
                SHOP,
                "Transfer-Encoding: chunked, identity\r\n",
            ),
            bad.clone(),
        ),
        (
            head(b"POST /x HTTP/1.1", SHOP, "Transfer-Encoding: identity\r\n"),
            bad.clone(),
        ),
        (
            head(
                b"POST /x HTTP/1.1",
                SHOP,
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            ),
            bad,
        ),
    ]
}

fn line_of(req: &[u8]) -> String {
    let s = String::from_utf8_lossy(req);
    let l = s.lines().next().unwrap_or("").to_string();
    if l.len() > 60 {
        format!("{}…", &l[..60])
    } else {
        l
    }
}

fn check_raw_cases(e: &Edge) {
    for (req, want) in raw_cases() {
        let got = raw_request(&e.ns, edge80(), &req);
        assert_eq!(String::from_utf8_lossy(&got), want, "{}", line_of(&req));
    }
}

#[test]
fn first_requests_on_the_socket_path() {
    if !require_root() {
        return;
    }
    let e = edge(false);
    check_raw_cases(&e);
}

#[test]
fn first_requests_with_the_fast_path_on() {
    if !require_root() {
        return;
    }
    let e = edge(true);
    check_raw_cases(&e);
    // The control: a clean target is answered by the fast path itself.
    let before = json(&e.d.cli(&["stats", "--json"]).out());
    let got = raw_request(&e.ns, edge80(), &head(b"GET /ok HTTP/1.1", SHOP, ""));
    assert_eq!(
        String::from_utf8_lossy(&got),
        redirect_bytes(301, &format!("https://{SHOP}/ok"))
    );
    let after = json(&e.d.cli(&["stats", "--json"]).out());
    let n = |v: &serde_json::Value| v["afxdp_redirects_301"].as_u64().unwrap_or(0);
    assert_eq!(n(&after), n(&before) + 1, "{after}");
}

/// The same requests after a proxied request on a kept-alive connection: hyper parses them
/// and the proxy service answers.
#[test]
fn later_requests_on_a_kept_alive_connection() {
    if !require_root() {
        return;
    }
    let e = edge(false);
    let loc = |p: &str| redirect_bytes(301, &format!("https://{SHOP}{p}"));
    let cases: Vec<(Vec<u8>, Option<String>)> = vec![
        (
            head(b"GET /\\evil.example/x HTTP/1.1", SHOP, ""),
            Some(loc("/%5Cevil.example/x")),
        ),
        (head(b"GET /100% HTTP/1.1", SHOP, ""), Some(loc("/100%25"))),
        (
            head(b"OPTIONS * HTTP/1.1", SHOP, ""),
            Some(OPTIONS_ANSWER.to_string()),
        ),
        // 2. A too-long target is 414 here too, a too-large header block 431.
        (
            {
                let mut v = b"GET /".to_vec();
                v.extend(std::iter::repeat_n(b'a', 17_000));
                v.extend_from_slice(b" HTTP/1.1");
                head(&v, SHOP, "")
            },
            Some(
                "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: 17\r\nConnection: close\r\n\r\n414 URI Too Long\n"
                    .to_string(),
            ),
        ),
        // Non-ASCII targets: hyper refuses them (400) or force-https encodes them.
        (head(b"GET /caf\xC3\xA9 HTTP/1.1", SHOP, ""), None),
    ];
    for (req, want) in cases {
        let (first, rest) = e.ns.run_in_client(|| {
            let start = Instant::now();
            let mut s =
                TcpStream::connect_timeout(&edge80(), Duration::from_secs(5)).expect("connect");
            s.write_all(&head(b"GET /one HTTP/1.1", BLOG, "")).unwrap();
            let first =
                read_response(&mut s, start + Duration::from_secs(5)).expect("first response");
            s.write_all(&req).unwrap();
            (first, raw_exchange_on(&mut s, Duration::from_secs(5)))
        });
        assert_eq!(first.status, 200, "{}", first.head);
        let text = rest.text();
        match want {
            Some(w) => assert_eq!(text, w, "{}", line_of(&req)),
            None => {
                let ok = status_of(text.as_bytes()) == 400
                    || text.contains(&format!("Location: https://{SHOP}/caf%C3%A9\r\n"));
                assert!(ok, "{}: {text:?}", line_of(&req));
            }
        }
    }
}

/// Fault 3: no `Strict-Transport-Security` on any port-80 response, whoever set it: a proxied
/// host that is not enforced, and the exempt (ACME) path of an enforced one.
#[test]
fn no_hsts_over_plain_http() {
    if !require_root() {
        return;
    }
    let e = edge(false);
    for (host, path) in [
        (BLOG, "/own-hsts"),
        (SHOP, "/.well-known/acme-challenge/token"),
    ] {
        let r = http_request(
            &e.ns,
            edge80(),
            &head(format!("GET {path} HTTP/1.1").as_bytes(), host, ""),
        );
        assert_eq!(r.status, 200, "{}", r.head);
        assert!(r.header("x-backend").is_some(), "{}", r.head);
        assert_eq!(
            r.header("strict-transport-security"),
            None,
            "{host}{path}: {}",
            r.head
        );
    }
}

/// Fault 4: the scheme and port signals a backend reads are the edge's: the client's are
/// removed, and `X-Forwarded-Port` is the listener's port.
#[test]
fn forged_scheme_and_port_signals_are_replaced() {
    if !require_root() {
        return;
    }
    let e = edge(false);
    let forged = "X-Forwarded-Ssl: on\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Scheme: https\r\n\
                  X-Forwarded-Protocol: https\r\nX-Url-Scheme: https\r\nFront-End-Https: on\r\n\
                  X-Forwarded-Server: evil\r\nX-Forwarded-Prefix: /evil\r\nX-Client-IP: 1.2.3.4\r\n\
                  True-Client-IP: 1.2.3.4\r\n";
    let r = http_request(&e.ns, edge80(), &head(b"GET /p HTTP/1.1", BLOG, forged));
    assert_eq!(r.status, 200, "{}", r.head);
    let lines = r.body_lines();
    assert!(
        lines.contains(&"header:x-forwarded-port=80".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"header:x-forwarded-proto=http".to_string()),
        "{lines:?}"
    );
    for name in [
        "x-forwarded-ssl",
        "x-forwarded-scheme",
        "x-forwarded-protocol",
        "x-url-scheme",
        "front-end-https",
        "x-forwarded-server",
        "x-forwarded-prefix",
        "x-client-ip",
        "true-client-ip",
    ] {
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with(&format!("header:{name}="))),
            "{name} reached the backend: {lines:?}"
        );
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("header:x-forwarded-port="))
            .count(),
        1,
        "{lines:?}"
    );
}
