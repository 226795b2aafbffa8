//! Port 80 behaviour of the real daemon, observed from a client namespace: redirects (exact bytes),
//! Location rules, 400/408/431, exempt paths, the reverse proxy, curl and a Rust client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fh_tests::*;

fn req(ns: &Netns, text: &str) -> String {
    String::from_utf8_lossy(&raw_request(ns, edge80(), text.as_bytes())).into_owned()
}

fn req6(ns: &Netns, text: &str) -> String {
    String::from_utf8_lossy(&raw_request(ns, edge80_v6(), text.as_bytes())).into_owned()
}

fn shop() -> Site {
    Site::new("shop", &["shop.example.com"]).enforced()
}

#[test]
fn enforced_get_head_301_other_methods_308_exact_bytes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _d = Daemon::start(&ns, &Config::new().site(shop()));

    let want301 = redirect_bytes(301, "https://shop.example.com/x?y=1");
    assert_eq!(
        req(&ns, "GET /x?y=1 HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"),
        want301
    );
    assert_eq!(
        req(
            &ns,
            "HEAD /x?y=1 HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
        ),
        want301
    );
    // HTTP/1.0 with a Host header is answered the same way.
    assert_eq!(
        req(&ns, "GET /x?y=1 HTTP/1.0\r\nHost: shop.example.com\r\n\r\n"),
        want301
    );

    let want308 = redirect_bytes(308, "https://shop.example.com/form");
    assert_eq!(
        req(
            &ns,
            "POST /form HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 5\r\n\r\nhello"
        ),
        want308
    );
    assert_eq!(
        req(
            &ns,
            "PUT /form HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 0\r\n\r\n"
        ),
        want308
    );
    assert_eq!(
        req(
            &ns,
            "DELETE /form HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
        ),
        want308
    );
    assert_eq!(
        req(
            &ns,
            "OPTIONS /form HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
        ),
        want308
    );
}

#[test]
fn location_rules() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("shop", &["shop.example.com", "[2001:db8:1::1]"]).enforced()),
    );

    let cases: &[(&str, &str)] = &[
        // Host: lowercased, trailing dot removed, port dropped.
        (
            "GET /a HTTP/1.1\r\nHost: SHOP.Example.COM\r\n\r\n",
            "https://shop.example.com/a",
        ),
        (
            "GET /a HTTP/1.1\r\nHost: shop.example.com.\r\n\r\n",
            "https://shop.example.com/a",
        ),
        (
            "GET /a HTTP/1.1\r\nHost: shop.example.com:80\r\n\r\n",
            "https://shop.example.com/a",
        ),
        (
            "GET /a HTTP/1.1\r\nHost: Shop.Example.Com.:80\r\n\r\n",
            "https://shop.example.com/a",
        ),
        (
            "GET /a HTTP/1.1\r\nHost: shop.example.com:8080\r\n\r\n",
            "https://shop.example.com/a",
        ),
        // Path and query byte for byte, percent-encoding untouched.
        (
            "GET /a%20b/%7e%7E/%E2%82%AC;p=1?q=%41%2f&r=a+b&&s= HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
            "https://shop.example.com/a%20b/%7e%7E/%E2%82%AC;p=1?q=%41%2f&r=a+b&&s=",
        ),
        (
            "GET //double//slash/?x=/y?z HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
            "https://shop.example.com//double//slash/?x=/y?z",
        ),
        (
            "GET /p;a=b/c:d@e!$&'()*+,=~-._ HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
            "https://shop.example.com/p;a=b/c:d@e!$&'()*+,=~-._",
        ),
        // Absolute-form: the authority of the target wins over Host.
        (
            "GET http://shop.example.com/abs?q=1 HTTP/1.1\r\nHost: other.example.net\r\n\r\n",
            "https://shop.example.com/abs?q=1",
        ),
        (
            "GET http://SHOP.example.com:80/abs HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
            "https://shop.example.com/abs",
        ),
        // Absolute-form with an empty path: "/".
        (
            "GET http://shop.example.com HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
            "https://shop.example.com/",
        ),
    ];
    for (request, location) in cases {
        assert_eq!(
            req(&ns, request),
            redirect_bytes(301, location),
            "request {request:?}"
        );
    }

    // Over IPv6: a name, and an IPv6 literal Host (brackets kept, port dropped, lowercased).
    let v6_cases: &[(&str, &str)] = &[
        (
            "GET /v6 HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
            "https://shop.example.com/v6",
        ),
        (
            "GET /v6 HTTP/1.1\r\nHost: [2001:db8:1::1]\r\n\r\n",
            "https://[2001:db8:1::1]/v6",
        ),
        (
            "GET /v6?a=b HTTP/1.1\r\nHost: [2001:db8:1::1]:80\r\n\r\n",
            "https://[2001:db8:1::1]/v6?a=b",
        ),
        (
            "GET /v6 HTTP/1.1\r\nHost: [2001:DB8:1::1]\r\n\r\n",
            "https://[2001:db8:1::1]/v6",
        ),
    ];
    for (request, location) in v6_cases {
        assert_eq!(
            req6(&ns, request),
            redirect_bytes(301, location),
            "request over IPv6 {request:?}"
        );
    }
}

#[test]
fn https_port_is_added_when_not_443() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _d = Daemon::start(
        &ns,
        &Config::new()
            .https_port(8443)
            .site(Site::new("shop", &["shop.example.com", "[2001:db8:1::1]"]).enforced()),
    );
    assert_eq!(
        req(&ns, "GET /x HTTP/1.1\r\nHost: shop.example.com:80\r\n\r\n"),
        redirect_bytes(301, "https://shop.example.com:8443/x")
    );
    assert_eq!(
        req(
            &ns,
            "POST /x HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 0\r\n\r\n"
        ),
        redirect_bytes(308, "https://shop.example.com:8443/x")
    );
    assert_eq!(
        req6(&ns, "GET /x HTTP/1.1\r\nHost: [2001:db8:1::1]:80\r\n\r\n"),
        redirect_bytes(301, "https://[2001:db8:1::1]:8443/x")
    );
}

#[test]
fn redirect_code_per_site() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let cfg = Config::new()
        .site(
            Site::new("r308", &["r308.example.com"])
                .enforced()
                .redirect_code("308"),
        )
        .site(
            Site::new("r301", &["r301.example.com"])
                .enforced()
                .redirect_code("301"),
        )
        .site(
            Site::new("auto", &["auto.example.com"])
                .enforced()
                .redirect_code("\"auto\""),
        );
    let _d = Daemon::start(&ns, &cfg);
    assert_eq!(
        req(&ns, "GET /g HTTP/1.1\r\nHost: r308.example.com\r\n\r\n"),
        redirect_bytes(308, "https://r308.example.com/g")
    );
    assert_eq!(
        req(&ns, "HEAD /g HTTP/1.1\r\nHost: r308.example.com\r\n\r\n"),
        redirect_bytes(308, "https://r308.example.com/g")
    );
    assert_eq!(
        req(
            &ns,
            "POST /p HTTP/1.1\r\nHost: r301.example.com\r\nContent-Length: 0\r\n\r\n"
        ),
        redirect_bytes(301, "https://r301.example.com/p")
    );
    assert_eq!(
        req(&ns, "GET /g HTTP/1.1\r\nHost: auto.example.com\r\n\r\n"),
        redirect_bytes(301, "https://auto.example.com/g")
    );
    assert_eq!(
        req(
            &ns,
            "PATCH /g HTTP/1.1\r\nHost: auto.example.com\r\nContent-Length: 0\r\n\r\n"
        ),
        redirect_bytes(308, "https://auto.example.com/g")
    );
}

#[test]
fn wildcard_and_exact_over_wildcard() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let api = Backend::start(&ns, "api", 8081);
    let wildblog = Backend::start(&ns, "wildblog", 8082);
    let cfg = Config::new()
        .site(Site::new("wild", &["*.shop.example.com"]).enforced())
        .site(Site::new("api", &["api.shop.example.com"]).backend(&api.url()))
        .site(Site::new("wildblog", &["*.blog.example.com"]).backend(&wildblog.url()))
        .site(Site::new("secure", &["secure.blog.example.com"]).enforced());
    let _d = Daemon::start(&ns, &cfg);

    assert_eq!(
        req(&ns, "GET /w HTTP/1.1\r\nHost: a.shop.example.com\r\n\r\n"),
        redirect_bytes(301, "https://a.shop.example.com/w")
    );
    assert_eq!(
        req(&ns, "GET /w HTTP/1.1\r\nHost: A.Shop.Example.COM.\r\n\r\n"),
        redirect_bytes(301, "https://a.shop.example.com/w")
    );
    // Exactly one label: neither the apex nor two labels match the wildcard.
    assert_eq!(
        status_of(req(&ns, "GET /w HTTP/1.1\r\nHost: x.y.shop.example.com\r\n\r\n").as_bytes()),
        404
    );
    assert_eq!(
        status_of(req(&ns, "GET /w HTTP/1.1\r\nHost: shop.example.com\r\n\r\n").as_bytes()),
        404
    );

    // An exact, non-enforced name wins over an enforced wildcard...
    let r = get(&ns, "api.shop.example.com", "/w");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body_lines().contains(&"backend=api".to_string()),
        "{}",
        r.body_text()
    );
    // ...and an exact enforced name over a non-enforced wildcard.
    assert_eq!(
        req(
            &ns,
            "GET /s HTTP/1.1\r\nHost: secure.blog.example.com\r\n\r\n"
        ),
        redirect_bytes(301, "https://secure.blog.example.com/s")
    );
    let r = get(&ns, "other.blog.example.com", "/s");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body_lines().contains(&"backend=wildblog".to_string()),
        "{}",
        r.body_text()
    );
}

#[test]
fn bad_requests_get_400() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let blog = Backend::start(&ns, "blog", 8080);
    let cfg = Config::new()
        .site(shop())
        .site(Site::new("blog", &["blog.example.com"]).backend(&blog.url()));
    let _d = Daemon::start(&ns, &cfg);

    let cases: &[&str] = &[
        // HTTP/1.1 without Host.
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
        // Several Host headers (even identical ones), for an enforced and a proxied host.
        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nHost: shop.example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: blog.example.com\r\nhost: blog.example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nHost: other.example.com\r\n\r\n",
        // Invalid Host values.
        "GET / HTTP/1.1\r\nHost: bad host\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@shop.example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: shop.example.com:http\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [2001:db8::zz]\r\n\r\n",
        // HTTP/1.0 without Host and no default_host.
        "GET / HTTP/1.0\r\n\r\n",
        // Control bytes in the request-target.
        "GET /a\x01b HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
        "GET /a\x7fb HTTP/1.1\r\nHost: blog.example.com\r\n\r\n",
        // Unparsable heads.
        "NOT HTTP AT ALL\r\n\r\n",
        "GET / HTTP/1.1\r\nHost shop.example.com\r\n\r\n",
    ];
    for c in cases {
        let got = req(&ns, c);
        assert_eq!(status_of(got.as_bytes()), 400, "request {c:?} got {got:?}");
        assert!(
            !got.contains("backend="),
            "request {c:?} was forwarded: {got:?}"
        );
    }
}

#[test]
fn http10_without_host_uses_default_host() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _d = Daemon::start(
        &ns,
        &Config::new().default_host("shop.example.com").site(shop()),
    );
    assert_eq!(
        req(&ns, "GET /p?q=1 HTTP/1.0\r\n\r\n"),
        redirect_bytes(301, "https://shop.example.com/p?q=1")
    );
    // HTTP/1.1 without Host stays a 400 even with a default host.
    assert_eq!(
        status_of(req(&ns, "GET /p HTTP/1.1\r\n\r\n").as_bytes()),
        400
    );
}

#[test]
fn head_over_16k_gets_431_and_under_is_fine() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _d = Daemon::start(&ns, &Config::new().site(shop()));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let got = req(&ns, &big);
    assert_eq!(status_of(got.as_bytes()), 431, "{got:?}");
    let fits = format!(
        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(15_000)
    );
    assert_eq!(
        req(&ns, &fits),
        redirect_bytes(301, "https://shop.example.com/")
    );
}

#[test]
fn partial_head_gets_408_after_head_timeout() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _d = Daemon::start(&ns, &Config::new().head_timeout_ms(500).site(shop()));
    let out = raw_exchange(
        &ns,
        edge80(),
        b"GET / HTTP/1.1\r\nHost: shop.exa",
        Duration::from_secs(5),
    );
    assert!(
        out.closed,
        "connection still open after 5 s: {:?}",
        out.text()
    );
    assert_eq!(status_of(&out.bytes), 408, "{:?}", out.text());
    assert!(
        out.elapsed >= Duration::from_millis(400) && out.elapsed <= Duration::from_secs(2),
        "408 after {:?}, want ~500 ms",
        out.elapsed
    );
}

/// The port-80 listener hands a connection over only once its first bytes arrived
/// (`TCP_DEFER_ACCEPT`), so the accept loop finds the head there and answers it itself: a
/// client that connects and waits is not a connection of the daemon yet, and its request,
/// sent later, is answered. A client that never sends is handed over all the same after the
/// kernel's deferral (about a second) and gets its 408 from the head timeout.
#[test]
fn connections_are_accepted_with_their_first_bytes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let d = Daemon::start(&ns, &Config::new().head_timeout_ms(500).site(shop()));
    let (waiting, out) = ns.run_in_client(|| {
        let mut s = TcpStream::connect_timeout(&edge80(), Duration::from_secs(5)).expect("connect");
        std::thread::sleep(Duration::from_millis(300));
        let waiting = d.counter("http_connections");
        s.write_all(b"GET /x HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
            .expect("request");
        (waiting, raw_exchange_on(&mut s, Duration::from_secs(5)))
    });
    assert_eq!(waiting, 0, "accepted before its first bytes");
    assert!(out.closed);
    assert_eq!(
        out.text(),
        redirect_bytes(301, "https://shop.example.com/x")
    );
    assert_eq!(d.counter("http_connections"), 1);
    // Nothing sent at all: accepted after the deferral, then 408.
    let out = ns.run_in_client(|| {
        let mut s = TcpStream::connect_timeout(&edge80(), Duration::from_secs(5)).expect("connect");
        raw_exchange_on(&mut s, Duration::from_secs(10))
    });
    assert!(out.closed, "still open after 10 s");
    assert_eq!(status_of(&out.bytes), 408, "{:?}", out.text());
    assert!(
        out.elapsed >= Duration::from_millis(900) && out.elapsed <= Duration::from_secs(6),
        "408 after {:?}, want the deferral (~1 s) and the head timeout (500 ms)",
        out.elapsed
    );
}

#[test]
fn acme_and_exempt_paths_reach_the_backend() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "shop-backend", 8080);
    let cfg = Config::new()
        .site(shop().backend(&be.url()).exempt("/healthz"))
        .site(
            Site::new("noacme", &["noacme.example.com"])
                .enforced()
                .backend(&be.url())
                .acme_exempt(false),
        )
        .site(Site::new("nobackend", &["nobackend.example.com"]).enforced());
    let _d = Daemon::start(&ns, &cfg);

    let r = get(&ns, "shop.example.com", "/.well-known/acme-challenge/tok");
    assert_eq!(r.status, 200, "{}", r.head);
    let lines = r.body_lines();
    for want in [
        "backend=shop-backend",
        "method=GET",
        "path=/.well-known/acme-challenge/tok",
        "host=shop.example.com",
    ] {
        assert!(
            lines.contains(&want.to_string()),
            "missing {want}: {}",
            r.body_text()
        );
    }

    for path in ["/healthz", "/healthz/deep?x=1"] {
        let r = get(&ns, "shop.example.com", path);
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        assert!(
            r.body_lines().contains(&format!("path={path}")),
            "{}",
            r.body_text()
        );
    }
    // Everything else is still redirected.
    assert_eq!(
        req(&ns, "GET /other HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"),
        redirect_bytes(301, "https://shop.example.com/other")
    );
    // acme_exempt = false: the challenge path is redirected too.
    assert_eq!(
        req(
            &ns,
            "GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: noacme.example.com\r\n\r\n"
        ),
        redirect_bytes(
            301,
            "https://noacme.example.com/.well-known/acme-challenge/tok"
        )
    );
    // An enforced site without a backend: the exempt path has nowhere to go, 404.
    let r = get(
        &ns,
        "nobackend.example.com",
        "/.well-known/acme-challenge/tok",
    );
    assert_eq!(r.status, 404, "{}", r.head);
}

#[test]
fn proxied_request_headers() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "blog", 8080);
    let _d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("blog", &["blog.example.com"]).backend(&be.url())),
    );

    let request = "GET /p/q?x=1&y=%20 HTTP/1.1\r\n\
        Host: blog.example.com\r\n\
        X-Forwarded-For: 1.2.3.4\r\n\
        X-Forwarded-Proto: https\r\n\
        X-Forwarded-Host: evil.example.net\r\n\
        Forwarded: for=1.2.3.4;proto=https\r\n\
        Connection: x-foo\r\n\
        X-Foo: bar\r\n\
        Keep-Alive: timeout=5\r\n\
        TE: deflate\r\n\
        X-Keep: yes\r\n\
        \r\n";
    let r = http_request(&ns, edge80(), request.as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("x-backend"), Some("blog"), "{}", r.head);
    let body = r.body_text();
    let lines = r.body_lines();
    for want in [
        "backend=blog",
        "method=GET",
        "path=/p/q?x=1&y=%20",
        "host=blog.example.com",
        "header:x-forwarded-for=198.51.100.2",
        "header:x-forwarded-proto=http",
        "header:x-forwarded-host=blog.example.com",
        "header:x-keep=yes",
        "body-bytes=0",
    ] {
        assert!(
            lines.contains(&want.to_string()),
            "backend did not see {want}:\n{body}"
        );
    }
    let fwd = lines
        .iter()
        .find(|l| l.starts_with("header:forwarded="))
        .unwrap_or_else(|| panic!("no Forwarded:\n{body}"));
    assert!(
        fwd.contains("for=198.51.100.2") && fwd.contains("proto=http"),
        "{fwd}"
    );
    for gone in [
        "header:x-foo=",
        "header:keep-alive=",
        "header:te=",
        "header:connection=x-foo",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(gone)),
            "hop-by-hop {gone} forwarded:\n{body}"
        );
    }
    assert!(
        !body.contains("1.2.3.4") && !body.contains("evil.example.net"),
        "client forwarding values kept:\n{body}"
    );
    // One value per forwarding header.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("header:x-forwarded-for="))
            .count(),
        1,
        "{body}"
    );

    // Over IPv6 the client address is the IPv6 one.
    let r = http_request(
        &ns,
        edge80_v6(),
        b"GET /6 HTTP/1.1\r\nHost: blog.example.com\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body_lines()
            .contains(&format!("header:x-forwarded-for={CLIENT_V6}")),
        "{}",
        r.body_text()
    );
}

#[test]
fn proxied_post_body_is_streamed() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "blog", 8080);
    let _d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("blog", &["blog.example.com"]).backend(&be.url())),
    );
    const N: usize = 1 << 20;
    let r = ns.run_in_client(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = TcpStream::connect_timeout(&edge80(), Duration::from_secs(5)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            format!(
                "POST /upload HTTP/1.1\r\nHost: blog.example.com\r\nContent-Length: {N}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..N / chunk.len() {
            s.write_all(&chunk).expect("write body");
        }
        read_response(&mut s, deadline).expect("response")
    });
    assert_eq!(r.status, 200, "{}", r.head);
    let lines = r.body_lines();
    assert!(
        lines.contains(&"method=POST".to_string()),
        "{}",
        r.body_text()
    );
    assert!(
        lines.contains(&format!("body-bytes={N}")),
        "{}",
        r.body_text()
    );

    // A chunked body as well.
    let r = http_request(
        &ns,
        edge80(),
        b"POST /c HTTP/1.1\r\nHost: blog.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body_lines().contains(&"body-bytes=11".to_string()),
        "{}",
        r.body_text()
    );
}

#[test]
fn backend_down_502_timeout_504_unknown_host_404() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let slow = Backend::start_with(&ns, "slow", 8083, &["--delay-ms", "3000"]);
    let cfg = Config::new()
        .response_timeout_ms(500)
        .site(Site::new("down", &["down.example.com"]).backend("http://127.0.0.1:9"))
        .site(Site::new("slow", &["slow.example.com"]).backend(&slow.url()))
        .site(Site::new("nobackend", &["nobackend.example.com"]));
    let _d = Daemon::start(&ns, &cfg);

    let r = get(&ns, "down.example.com", "/");
    assert_eq!(r.status, 502, "{}", r.head);

    let t = Instant::now();
    let r = get(&ns, "slow.example.com", "/");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2500),
        "504 after {took:?}, want ~500 ms"
    );

    assert_eq!(
        status_of(req(&ns, "GET / HTTP/1.1\r\nHost: unknown.example.org\r\n\r\n").as_bytes()),
        404
    );
    let r = get(&ns, "nobackend.example.com", "/");
    assert_eq!(r.status, 404, "{}", r.head);
}

#[test]
fn websocket_upgrade_is_proxied() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "ws", 8080);
    let _d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("ws", &["ws.example.com"]).backend(&be.url())),
    );
    let (head, echoed) = ns.run_in_client(|| {
        let mut s = TcpStream::connect_timeout(&edge80(), Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            match s.read(&mut b) {
                Ok(1) => head.push(b[0]),
                _ => break,
            }
        }
        let msg = b"ping-\x00\xff-pong";
        s.write_all(msg).unwrap();
        let mut echoed = vec![0u8; msg.len()];
        let ok = s.read_exact(&mut echoed).is_ok();
        (String::from_utf8_lossy(&head).into_owned(), ok.then_some(echoed))
    });
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    assert_eq!(
        echoed.as_deref(),
        Some(&b"ping-\x00\xff-pong"[..]),
        "no echo after 101"
    );
}

#[test]
fn curl_and_hyper_client_see_the_redirect() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _d = Daemon::start(&ns, &Config::new().site(shop()));

    let out = curl(
        &ns,
        &[
            "http://shop.example.com/x",
            "--resolve",
            "shop.example.com:80:198.51.100.1",
        ],
    );
    assert!(
        out.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{out}"
    );
    assert!(
        out.contains("\r\nLocation: https://shop.example.com/x\r\n"),
        "{out}"
    );
    let out = curl(
        &ns,
        &[
            "-X",
            "POST",
            "-d",
            "a=b",
            "http://shop.example.com/f?x",
            "--resolve",
            "shop.example.com:80:198.51.100.1",
        ],
    );
    assert!(
        out.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{out}"
    );
    assert!(
        out.contains("\r\nLocation: https://shop.example.com/f?x\r\n"),
        "{out}"
    );
    let out = curl(
        &ns,
        &[
            "-g",
            "http://[2001:db8:1::1]/v6",
            "-H",
            "Host: shop.example.com",
        ],
    );
    assert!(
        out.contains("\r\nLocation: https://shop.example.com/v6\r\n"),
        "{out}"
    );

    let (status, location) = ns.run_in_client(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                let stream = tokio::net::TcpStream::connect(edge80())
                    .await
                    .expect("connect");
                let (mut sender, conn) = hyper::client::conn::http1::handshake::<
                    _,
                    http_body_util::Empty<bytes::Bytes>,
                >(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
                tokio::spawn(conn);
                let req = hyper::Request::get("/hyper?q=1")
                    .header(hyper::header::HOST, "shop.example.com")
                    .body(http_body_util::Empty::new())
                    .unwrap();
                let resp = sender.send_request(req).await.expect("send_request");
                let loc = resp
                    .headers()
                    .get(hyper::header::LOCATION)
                    .map(|v| v.to_str().unwrap().to_string());
                (resp.status().as_u16(), loc)
            })
            .await
            .expect("hyper client timed out")
        })
    });
    assert_eq!(status, 301);
    assert_eq!(
        location.as_deref(),
        Some("https://shop.example.com/hyper?q=1")
    );
}

/// Request 1 for a proxied host, then request 2 for an enforced host on the same connection.
fn keep_alive_then_enforced(ns: &Netns) -> (HttpResponse, RawOutcome) {
    ns.run_in_client(|| {
        let start = Instant::now();
        let mut s = TcpStream::connect_timeout(&edge80(), Duration::from_secs(5)).expect("connect");
        s.write_all(b"GET /one HTTP/1.1\r\nHost: blog.example.com\r\n\r\n")
            .unwrap();
        let first = read_response(&mut s, start + Duration::from_secs(5)).expect("first response");
        s.write_all(b"GET /two?x HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
            .unwrap();
        let rest = raw_exchange_on(&mut s, Duration::from_secs(5));
        (first, rest)
    })
}

fn keep_alive_daemon(ns: &Netns) -> (Backend, Daemon) {
    let be = Backend::start(ns, "blog", 8080);
    let cfg = Config::new()
        .site(shop())
        .site(Site::new("blog", &["blog.example.com"]).backend(&be.url()));
    let d = Daemon::start(ns, &cfg);
    (be, d)
}

#[test]
fn enforced_host_on_a_keep_alive_connection_is_still_redirected() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _bd = keep_alive_daemon(&ns);
    // Switching Host on a kept-alive proxied connection must not bypass the redirect.
    let (first, rest) = keep_alive_then_enforced(&ns);
    assert_eq!(first.status, 200, "{}", first.head);
    assert!(
        rest.closed,
        "connection not closed after the redirect: {:?}",
        rest.text()
    );
    let text = rest.text();
    assert!(
        text.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{text:?}"
    );
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nlocation: https://shop.example.com/two?x\r\n"),
        "{text:?}"
    );
    assert!(lower.contains("\r\nconnection: close\r\n"), "{text:?}");
    assert!(lower.contains("\r\ncontent-length: 0\r\n"), "{text:?}");
}

/// The design doc gives the redirect bytes exactly, for every redirect on port 80 — including one
/// answered on a kept-alive connection after a proxied request.
#[test]
fn redirect_on_a_keep_alive_connection_has_the_exact_bytes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _bd = keep_alive_daemon(&ns);
    let (first, rest) = keep_alive_then_enforced(&ns);
    assert_eq!(first.status, 200, "{}", first.head);
    assert_eq!(
        rest.text(),
        redirect_bytes(301, "https://shop.example.com/two?x")
    );
}

#[test]
fn over_max_connections_gets_503() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let mut cfg = Config::new().site(shop());
    cfg.max_connections = Some(2);
    let _d = Daemon::start(&ns, &cfg);
    let (third, later) = ns.run_in_client(|| {
        // Two connections hold the slots with incomplete heads.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s =
                TcpStream::connect_timeout(&edge80(), Duration::from_secs(5)).expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: shop.exa").unwrap();
            held.push(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        let third = raw_exchange_here(
            edge80(),
            b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
            Duration::from_secs(5),
        );
        drop(held);
        // Slots are released once the held connections close.
        let mut later = 0;
        for _ in 0..50 {
            later = status_of(
                &raw_exchange_here(
                    edge80(),
                    b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
                    Duration::from_secs(5),
                )
                .bytes,
            );
            if later == 301 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (third, later)
    });
    assert_eq!(status_of(&third.bytes), 503, "{:?}", third.text());
    assert_eq!(
        later, 301,
        "slots not released after the held connections closed"
    );
}

/// Per-path force rules (`force_paths`): only the forced prefixes are redirected, under any
/// reading of the path (percent-encoding, dot segments); exempt and ACME paths still win; the
/// rest of the site is proxied over HTTP; `list` shows the rules.
#[test]
fn force_paths_redirect_only_their_prefixes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "part", 0);
    let d = Daemon::start(
        &ns,
        &Config::new().site(
            Site::new("part", &["part.example.com"])
                .enforced()
                .backend(&be.url())
                .exempt("/admin/health")
                .raw("force_paths = [\"/admin/\", \"/login\"]"),
        ),
    );
    let get = |path: &str| {
        req(
            &ns,
            &format!("GET {path} HTTP/1.1\r\nHost: part.example.com\r\nConnection: close\r\n\r\n"),
        )
    };
    for path in [
        "/admin/x?y=1",
        "/login",
        "/%61dmin/",
        "/public/../admin/",
        "/public/%2e%2e/admin/users",
    ] {
        assert_eq!(
            get(path),
            redirect_bytes(301, &format!("https://part.example.com{path}")),
            "{path}"
        );
    }
    for path in [
        "/",
        "/public/",
        "/Admin/",
        "/administrator",
        "/admin/health",
        "/.well-known/acme-challenge/t",
    ] {
        let r = get(path);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {r}");
        assert!(r.contains("backend=part"), "{path}: {r}");
        assert!(
            !r.to_ascii_lowercase().contains("strict-transport-security"),
            "{r}"
        );
    }
    let list = d.cli(&["list"]).out();
    assert!(list.contains("/admin/,/login"), "{list}");
    let json = json(&d.cli(&["list", "--json"]).out());
    assert_eq!(
        json[0]["force_paths"],
        serde_json::json!(["/admin/", "/login"]),
        "{json}"
    );
}

/// The socket path closes at once after answering a complete bodyless head (nginx's
/// `lingering_close on` heuristic), so bytes a client sends later get a reset; after a head
/// that announced a body, or with more than the head received, it half-closes and keeps
/// reading (lingering): late bytes are read and discarded, never reset.
#[test]
fn lingering_close_only_when_more_bytes_may_come() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let _d = Daemon::start(&ns, &Config::new().site(shop()));
    // Sends `first`, reads the answer to its end, then sends late bytes twice: true when the
    // second write fails (the first drew a reset).
    let late_write_fails = |first: &'static [u8]| -> (String, bool) {
        ns.run_in_client(move || {
            let mut s =
                TcpStream::connect_timeout(&edge80(), Duration::from_secs(5)).expect("connect");
            s.write_all(first).expect("write the request");
            let out = raw_exchange_on(&mut s, Duration::from_secs(5));
            assert!(out.closed, "no close after the answer: {:?}", out.text());
            std::thread::sleep(Duration::from_millis(150));
            let _ = s.write_all(b"late");
            std::thread::sleep(Duration::from_millis(150));
            (out.text(), s.write_all(b"later").is_err())
        })
    };
    let (answer, reset) = late_write_fails(b"GET /a HTTP/1.1\r\nHost: shop.example.com\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 301 "), "{answer}");
    assert!(reset, "a bodyless GET's connection lingered");
    let (answer, reset) = late_write_fails(
        b"POST /a HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 100\r\n\r\nsome",
    );
    assert!(answer.starts_with("HTTP/1.1 308 "), "{answer}");
    assert!(!reset, "a reset while the request body was still coming");
    let (answer, reset) = late_write_fails(
        b"GET /a HTTP/1.1\r\nHost: shop.example.com\r\n\r\nGET /b HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 301 "), "{answer}");
    assert!(!reset, "a reset after a pipelined request");
}
