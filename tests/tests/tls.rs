//! TLS terminator on 443: certificates by SNI, HSTS semantics, forwarding headers, h1/h2 with
//! curl and a Rust client, WebSocket tunnelling, live reload.
//!
//! Certificates come from a throw-away CA made with the openssl CLI in each test's temp dir.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use fh_tests::{pki::Pki, *};

const EDGE443: &str = "198.51.100.1:443";

/// The config: port 80 + 443, two sites with their own certificates, and `extra` TOML.
fn config(
    pki: &Pki,
    shop_backend: &str,
    blog_backend: &str,
    extra_shop: &str,
    top: &str,
) -> Config {
    let (shop_cert, shop_key) = pki.issue(
        "shop",
        "shop.example.com",
        &["shop.example.com", "*.shop.example.com"],
        true,
    );
    let (blog_cert, blog_key) = pki.issue("blog", "blog.example.com", &["blog.example.com"], false);
    Config::raw(&format!(
        r#"[listen]
http = ["0.0.0.0:80", "[::]:80"]
https = ["0.0.0.0:443", "[::]:443"]
[state]
dir = "{{STATE_DIR}}"
control_socket = "{{CONTROL_SOCKET}}"
{top}
[[site]]
name = "shop"
domains = ["shop.example.com", "*.shop.example.com"]
backend = "{shop_backend}"
force_https = true
tls = {{ cert = "{shop_cert}", key = "{shop_key}" }}
{extra_shop}
[[site]]
name = "blog"
domains = ["blog.example.com"]
backend = "{blog_backend}"
tls = {{ cert = "{blog_cert}", key = "{blog_key}" }}
"#
    ))
}

/// The usual test edge: namespaces, a test CA, the shop and blog backends and the daemon.
/// Fields drop in declaration order: the daemon first, the namespaces last.
struct Edge {
    d: Daemon,
    _shop: Backend,
    _blog: Backend,
    pki: Pki,
    ns: Netns,
}

impl Edge {
    fn start(extra_shop: &str, top: &str) -> Edge {
        let ns = Netns::new();
        let pki = Pki::new();
        let shop = Backend::start(&ns, "shop", 0);
        let blog = Backend::start(&ns, "blog", 0);
        let d = Daemon::start(
            &ns,
            &config(&pki, &shop.url(), &blog.url(), extra_shop, top),
        );
        Edge {
            d,
            _shop: shop,
            _blog: blog,
            pki,
            ns,
        }
    }
}

fn resolve(host: &str) -> String {
    format!("{host}:443:{}", EDGE_V4)
}

/// `curl -si --cacert CA --resolve HOST:443:EDGE ARGS https://HOST PATH`.
fn curl_https(ns: &Netns, pki: &Pki, host: &str, path: &str, args: &[&str]) -> String {
    let url = format!("https://{host}{path}");
    let ca = pki.ca();
    let r = resolve(host);
    let mut all = vec!["--cacert", &ca, "--resolve", &r];
    all.extend_from_slice(args);
    all.push(&url);
    curl(ns, &all)
}

fn headers_named<'a>(resp: &'a str, name: &str) -> Vec<&'a str> {
    let head = resp.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("").trim_end()
}

#[test]
fn h1_h2_hsts_exactly_once_and_forwarding_headers() {
    if !require_root() {
        return;
    }
    let e = Edge::start("", "");
    let (ns, pki) = (&e.ns, &e.pki);

    for proto in ["--http1.1", "--http2"] {
        let r = curl_https(
            ns,
            pki,
            "shop.example.com",
            "/a?b=1",
            &[
                proto,
                "-H",
                "X-Forwarded-For: 203.0.113.9",
                "-H",
                "X-Forwarded-Proto: http",
                "-H",
                "Forwarded: for=x",
            ],
        );
        let want_version = if proto == "--http2" {
            "HTTP/2 200"
        } else {
            "HTTP/1.1 200 OK"
        };
        assert_eq!(status_line(&r), want_version, "{r}");
        assert_eq!(
            headers_named(&r, "strict-transport-security"),
            vec!["max-age=31536000"],
            "{proto}: {r}"
        );
        assert!(r.contains("backend=shop"), "{r}");
        assert!(r.contains("path=/a?b=1"), "{r}");
        assert!(r.contains("header:x-forwarded-proto=https"), "{r}");
        assert!(
            r.contains(&format!("header:x-forwarded-for={CLIENT_V4}")),
            "{r}"
        );
        assert!(
            !r.contains("203.0.113.9"),
            "forged X-Forwarded-For kept: {r}"
        );
        assert!(
            r.contains("header:x-forwarded-host=shop.example.com"),
            "{r}"
        );
        assert!(
            r.contains(&format!(
                "header:forwarded=for={CLIENT_V4};host=\"shop.example.com\";proto=https"
            )),
            "{r}"
        );
        assert_eq!(r.matches("header:x-forwarded-for=").count(), 1, "{r}");

        // Not enforced: no HSTS from force-https.
        let r = curl_https(ns, pki, "blog.example.com", "/", &[proto]);
        assert!(status_line(&r).contains(" 200"), "{r}");
        assert!(
            headers_named(&r, "strict-transport-security").is_empty(),
            "{r}"
        );
    }
    // No HSTS on port 80.
    let r = curl(
        ns,
        &[
            "--resolve",
            &format!("shop.example.com:80:{EDGE_V4}"),
            "http://shop.example.com/x",
        ],
    );
    assert!(r.starts_with("HTTP/1.1 301"), "{r}");
    assert!(
        headers_named(&r, "strict-transport-security").is_empty(),
        "{r}"
    );
}

#[test]
fn backend_hsts_is_kept_unchanged_and_502_504_carry_hsts() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let pki = Pki::new();
    let shop = Backend::start_with(&ns, "shop", 0, &["--hsts", "max-age=5;   preload"]);
    // Nothing listens on 127.0.0.1:9 in the edge namespace: the blog backend is down.
    let _d = Daemon::start(
        &ns,
        &config(
            &pki,
            &shop.url(),
            "http://127.0.0.1:9",
            "",
            "[proxy]\nresponse_timeout_ms = 500",
        ),
    );
    for proto in ["--http1.1", "--http2"] {
        let r = curl_https(&ns, &pki, "shop.example.com", "/", &[proto]);
        assert_eq!(
            headers_named(&r, "strict-transport-security"),
            vec!["max-age=5;   preload"],
            "{r}"
        );
    }
    // Enforce blog, whose backend is down: 502 with HSTS and a short text body.
    let out = _d.cli(&["enable", "blog.example.com"]);
    assert!(out.status.success(), "{out:?}");
    let r = curl_https(&ns, &pki, "blog.example.com", "/", &["--http2"]);
    assert_eq!(status_line(&r), "HTTP/2 502", "{r}");
    assert_eq!(
        headers_named(&r, "strict-transport-security"),
        vec!["max-age=31536000"],
        "{r}"
    );
    assert!(r.contains("502 Bad Gateway"), "{r}");
    drop(shop);
}

#[test]
fn gateway_timeout_carries_hsts() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let pki = Pki::new();
    let shop = Backend::start_with(&ns, "shop", 0, &["--delay-ms", "3000"]);
    let blog = Backend::start(&ns, "blog", 0);
    let _d = Daemon::start(
        &ns,
        &config(
            &pki,
            &shop.url(),
            &blog.url(),
            "",
            "[proxy]\nresponse_timeout_ms = 300",
        ),
    );
    let r = curl_https(&ns, &pki, "shop.example.com", "/", &["--http1.1"]);
    assert_eq!(status_line(&r), "HTTP/1.1 504 Gateway Timeout", "{r}");
    assert_eq!(
        headers_named(&r, "strict-transport-security"),
        vec!["max-age=31536000"],
        "{r}"
    );
}

#[test]
fn disable_and_enable_toggle_hsts_live_and_site_opt_out() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let pki = Pki::new();
    let shop = Backend::start(&ns, "shop", 0);
    let blog = Backend::start(&ns, "blog", 0);
    let d = Daemon::start(
        &ns,
        &config(
            &pki,
            &shop.url(),
            &blog.url(),
            "hsts = { max_age = 600, include_subdomains = true }",
            "",
        ),
    );
    let hsts = |host: &str| {
        headers_named(
            &curl_https(&ns, &pki, host, "/", &[]),
            "strict-transport-security",
        )
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    assert_eq!(
        hsts("shop.example.com"),
        vec!["max-age=600; includeSubDomains"]
    );
    assert!(d.cli(&["disable", "shop.example.com"]).status.success());
    assert!(hsts("shop.example.com").is_empty());
    assert!(d.cli(&["enable", "shop.example.com"]).status.success());
    assert_eq!(
        hsts("shop.example.com"),
        vec!["max-age=600; includeSubDomains"]
    );
    assert!(d.cli(&["enable", "blog.example.com"]).status.success());
    assert_eq!(hsts("blog.example.com"), vec!["max-age=31536000"]);
}

#[test]
fn hsts_false_still_redirects_but_injects_nothing() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let pki = Pki::new();
    let shop = Backend::start(&ns, "shop", 0);
    let blog = Backend::start(&ns, "blog", 0);
    let _d = Daemon::start(
        &ns,
        &config(&pki, &shop.url(), &blog.url(), "hsts = false", ""),
    );
    let r = curl_https(&ns, &pki, "shop.example.com", "/", &[]);
    assert!(status_line(&r).contains(" 200"), "{r}");
    assert!(
        headers_named(&r, "strict-transport-security").is_empty(),
        "{r}"
    );
    let r = curl(
        &ns,
        &[
            "--resolve",
            &format!("shop.example.com:80:{EDGE_V4}"),
            "http://shop.example.com/x",
        ],
    );
    assert!(r.starts_with("HTTP/1.1 301"), "{r}");
}

/// The subject CN curl reports for a handshake with `sni`.
fn served_cn(ns: &Netns, pki: &Pki, sni: &str) -> Result<String, String> {
    let url = format!("https://{sni}/");
    let r = resolve(sni);
    let o = output_timeout(
        &mut ns.cli_cmd(&[
            "curl",
            "-sv",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "-k",
            "--resolve",
            &r,
            &url,
        ]),
        CMD_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let _ = pki;
    err.lines()
        .find_map(|l| l.trim().strip_prefix("*  subject: CN=").map(str::to_string))
        .ok_or(err)
}

#[test]
fn sni_picks_the_certificate_and_unknown_sni_is_refused_or_defaulted() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let pki = Pki::new();
    let shop = Backend::start(&ns, "shop", 0);
    let blog = Backend::start(&ns, "blog", 0);
    let d = Daemon::start(&ns, &config(&pki, &shop.url(), &blog.url(), "", ""));
    assert_eq!(
        served_cn(&ns, &pki, "shop.example.com").unwrap(),
        "shop.example.com"
    );
    assert_eq!(
        served_cn(&ns, &pki, "x.shop.example.com").unwrap(),
        "shop.example.com"
    );
    assert_eq!(
        served_cn(&ns, &pki, "blog.example.com").unwrap(),
        "blog.example.com"
    );
    let err = served_cn(&ns, &pki, "other.example.org").unwrap_err();
    assert!(err.contains("unrecognized name"), "{err}");
    let stats = json(&d.cli(&["stats", "--json"]).out());
    assert!(
        stats["tls_unknown_sni"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    drop(d);

    // With a default certificate, unknown names get it.
    let (dc, dk) = pki.issue(
        "default",
        "default.example.net",
        &["default.example.net"],
        false,
    );
    let _d = Daemon::start(
        &ns,
        &config(
            &pki,
            &shop.url(),
            &blog.url(),
            "",
            &format!("[tls]\ndefault_cert = {{ cert = \"{dc}\", key = \"{dk}\" }}"),
        ),
    );
    assert_eq!(
        served_cn(&ns, &pki, "other.example.org").unwrap(),
        "default.example.net"
    );
    assert_eq!(
        served_cn(&ns, &pki, "shop.example.com").unwrap(),
        "shop.example.com"
    );
}

/// A TLS client config trusting the test CA, offering `alpn`.
fn client_config(pki: &Pki, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).expect("ca") {
        roots.add(c.expect("ca der")).expect("add ca");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn tls_connect(
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let addr: SocketAddr = EDGE443.parse().expect("addr");
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect 443");
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("sni");
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// `fh-backend` arguments: the small body everywhere, and `bytes` bytes at `/big`.
fn big_backend_args(bytes: &str) -> [&str; 6] {
    [
        "--fixed-bytes",
        "128",
        "--big-path",
        "/big",
        "--big-bytes",
        bytes,
    ]
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn rust_client_h1_and_h2() {
    if !require_root() {
        return;
    }
    let e = Edge::start("", "");
    let (ns, pki) = (&e.ns, &e.pki);
    ns.run_in_client(|| {
        rt().block_on(async {
            use http_body_util::{BodyExt, Empty};
            use hyper_util::rt::{TokioExecutor, TokioIo};
            // HTTP/2 over ALPN h2.
            let tls = tls_connect(client_config(pki, &[b"h2"]), "shop.example.com").await;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            for i in 0..3 {
                let req = hyper::Request::builder()
                    .uri(format!("https://shop.example.com/h2/{i}"))
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("req");
                let resp = send.send_request(req).await.expect("h2 request");
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.version(), hyper::Version::HTTP_2);
                assert_eq!(
                    resp.headers()
                        .get_all("strict-transport-security")
                        .iter()
                        .count(),
                    1
                );
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                let text = String::from_utf8_lossy(&body);
                assert!(text.contains(&format!("path=/h2/{i}")), "{text}");
                assert!(text.contains("header:host=shop.example.com"), "{text}");
            }
            // HTTP/1.1 over ALPN http/1.1, keep-alive.
            let tls = tls_connect(client_config(pki, &[b"http/1.1"]), "blog.example.com").await;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("h1 handshake");
            tokio::spawn(conn);
            for i in 0..3 {
                let req = hyper::Request::builder()
                    .uri(format!("/h1/{i}"))
                    .header("host", "blog.example.com")
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("req");
                let resp = send.send_request(req).await.expect("h1 request");
                assert_eq!(resp.status(), 200);
                assert!(resp.headers().get("strict-transport-security").is_none());
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert!(String::from_utf8_lossy(&body).contains(&format!("path=/h1/{i}")));
            }
        })
    });
}

#[test]
fn websocket_upgrade_is_tunnelled_over_tls() {
    if !require_root() {
        return;
    }
    let e = Edge::start("", "");
    let (ns, pki) = (&e.ns, &e.pki);
    ns.run_in_client(|| {
        rt().block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tls = tls_connect(client_config(pki, &[b"http/1.1"]), "shop.example.com").await;
            tls.write_all(
                b"GET /ws HTTP/1.1\r\nHost: shop.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .await
            .expect("write upgrade");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut byte)).await.expect("timeout").expect("read");
                assert!(n == 1, "closed during head: {}", String::from_utf8_lossy(&head));
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
            for msg in [&b"hello through the tunnel"[..], b"second frame"] {
                tls.write_all(msg).await.expect("write");
                let mut got = vec![0u8; msg.len()];
                tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut got)).await.expect("timeout").expect("echo");
                assert_eq!(got, msg);
            }
        })
    });
}

#[test]
fn reload_keeps_open_connections_and_bad_files_keep_the_old_cert() {
    if !require_root() {
        return;
    }
    let e = Edge::start("", "");
    let (ns, pki, d) = (&e.ns, &e.pki, &e.d);
    let serial = |pem: &Path| -> String {
        let o = output_timeout(
            Command::new("openssl")
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(pem),
            CMD_TIMEOUT,
        );
        o.out().trim().to_string()
    };
    let first = serial(&pki.path("shop.pem"));

    ns.run_in_client(|| {
        rt().block_on(async {
            use http_body_util::{BodyExt, Empty};
            use hyper_util::rt::TokioIo;
            let tls = tls_connect(client_config(pki, &[b"http/1.1"]), "shop.example.com").await;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("h1 handshake");
            tokio::spawn(conn);
            let get = |p: &str| {
                hyper::Request::builder()
                    .uri(p)
                    .header("host", "shop.example.com")
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("req")
            };
            let resp = send
                .send_request(get("/before"))
                .await
                .expect("before reload");
            assert_eq!(resp.status(), 200);
            let _ = resp.into_body().collect().await;

            // Replace the certificate on disk and reload while the connection is open.
            pki.issue(
                "shop",
                "shop.example.com",
                &["shop.example.com", "*.shop.example.com"],
                false,
            );
            let out = d.cli(&["reload"]);
            assert!(out.status.success(), "reload: {out:?}");

            let resp = send
                .send_request(get("/after"))
                .await
                .expect("same connection after reload");
            assert_eq!(resp.status(), 200);
            let _ = resp.into_body().collect().await;

            // A new connection sees the new certificate.
            let tls = tls_connect(client_config(pki, &[b"http/1.1"]), "shop.example.com").await;
            let certs = tls
                .get_ref()
                .1
                .peer_certificates()
                .expect("peer certs")
                .to_vec();
            let second_pem = pki.path("shop.pem");
            let on_disk: Vec<_> = {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                CertificateDer::pem_file_iter(&second_pem)
                    .expect("pem")
                    .map(|c| c.expect("der"))
                    .collect()
            };
            assert_eq!(
                certs[0], on_disk[0],
                "new connections must get the reloaded certificate"
            );
        })
    });
    let second = serial(&pki.path("shop.pem"));
    assert_ne!(first, second);

    // A broken key on reload: reported (exit 1), old certificate stays in service.
    std::fs::write(
        pki.path("shop.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("break key");
    let out = d.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shop.key"),
        "{out:?}"
    );
    let r = curl_https(ns, pki, "shop.example.com", "/", &[]);
    assert!(
        status_line(&r).contains(" 200"),
        "old certificate must still serve: {r}"
    );
    let stats = json(&d.cli(&["stats", "--json"]).out());
    assert_eq!(stats["cert_reload_failures"].as_u64(), Some(1), "{stats}");
    // SIGHUP with the broken file: the daemon keeps running and serving.
    let _ = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(200));
    let r = curl_https(ns, pki, "shop.example.com", "/", &[]);
    assert!(status_line(&r).contains(" 200"), "{r}");
}

#[test]
fn check_validates_certificate_files() {
    // No root needed: `check` only reads files.
    let pki = Pki::new();
    let (cert, key) = pki.issue("shop", "shop.example.com", &["shop.example.com"], true);
    let (_, other_key) = pki.issue("other", "other.example.com", &["other.example.com"], false);
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, cert: &str, key: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!("[[site]]\nname = \"s\"\ndomains = [\"shop.example.com\"]\ntls = {{ cert = \"{cert}\", key = \"{key}\" }}\n"),
        )
        .expect("config");
        p
    };
    let ok = write("ok.toml", &cert, &key);
    let o = cli(&["check", "--config", ok.to_str().expect("utf8")]);
    assert!(o.status.success(), "{o:?}");
    let mismatched = write("bad.toml", &cert, &other_key);
    let o = cli(&["check", "--config", mismatched.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("do not work together"),
        "{o:?}"
    );
    let missing = write("missing.toml", "/nonexistent/cert.pem", &key);
    let o = cli(&["check", "--config", missing.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent/cert.pem"),
        "{o:?}"
    );
}

#[test]
fn returning_clients_resume_sessions_with_tickets_and_the_cache() {
    if !require_root() {
        return;
    }
    let e = Edge::start("", "");
    let (ns, pki) = (&e.ns, &e.pki);
    // (version flag, extra flag): TLS 1.3 tickets, TLS 1.2 tickets, TLS 1.2 session-ID cache.
    for (i, (version, extra)) in [("-tls1_3", ""), ("-tls1_2", ""), ("-tls1_2", "-no_ticket")]
        .into_iter()
        .enumerate()
    {
        let sess = pki.path(&format!("session-{i}"));
        let run = |io: &str| -> String {
            let script = format!(
                "(sleep 0.5; echo Q) | openssl s_client {version} {extra} -connect {EDGE443} -servername shop.example.com \
                 -CAfile {} {io} {} 2>/dev/null | grep -E '^(New|Reused),'",
                pki.ca(),
                sess.display()
            );
            output_timeout(&mut ns.cli_cmd(&["sh", "-c", &script]), CMD_TIMEOUT).out()
        };
        let first = run("-sess_out");
        assert!(first.starts_with("New,"), "{version} {extra}: {first}");
        let second = run("-sess_in");
        assert!(
            second.starts_with("Reused,"),
            "{version} {extra}: resumption failed: {second}"
        );
    }
}

#[test]
fn h2_response_trailers_from_the_backend_reach_the_client() {
    if !require_root() {
        return;
    }
    let e = Edge::start("", "");
    let (ns, pki) = (&e.ns, &e.pki);
    ns.run_in_client(|| {
        rt().block_on(async {
            use http_body_util::{BodyExt, Full};
            use hyper_util::rt::{TokioExecutor, TokioIo};
            let tls = tls_connect(client_config(pki, &[b"h2"]), "shop.example.com").await;
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            let body = Full::new(bytes::Bytes::from_static(b"payload"))
                .with_trailers(async {
                    let mut t = hyper::HeaderMap::new();
                    t.insert(
                        "x-client-trailer",
                        hyper::header::HeaderValue::from_static("sent"),
                    );
                    Some(Ok::<_, std::convert::Infallible>(t))
                })
                .boxed();
            let req = hyper::Request::builder()
                .method("POST")
                .uri("https://shop.example.com/trailers")
                .header("te", "trailers")
                .header("x-want-trailers", "1")
                .body(body)
                .expect("req");
            let resp = send.send_request(req).await.expect("h2 request");
            assert_eq!(resp.status(), 200);
            let collected = resp.into_body().collect().await.expect("body");
            let trailers = collected.trailers().cloned();
            let text = String::from_utf8_lossy(&collected.to_bytes()).to_string();
            assert!(text.contains("body-bytes=7"), "{text}");
            // Request trailers end at the proxy: hyper's HTTP/1.1 client (the backend leg) does
            // not send trailers. The body itself must arrive whole.
            let trailers = trailers.expect("response trailers lost");
            assert_eq!(
                trailers.get("x-backend-trailer").map(|v| v.as_bytes()),
                Some(&b"done"[..])
            );
        })
    });
}

/// Writes `req` on a TLS connection made with `sni`, reads until the server closes or 3 s
/// pass, and returns what came back.
async fn tls_raw(pki: &Pki, sni: &str, req: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(client_config(pki, &[b"http/1.1"]), sni).await;
    tls.write_all(req).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Conformance fault 5: a request whose host the connection's certificate is not the one for
/// gets 421 (RFC 9110 §15.5.20) over h1 and h2, and reaches no backend; sites sharing one
/// certificate keep working; case and `:443` are fine.
#[test]
fn misdirected_requests_get_421() {
    if !require_root() {
        return;
    }
    // "static.example.com" shares blog's certificate files.
    let ns = Netns::new();
    let pki = Pki::new();
    let shop = Backend::start(&ns, "shop", 0);
    let blog = Backend::start(&ns, "blog", 0);
    // `config` issues blog.pem/blog.key; the static site, added after shop's keys, reuses them.
    let static_site = format!(
        "[[site]]\nname = \"static\"\ndomains = [\"static.example.com\"]\nbackend = \"{}\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}",
        blog.url(),
        pki.path("blog.pem").display(),
        pki.path("blog.key").display()
    );
    let default_cert = format!(
        "[tls]\ndefault_cert = {{ cert = \"{}\", key = \"{}\" }}",
        pki.path("blog.pem").display(),
        pki.path("blog.key").display()
    );
    let cfg = config(&pki, &shop.url(), &blog.url(), &static_site, &default_cert);
    let d = Daemon::start(&ns, &cfg);
    // No SNI (a client by address, a health check): it named no host, so nothing is
    // misdirected; the default certificate is presented and every host is served.
    let r = curl(
        &ns,
        &[
            "-sik",
            "-H",
            "Host: shop.example.com",
            &format!("https://{EDGE_V4}/by-address"),
        ],
    );
    assert!(status_line(&r).contains(" 200"), "{r}");
    assert!(r.contains("backend=shop"), "{r}");
    ns.run_in_client(|| {
        rt().block_on(async {
            // h1: SNI blog, Host shop.
            let r = tls_raw(
                &pki,
                "blog.example.com",
                b"GET /x HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n",
            )
            .await;
            assert!(r.starts_with("HTTP/1.1 421 Misdirected Request\r\n"), "{r}");
            assert!(!r.contains("backend="), "reached a backend: {r}");
            // shop is enforced: even this answer carries its HSTS.
            assert_eq!(
                headers_named(&r, "strict-transport-security"),
                vec!["max-age=31536000"],
                "{r}"
            );
            // The same certificate's other site, and case and :443, are fine.
            for host in ["static.example.com", "BLOG.Example.com:443"] {
                let r = tls_raw(
                    &pki,
                    "blog.example.com",
                    format!("GET /y HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
                assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{host}: {r}");
            }
            // h2: :authority shop on a connection made for blog.
            use http_body_util::{BodyExt, Empty};
            use hyper_util::rt::{TokioExecutor, TokioIo};
            let tls = tls_connect(client_config(&pki, &[b"h2"]), "blog.example.com").await;
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            for (authority, status) in [
                ("shop.example.com", 421),
                ("a.shop.example.com", 421),
                ("blog.example.com", 200),
                ("static.example.com", 200),
            ] {
                let req = hyper::Request::builder()
                    .uri(format!("https://{authority}/z"))
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("req");
                let resp = send.send_request(req).await.expect("h2 request");
                assert_eq!(resp.status(), status, "{authority}");
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(
                    String::from_utf8_lossy(&body).contains("backend="),
                    status == 200,
                    "{authority}"
                );
            }
        })
    });
    let stats = json(&d.cli(&["stats", "--json"]).out());
    assert_eq!(stats["responses_421"].as_u64(), Some(3), "{stats}");
}

/// Conformance fault 6: the edge's own errors over TLS carry HSTS for an enforced host, also
/// when the request has no usable host (then the SNI's).
#[test]
fn the_edges_own_errors_carry_hsts() {
    if !require_root() {
        return;
    }
    let e = Edge::start("", "[tls]\nmax_header_bytes = 16384");
    e.ns.run_in_client(|| {
        rt().block_on(async {
            let r = tls_raw(
                &e.pki,
                "shop.example.com",
                b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nHost: shop.example.com\r\n\
                  Connection: close\r\n\r\n",
            )
            .await;
            assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
            assert_eq!(
                headers_named(&r, "strict-transport-security"),
                vec!["max-age=31536000"],
                "{r}"
            );
            // A target or a header block over tls.max_header_bytes (16 KiB here): 414 and 431,
            // with HSTS. (hyper answers targets over 65534 bytes itself, without it.)
            for (req, status) in [
                (
                    format!(
                        "GET /{} HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
                        "a".repeat(17_000)
                    ),
                    "HTTP/1.1 414 URI Too Long\r\n",
                ),
                (
                    format!(
                        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Big: {}\r\n\r\n",
                        "a".repeat(17_000)
                    ),
                    "HTTP/1.1 431 Request Header Fields Too Large\r\n",
                ),
            ] {
                let r = tls_raw(&e.pki, "shop.example.com", req.as_bytes()).await;
                assert!(r.starts_with(status), "{r}");
                assert_eq!(
                    headers_named(&r, "strict-transport-security"),
                    vec!["max-age=31536000"],
                    "{r}"
                );
            }
            // blog is not enforced: its errors get no HSTS.
            let r = tls_raw(
                &e.pki,
                "blog.example.com",
                b"GET / HTTP/1.1\r\nHost: blog.example.com\r\nHost: blog.example.com\r\n\
                  Connection: close\r\n\r\n",
            )
            .await;
            assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
            assert!(
                headers_named(&r, "strict-transport-security").is_empty(),
                "{r}"
            );
        })
    });
}

/// Conformance fault 4 over TLS: the client's `X-Forwarded-Port: 80` and `X-Forwarded-Ssl`
/// never reach the backend; `X-Forwarded-Port` is 443.
#[test]
fn forged_port_signals_over_tls_are_replaced() {
    if !require_root() {
        return;
    }
    let e = Edge::start("", "");
    for proto in ["--http1.1", "--http2"] {
        let r = curl_https(
            &e.ns,
            &e.pki,
            "shop.example.com",
            "/",
            &[
                proto,
                "-H",
                "X-Forwarded-Port: 80",
                "-H",
                "X-Forwarded-Ssl: off",
                "-H",
                "X-Forwarded-Scheme: http",
            ],
        );
        assert!(r.contains("header:x-forwarded-port=443\n"), "{proto}: {r}");
        assert_eq!(r.matches("header:x-forwarded-port=").count(), 1, "{r}");
        assert!(!r.contains("header:x-forwarded-ssl="), "{proto}: {r}");
        assert!(!r.contains("header:x-forwarded-scheme="), "{proto}: {r}");
    }
}

/// The redirect-loop guard: a backend redirecting to `http://` on its own host gets its
/// `Location` rewritten to `https://`, or 508 (with HSTS) when it points back at the URL just
/// requested; `CDN-Loop` is added to every forwarded request and a request carrying it is
/// refused with 508; `csp_upgrade_insecure_requests` adds or appends the directive.
#[test]
fn loop_guard_cdn_loop_and_csp_upgrade() {
    if !require_root() {
        return;
    }
    let e = Edge::start("csp_upgrade_insecure_requests = true", "");
    let (ns, pki) = (&e.ns, &e.pki);
    for proto in ["--http1.1", "--http2"] {
        let r = curl_https(
            ns,
            pki,
            "shop.example.com",
            "/a?b=1",
            &[
                proto,
                "-H",
                "x-want-status: 301",
                "-H",
                "x-want-location: HTTP://Shop.Example.com.:80/a?b=1",
            ],
        );
        assert!(status_line(&r).contains(" 508"), "{proto}: {r}");
        assert!(r.contains("X-Forwarded-Proto"), "{proto}: {r}");
        assert_eq!(
            headers_named(&r, "strict-transport-security"),
            vec!["max-age=31536000"],
            "{r}"
        );
        let r = curl_https(
            ns,
            pki,
            "shop.example.com",
            "/a",
            &[
                proto,
                "-H",
                "x-want-status: 302",
                "-H",
                "x-want-location: http://shop.example.com/login?next=%2Fa",
            ],
        );
        assert!(status_line(&r).contains(" 302"), "{proto}: {r}");
        assert_eq!(
            headers_named(&r, "location"),
            vec!["https://shop.example.com/login?next=%2Fa"],
            "{r}"
        );
        // Another host's http:// is left alone.
        let r = curl_https(
            ns,
            pki,
            "shop.example.com",
            "/a",
            &[
                proto,
                "-H",
                "x-want-status: 302",
                "-H",
                "x-want-location: http://elsewhere.example/x",
            ],
        );
        assert_eq!(
            headers_named(&r, "location"),
            vec!["http://elsewhere.example/x"],
            "{r}"
        );
        // CDN-Loop: added to what the backend gets; a request that carries it is refused.
        let r = curl_https(
            ns,
            pki,
            "shop.example.com",
            "/",
            &[proto, "-H", "CDN-Loop: other-cdn"],
        );
        assert!(
            r.contains("header:cdn-loop=other-cdn\n")
                && r.contains("header:cdn-loop=force-https\n"),
            "{proto}: {r}"
        );
        let r = curl_https(
            ns,
            pki,
            "shop.example.com",
            "/",
            &[proto, "-H", "CDN-Loop: other-cdn, force-https; v=1"],
        );
        assert!(status_line(&r).contains(" 508"), "{proto}: {r}");
        assert!(!r.contains("backend="), "{proto}: reached the backend: {r}");
        // CSP: added, or appended to the backend's own policy; never on a host not enforced.
        let r = curl_https(ns, pki, "shop.example.com", "/", &[proto]);
        assert_eq!(
            headers_named(&r, "content-security-policy"),
            vec!["upgrade-insecure-requests"],
            "{r}"
        );
        let r = curl_https(
            ns,
            pki,
            "shop.example.com",
            "/",
            &[proto, "-H", "x-want-csp: default-src 'self';"],
        );
        assert_eq!(
            headers_named(&r, "content-security-policy"),
            vec!["default-src 'self'; upgrade-insecure-requests"],
            "{r}"
        );
        let r = curl_https(ns, pki, "blog.example.com", "/", &[proto]);
        assert!(
            headers_named(&r, "content-security-policy").is_empty(),
            "{r}"
        );
    }
    let stats = json(&e.d.cli(&["stats", "--json"]).out());
    assert_eq!(stats["redirect_loops_stopped"].as_u64(), Some(2), "{stats}");
    assert_eq!(
        stats["redirect_loops_rewritten"].as_u64(),
        Some(2),
        "{stats}"
    );
    assert_eq!(stats["responses_508"].as_u64(), Some(4), "{stats}");
}

/// A TLS connection offering `alpn` that sends `bytes` and then nothing: what it got back, and
/// how long after the bytes the edge closed it (`None`: still open after `limit`).
async fn quiet_client(
    pki: &Pki,
    alpn: &[u8],
    bytes: &[u8],
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(client_config(pki, &[alpn]), "shop.example.com").await;
    tls.write_all(bytes).await.expect("write");
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = tls.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    (got, closed.ok().map(|()| start.elapsed()))
}

/// The types of the HTTP/2 frames in `bytes` (RFC 9113 §4.1: a 9-byte header each).
fn h2_frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

/// hyper's servers have no idle timeout for HTTP/2, nor for the bytes that choose the
/// protocol: a client that completed a handshake and then sent nothing, or half of HTTP/2's
/// preface, held its connection and a `max_connections` slot for good (still open after 15 s
/// with `idle_timeout_ms = 2000`, 2026-12-02). Now each is let go within two idle periods
/// (HTTP/2 after a `GOAWAY`), while a request waiting on a slow backend for longer than two
/// periods is still answered on its HTTP/2 connection (the edge's `PING`s are answered), and
/// on an HTTP/1.1 one.
#[test]
fn quiet_tls_clients_are_let_go_and_slow_responses_are_not_cut() {
    if !require_root() {
        return;
    }
    const IDLE: Duration = Duration::from_millis(1000);
    let ns = Netns::new();
    let pki = Pki::new();
    let shop = Backend::start_with(&ns, "shop", 0, &["--delay-ms", "2500"]);
    let blog = Backend::start(&ns, "blog", 0);
    let top = format!("[limits]\nidle_timeout_ms = {}\n", IDLE.as_millis());
    let d = Daemon::start(&ns, &config(&pki, &shop.url(), &blog.url(), "", &top));
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame.
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    let limit = IDLE * 6;
    let (silent, settled, half, slow, slow_h1) = ns.run_in_client(|| {
        rt().block_on(async {
            let slow = async {
                use http_body_util::{BodyExt, Empty};
                use hyper_util::rt::{TokioExecutor, TokioIo};
                let tls = tls_connect(client_config(&pki, &[b"h2"]), "shop.example.com").await;
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .expect("h2 handshake");
                tokio::spawn(conn);
                let start = std::time::Instant::now();
                let req = hyper::Request::builder()
                    .uri("https://shop.example.com/slow")
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("req");
                let resp = send.send_request(req).await.expect("slow h2 request");
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                (status, body.len(), start.elapsed())
            };
            let preface_and_settings = [PREFACE, SETTINGS].concat();
            // HTTP/1.1 past the keep-alive loop (a body): hyper's own timeouts, as before.
            let post = b"POST /slow-h1 HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 2\r\n\
                         Connection: close\r\n\r\nhi";
            tokio::join!(
                quiet_client(&pki, b"h2", b"", limit),
                quiet_client(&pki, b"h2", &preface_and_settings, limit),
                quiet_client(&pki, b"http/1.1", b"PRI * HTTP/2.0\r\n", limit),
                slow,
                quiet_client(&pki, b"http/1.1", post, limit),
            )
        })
    });
    for (what, (_, closed)) in [
        ("h2, nothing sent", &silent),
        ("h2, preface and SETTINGS", &settled),
        ("http/1.1, half a preface", &half),
    ] {
        let closed = closed.unwrap_or_else(|| panic!("{what}: still open after {limit:?}"));
        eprintln!("{what}: closed after {closed:?}");
        assert!(
            closed >= IDLE && closed <= IDLE * 5 / 2 + Duration::from_millis(500),
            "{what}: closed after {closed:?} (idle timeout {IDLE:?})"
        );
    }
    let types = h2_frame_types(&settled.0);
    assert_eq!(
        types.first(),
        Some(&4),
        "the edge's SETTINGS first: {types:?}"
    );
    assert!(types.contains(&7), "a GOAWAY before the close: {types:?}");
    let (status, len, took) = slow;
    assert_eq!(status, 200, "the slow response over HTTP/2");
    assert!(
        len > 0 && took >= Duration::from_millis(2500),
        "{len} bytes in {took:?}"
    );
    let (got, closed) = slow_h1;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 "),
        "the slow response over HTTP/1.1: {text}"
    );
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(2500)),
        "{closed:?}"
    );
    let idle_shutdowns = d.counter("tls_idle_shutdowns");
    assert!(idle_shutdowns >= 3, "tls_idle_shutdowns = {idle_shutdowns}");
}

/// A client that asks for a large response and then reads nothing held its connection, a
/// `max_connections` slot and a backend connection for good (still open after 12 s with
/// `idle_timeout_ms = 2000`, 2026-12-02). Now the kernel aborts a connection whose client
/// takes no data for the idle timeout (`TCP_USER_TIMEOUT`, inherited from the listeners): on
/// port 80, over TLS with HTTP/1.1, and over HTTP/2.
#[test]
fn clients_that_stop_reading_are_let_go() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let pki = Pki::new();
    let be = Backend::start_with(&ns, "shop", 0, &big_backend_args(&(256 << 20).to_string()));
    let top = "[limits]\nidle_timeout_ms = 1000\n";
    let d = Daemon::start(&ns, &config(&pki, &be.url(), &be.url(), "", top));
    let held = ns.run_in_client(|| {
        let rt = rt();
        let held = rt.block_on(async {
            use hyper_util::rt::{TokioExecutor, TokioIo};
            use tokio::io::AsyncWriteExt;
            // Port 80, proxied (blog is not enforced).
            let mut plain = tokio::net::TcpStream::connect(format!("{EDGE_V4}:80"))
                .await
                .expect("connect 80");
            plain
                .write_all(b"GET /big HTTP/1.1\r\nHost: blog.example.com\r\n\r\n")
                .await
                .expect("write");
            // TLS, HTTP/1.1.
            let mut h1 = tls_connect(client_config(&pki, &[b"http/1.1"]), "shop.example.com").await;
            h1.write_all(b"GET /big HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
                .await
                .expect("write");
            // HTTP/2, with windows larger than the response: only TCP holds it back.
            let tls = tls_connect(client_config(&pki, &[b"h2"]), "shop.example.com").await;
            let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(1 << 30)
                .initial_connection_window_size(1 << 30)
                .handshake(TokioIo::new(tls))
                .await
                .expect("h2 handshake");
            let conn = tokio::spawn(conn);
            let req = hyper::Request::builder()
                .uri("https://shop.example.com/big")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("req");
            let resp = send.send_request(req).await.expect("h2 request");
            assert_eq!(resp.status(), 200);
            // Nothing polls these once `block_on` returns: none of them reads again.
            (plain, h1, send, resp, conn)
        });
        (rt, held)
    });
    let start = std::time::Instant::now();
    let let_go = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        d.counter("active_connections") == 0
    });
    let took = start.elapsed();
    eprintln!("the stalled clients were let go after {took:?}");
    assert!(
        let_go,
        "still {} client connections after {took:?}",
        d.counter("active_connections")
    );
    drop(held);
}

/// An HTTP/2 client that keeps its connection alive (it answers `PING`s and sends requests)
/// but never opens one stream's flow-control window held that stream, and its backend
/// connection, for good: hyper's server has no timeout for it. Now the stream is reset
/// (`RST_STREAM` `CANCEL`) once its response has waited `idle_timeout_ms` for window, while
/// the connection and its other streams go on, a slow but steady reader included.
#[test]
fn h2_streams_stalled_by_their_client_are_reset() {
    if !require_root() {
        return;
    }
    const IDLE: Duration = Duration::from_millis(1000);
    const BIG: usize = 512 * 1024;
    let ns = Netns::new();
    let pki = Pki::new();
    let be = Backend::start_with(&ns, "shop", 0, &big_backend_args(&BIG.to_string()));
    let top = format!("[limits]\nidle_timeout_ms = {}\n", IDLE.as_millis());
    let d = Daemon::start(&ns, &config(&pki, &be.url(), &be.url(), "", &top));
    let (early, stalled, slow, small, active) = ns.run_in_client(|| {
        rt().block_on(async {
            use http_body_util::{BodyExt, Empty};
            use hyper_util::rt::{TokioExecutor, TokioIo};
            let tls = tls_connect(client_config(&pki, &[b"h2"]), "shop.example.com").await;
            // Stream windows of 64 KiB, HTTP/2's initial size: an unread response fills its
            // window long before its 512 KiB are sent.
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(65_535)
                .initial_connection_window_size(16 << 20)
                .handshake(TokioIo::new(tls))
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            let get = |path: &str| {
                hyper::Request::builder()
                    .uri(format!("https://shop.example.com{path}"))
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("req")
            };
            let start = std::time::Instant::now();
            // Never read while the window is closed.
            let unread = send
                .clone()
                .send_request(get("/big"))
                .await
                .expect("the stalled request");
            assert_eq!(unread.status(), 200);
            // Reads 64 KiB, then pauses for 0.6 idle: the response waits often, never long.
            let mut slow_send = send.clone();
            let slow = tokio::spawn(async move {
                let resp = slow_send.send_request(get("/big")).await?;
                let mut body = resp.into_body();
                let (mut got, mut since_pause) = (0, 0);
                while let Some(frame) = body.frame().await {
                    let n = frame?.data_ref().map_or(0, |d| d.len());
                    got += n;
                    since_pause += n;
                    if since_pause >= 64 * 1024 {
                        since_pause = 0;
                        tokio::time::sleep(IDLE * 6 / 10).await;
                    }
                }
                Ok::<_, hyper::Error>((got, start.elapsed()))
            });
            // Meanwhile, a small request every 0.3 idle on the same connection.
            let mut small = Vec::new();
            let mut early = None;
            let mut s = send.clone();
            while start.elapsed() < IDLE * 3 {
                tokio::time::sleep(IDLE * 3 / 10).await;
                let status = match s.send_request(get("/")).await {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => panic!("a small request after {:?}: {e}", start.elapsed()),
                };
                small.push(status);
                if early.is_none() && start.elapsed() >= IDLE / 2 {
                    early = Some(d.counter("h2_stalled_streams"));
                }
            }
            // Reading the stalled response now opens its window: a stream still alive
            // would deliver all 512 KiB; a reset one ends with an error after what it got.
            let stalled = tokio::time::timeout(IDLE * 5, unread.into_body().collect()).await;
            let stalled = match stalled {
                Err(_) => Err("still waiting".to_string()),
                Ok(Ok(b)) => Ok(b.to_bytes().len()),
                Ok(Err(e)) => Err(format!("{e:?}")),
            };
            let slow = slow.await.expect("slow reader task");
            // The client's connection is still there.
            let active = d.counter("active_connections");
            (early, stalled, slow, small, active)
        })
    });
    assert_eq!(early, Some(0), "a stream was reset before the idle timeout");
    match &stalled {
        Err(e) => {
            eprintln!("the stalled stream ended with {e}");
            assert!(e.contains("CANCEL"), "not a CANCEL reset: {e}");
        }
        Ok(len) => panic!("the stalled stream was never reset: read {len} bytes at the end"),
    }
    let (got, took) = slow.expect("the slow reader's response");
    eprintln!("the slow reader got {got} bytes in {took:?}");
    assert_eq!(got, BIG, "the slow reader's response");
    assert!(took > IDLE * 3, "the slow reader was not slow: {took:?}");
    assert!(
        !small.is_empty() && small.iter().all(|&s| s == 200),
        "small requests: {small:?}"
    );
    assert_eq!(active, 1, "the client's connection");
    assert_eq!(d.counter("h2_stalled_streams"), 1);
}
