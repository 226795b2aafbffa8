//! Automatic HTTPS Rewrites, black-box: a TLS edge whose `shop` site has `https_rewrites`,
//! a backend that echoes the page it is sent (optionally compressed), and curl over HTTP/1.1
//! and HTTP/2. Links to a host enforced here, to one in `https_rewrite_hosts` and to an
//! unknown one; srcset and CSS `url()`; gzip and br bodies; no-transform; a non-HTML body;
//! a document over the memory bound; `Content-Length` dropped and `ETag` weakened; counters.

use std::{io::Read, time::Duration};

use fh_tests::{pki::Pki, *};

/// The edge: `shop` (enforced, rewrites on, cert), `img` (enforced, no backend: a host
/// known to serve HTTPS), `blog` (not enforced, rewrites on, cert).
struct Edge {
    d: Daemon,
    _backend: Backend,
    pki: Pki,
    ns: Netns,
}

impl Edge {
    fn start() -> Edge {
        Edge::start_with(&[])
    }

    /// The edge, its backend started with `backend_args` (e.g. `--docroot DIR`).
    fn start_with(backend_args: &[&str]) -> Edge {
        Edge::start_config(backend_args, "")
    }

    /// The edge with `extra` at the top of its configuration file (e.g. a `[proxy]` table).
    fn start_config(backend_args: &[&str], extra: &str) -> Edge {
        let ns = Netns::new();
        let pki = Pki::new();
        let backend = Backend::start_with(&ns, "pages", 0, backend_args);
        let (shop_cert, shop_key) =
            pki.issue("shop", "shop.example.com", &["shop.example.com"], false);
        let (blog_cert, blog_key) =
            pki.issue("blog", "blog.example.com", &["blog.example.com"], false);
        let url = backend.url();
        let d = Daemon::start(
            &ns,
            &Config::raw(&format!(
                r#"{extra}
[listen]
http = ["0.0.0.0:80"]
https = ["0.0.0.0:443"]
[state]
dir = "{{STATE_DIR}}"
control_socket = "{{CONTROL_SOCKET}}"
[[site]]
name = "shop"
domains = ["shop.example.com"]
backend = "{url}"
force_https = true
https_rewrites = true
https_rewrite_hosts = ["cdn.partner.example", "*.static.example"]
tls = {{ cert = "{shop_cert}", key = "{shop_key}" }}
[[site]]
name = "img"
domains = ["img.example.com"]
force_https = true
[[site]]
name = "blog"
domains = ["blog.example.com"]
backend = "{url}"
https_rewrites = true
tls = {{ cert = "{blog_cert}", key = "{blog_key}" }}
"#
            )),
        );
        Edge {
            d,
            _backend: backend,
            pki,
            ns,
        }
    }

    /// `curl -si` a POST of `page` to `https://HOST/echo` with extra args; the whole output.
    fn post(&self, host: &str, page: &[u8], args: &[&str]) -> String {
        let file = self.d.dir().join("page.html");
        std::fs::write(&file, page).expect("page file");
        let at = format!("@{}", file.display());
        let ca = self.pki.ca();
        let resolve = format!("{host}:443:{EDGE_V4}");
        let url = format!("https://{host}/echo");
        // No `Expect: 100-continue` (curl sends it for large bodies): one response head.
        let mut all = vec![
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "-H",
            "Expect:",
            "--data-binary",
            &at,
        ];
        all.extend_from_slice(args);
        all.push(&url);
        curl(&self.ns, &all)
    }
}

fn head_and_body(resp: &str) -> (&str, &str) {
    resp.split_once("\r\n\r\n").unwrap_or((resp, ""))
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    head_and_body(resp)
        .0
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

const PAGE: &str = r#"<!doctype html><html><head>
<link rel="stylesheet" href="http://img.example.com/site.css">
<style>body { background: url("http://cdn.partner.example/bg.png") } p { background: url(http://plain.example/p.png) }</style>
</head><body style="background-image: url('http://a.static.example/b.png')">
<img src="http://img.example.com/logo.png" srcset="http://img.example.com/1x.png 1x, http://plain.example/2x.png 2x, HTTP://CDN.partner.example:80/3x.png 3x">
<script src="http://plain.example/app.js"></script>
<a href="http://shop.example.com/cart">cart</a> <a href="http://plain.example/">elsewhere</a>
</body></html>
"#;

const REWRITTEN: &str = r#"<!doctype html><html><head>
<link rel="stylesheet" href="https://img.example.com/site.css">
<style>body { background: url("https://cdn.partner.example/bg.png") } p { background: url(http://plain.example/p.png) }</style>
</head><body style="background-image: url('https://a.static.example/b.png')">
<img src="https://img.example.com/logo.png" srcset="https://img.example.com/1x.png 1x, http://plain.example/2x.png 2x, https://CDN.partner.example/3x.png 3x">
<script src="http://plain.example/app.js"></script>
<a href="https://shop.example.com/cart">cart</a> <a href="http://plain.example/">elsewhere</a>
</body></html>
"#;

/// URLs upgraded in [`PAGE`].
const PAGE_LINKS: u64 = 7;

#[test]
fn links_to_https_hosts_are_upgraded_over_h1_and_h2_and_others_left_alone() {
    if !require_root() {
        return;
    }
    let e = Edge::start();
    for proto in ["--http1.1", "--http2"] {
        let r = e.post(
            "shop.example.com",
            PAGE.as_bytes(),
            &[proto, "-H", "x-want-etag: \"v1\""],
        );
        let (head, body) = head_and_body(&r);
        assert!(head.starts_with("HTTP/"), "{proto}: {r}");
        assert!(
            head.lines().next().unwrap_or("").contains(" 200"),
            "{proto}: {r}"
        );
        assert_eq!(body, REWRITTEN, "{proto}");
        // The length changed: no Content-Length (chunked on h1, none on h2), a weak ETag,
        // and HSTS as on every HTTPS response of an enforced host.
        assert_eq!(header(&r, "content-length"), None, "{proto}: {head}");
        if proto == "--http1.1" {
            assert_eq!(header(&r, "transfer-encoding"), Some("chunked"), "{head}");
        }
        assert_eq!(header(&r, "etag"), Some("W/\"v1\""), "{proto}: {head}");
        assert_eq!(
            header(&r, "strict-transport-security"),
            Some("max-age=31536000"),
            "{head}"
        );
    }
    // Counted: two responses, seven links each.
    assert_eq!(e.d.counter("https_rewrites_responses"), 2);
    assert_eq!(e.d.counter("https_rewrites_links"), 2 * PAGE_LINKS);
    // The second was the same page under the same policy: served from the cache.
    assert_eq!(e.d.counter("https_rewrites_cache_hits"), 1);
    // A host whose enforcement is released stops being upgraded, at once.
    let out = e.d.cli(&["disable", "img.example.com"]);
    assert!(out.status.success(), "{}", out.err());
    let r = e.post("shop.example.com", PAGE.as_bytes(), &[]);
    let body = head_and_body(&r).1;
    assert!(
        body.contains("href=\"http://img.example.com/site.css\""),
        "{body}"
    );
    assert!(
        body.contains("url(\"https://cdn.partner.example/bg.png\")"),
        "{body}"
    );
    // The table changed: that response did not come from the cache.
    assert_eq!(e.d.counter("https_rewrites_cache_hits"), 1);
}

#[test]
fn compressed_bodies_are_decoded_rewritten_and_reencoded() {
    if !require_root() {
        return;
    }
    let e = Edge::start();
    for enc in ["gzip", "br", "deflate"] {
        // A client that takes the coding gets it back, rewritten.
        let want = format!("x-want-encoding: {enc}");
        let ae = format!("accept-encoding: {enc}");
        let file = e.d.dir().join("out.bin");
        let out = file.display().to_string();
        e.post(
            "shop.example.com",
            PAGE.as_bytes(),
            &["-H", &want, "-H", &ae, "-o", &out],
        );
        let (r, body) = file_response(&file);
        assert_eq!(header(&r, "content-encoding"), Some(enc), "{r}");
        assert_eq!(header(&r, "content-length"), None, "{r}");
        assert!(
            header(&r, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
            "{r}"
        );
        assert_eq!(decode(enc, &body), REWRITTEN.as_bytes(), "{enc}");
        // A client that takes none of it gets identity.
        let r = e.post(
            "shop.example.com",
            PAGE.as_bytes(),
            &["-H", &want, "-H", "accept-encoding: identity"],
        );
        assert_eq!(header(&r, "content-encoding"), None, "{enc}: {r}");
        assert_eq!(head_and_body(&r).1, REWRITTEN, "{enc}");
    }
    // br from the backend to a client that only takes gzip: gzip.
    let file = e.d.dir().join("out.bin");
    let out = file.display().to_string();
    e.post(
        "shop.example.com",
        PAGE.as_bytes(),
        &[
            "-H",
            "x-want-encoding: br",
            "-H",
            "accept-encoding: gzip",
            "-o",
            &out,
        ],
    );
    let (r, body) = file_response(&file);
    assert_eq!(header(&r, "content-encoding"), Some("gzip"), "{r}");
    assert_eq!(decode("gzip", &body), REWRITTEN.as_bytes());
    // curl --compressed end to end over h2.
    let r = e.post(
        "shop.example.com",
        PAGE.as_bytes(),
        &["--http2", "--compressed", "-H", "x-want-encoding: gzip"],
    );
    assert_eq!(head_and_body(&r).1, REWRITTEN);
    // The backend is only offered codings the rewriter reads.
    let ca = e.pki.ca();
    let r = curl(
        &e.ns,
        &[
            "--cacert",
            &ca,
            "--resolve",
            &format!("shop.example.com:443:{EDGE_V4}"),
            "-H",
            "accept-encoding: zstd, br;q=0.9, gzip, compress",
            "https://shop.example.com/headers",
        ],
    );
    assert!(r.contains("header:accept-encoding=br;q=0.9, gzip\n"), "{r}");
}

/// The codecs' memory budget (`[proxy] https_rewrites_codec_memory_bytes`, 1.5 MiB here):
/// gzip fits and is rewritten; a br stream whose 1 MiB window (2.5 MiB with its tables and
/// encoder) does not fit passes through unmodified, byte for byte as the backend sent it,
/// whether that is decided by its head (a client that needs it decoded) or by its first byte
/// (a client that takes br); both are counted, and the budget is whole again afterwards.
#[test]
fn compressed_bodies_pass_unmodified_when_their_codecs_do_not_fit() {
    if !require_root() {
        return;
    }
    let e = Edge::start_config(&[], "[proxy]\nhttps_rewrites_codec_memory_bytes = 1572864");
    let file = e.d.dir().join("out.bin");
    let out = file.display().to_string();
    // The head and body of PAGE from a backend answering in `backend`, to a client that
    // takes `client`.
    let get = |proto: &str, backend: &str, client: &str| {
        let want = format!("x-want-encoding: {backend}");
        let accept = format!("accept-encoding: {client}");
        let args = [proto, "-H", &want, "-H", &accept, "-o", &out];
        e.post("shop.example.com", PAGE.as_bytes(), &args);
        file_response(&file)
    };
    for proto in ["--http1.1", "--http2"] {
        // gzip in and out: 544 KiB reserved, rewritten.
        let (r, body) = get(proto, "gzip", "gzip");
        assert_eq!(header(&r, "content-encoding"), Some("gzip"), "{r}");
        assert_eq!(decode("gzip", &body), REWRITTEN.as_bytes(), "{proto}");
        // br to a client that takes br: the first byte declares a 1 MiB window; the stream
        // passes as it came.
        let (r, body) = get(proto, "br", "br");
        assert_eq!(header(&r, "content-encoding"), Some("br"), "{r}");
        assert_eq!(decode("br", &body), PAGE.as_bytes(), "{proto}: unmodified");
        // br to a client that needs it decoded: a 4 MiB window does not fit at the head; the
        // response is the backend's, head included.
        let (r, body) = get(proto, "br", "identity");
        assert_eq!(header(&r, "content-encoding"), Some("br"), "{r}");
        assert_eq!(
            header(&r, "content-length"),
            Some(body.len().to_string().as_str()),
            "{r}"
        );
        assert_eq!(decode("br", &body), PAGE.as_bytes(), "{proto}: unmodified");
    }
    assert_eq!(e.d.counter("https_rewrites_passed_codec_memory"), 4);
    assert_eq!(e.d.counter("https_rewrites_responses"), 2);
    assert_eq!(e.d.counter("https_rewrites_codec_memory_bytes"), 0);
}

/// A document larger than the rewrite cache takes (128 KiB), from a gzip and an identity
/// backend, over HTTP/1.1 and HTTP/2: the held start and the rest stream out in steps, in
/// order, every link upgraded, nothing lost or repeated at the step boundaries.
#[test]
fn a_document_too_large_to_cache_streams_whole_and_in_order() {
    if !require_root() {
        return;
    }
    let e = Edge::start();
    // ~450 KB, links cut across every possible step boundary (odd line lengths).
    let mut page = String::from("<!doctype html><html><body>\n");
    let mut want = page.clone();
    for i in 0..6000 {
        let pad = "x".repeat(i % 7);
        page.push_str(&format!(
            "<p>{pad}<a href=\"http://img.example.com/{i}\">{i}</a> <img src=\"http://nope.example.org/{i}.png\"></p>\n"
        ));
        want.push_str(&format!(
            "<p>{pad}<a href=\"https://img.example.com/{i}\">{i}</a> <img src=\"http://nope.example.org/{i}.png\"></p>\n"
        ));
    }
    page.push_str("</body></html>\n");
    want.push_str("</body></html>\n");
    assert!(page.len() > 3 * 128 * 1024);
    for (enc, http) in [
        ("gzip", "--http1.1"),
        ("gzip", "--http2"),
        ("identity", "--http1.1"),
        ("identity", "--http2"),
    ] {
        let file = e.d.dir().join("big-out.bin");
        let out = file.display().to_string();
        let want_enc = format!("x-want-encoding: {enc}");
        e.post(
            "shop.example.com",
            page.as_bytes(),
            &[
                http,
                "-H",
                &want_enc,
                "-H",
                "accept-encoding: identity",
                "-o",
                &out,
            ],
        );
        let (r, body) = file_response(&file);
        assert!(r.starts_with("HTTP/"), "{enc} {http}: {r}");
        assert_eq!(header(&r, "content-encoding"), None, "{enc} {http}: {r}");
        assert!(
            body == want.as_bytes(),
            "{enc} {http}: {} bytes, want {}",
            body.len(),
            want.len()
        );
    }
}

/// The head and body of a `curl -i -o FILE` output file.
fn file_response(file: &std::path::Path) -> (String, Vec<u8>) {
    let all = std::fs::read(file).expect("output file");
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end");
    (
        String::from_utf8_lossy(&all[..at + 4]).into_owned(),
        all[at + 4..].to_vec(),
    )
}

fn decode(enc: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match enc {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "deflate" => {
            flate2::read::ZlibDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("deflate");
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        other => panic!("no coding {other}"),
    }
    out
}

#[test]
fn bodies_that_must_not_change_pass_byte_for_byte() {
    if !require_root() {
        return;
    }
    let e = Edge::start();
    // Cache-Control: no-transform.
    let r = e.post(
        "shop.example.com",
        PAGE.as_bytes(),
        &[
            "-H",
            "x-want-cache-control: public, no-transform",
            "-H",
            "x-want-etag: \"v1\"",
        ],
    );
    assert_eq!(head_and_body(&r).1, PAGE);
    assert_eq!(
        header(&r, "content-length"),
        Some(PAGE.len().to_string().as_str()),
        "{r}"
    );
    assert_eq!(header(&r, "etag"), Some("\"v1\""), "{r}");
    // Not HTML.
    for ty in ["text/plain", "application/json", "text/css"] {
        let want = format!("x-want-content-type: {ty}");
        let r = e.post(
            "shop.example.com",
            PAGE.as_bytes(),
            &["--http2", "-H", &want],
        );
        assert_eq!(head_and_body(&r).1, PAGE, "{ty}");
        assert_eq!(
            header(&r, "content-length"),
            Some(PAGE.len().to_string().as_str()),
            "{r}"
        );
    }
    // A charset lol_html cannot read.
    let r = e.post(
        "shop.example.com",
        PAGE.as_bytes(),
        &["-H", "x-want-content-type: text/html; charset=utf-16"],
    );
    assert_eq!(head_and_body(&r).1, PAGE);
    // A host not enforced (its site has https_rewrites, but it is not HTTPS-only).
    let r = e.post("blog.example.com", PAGE.as_bytes(), &[]);
    assert_eq!(head_and_body(&r).1, PAGE);
    assert_eq!(e.d.counter("https_rewrites_passed_no_transform"), 1);
    assert_eq!(e.d.counter("https_rewrites_passed_charset"), 1);
    assert_eq!(e.d.counter("https_rewrites_responses"), 0);
}

#[test]
fn a_document_over_the_memory_bound_passes_through_whole() {
    if !require_root() {
        return;
    }
    let e = Edge::start();
    // A start tag of 1 MiB: more than the rewriter buffers (256 KiB).
    let big = format!(
        "<p><img src=\"http://img.example.com/a.png\"></p><div title=\"{}\"><img src=\"http://img.example.com/b.png\"></div>\n",
        "x".repeat(1 << 20)
    );
    for proto in ["--http1.1", "--http2"] {
        let r = e.post("shop.example.com", big.as_bytes(), &[proto]);
        let body = head_and_body(&r).1;
        assert_eq!(
            body.len(),
            big.len() + 1,
            "{proto}: only the first link is upgraded"
        );
        assert!(
            body.starts_with("<p><img src=\"https://img.example.com/a.png\"></p><div title=\"xxx")
        );
        assert!(body.ends_with("<img src=\"http://img.example.com/b.png\"></div>\n"));
    }
    assert_eq!(e.d.counter("https_rewrites_passed_memory"), 2);
    // A 1 MiB page of ordinary markup is rewritten whole.
    let page: String = (0..20_000)
        .map(|i| format!("<p><a href=\"http://img.example.com/{i}\">link {i}</a></p>\n"))
        .collect();
    let r = e.post("shop.example.com", page.as_bytes(), &["--http2"]);
    let (got, want) = (head_and_body(&r).1, page.replace("http://", "https://"));
    let first_diff = got.bytes().zip(want.bytes()).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{} bytes, want {}; first difference at {first_diff:?}: {:?}",
        got.len(),
        want.len(),
        first_diff.map(|i| &got[i.saturating_sub(40)..(i + 40).min(got.len())])
    );
}

/// The daemon's peak resident memory, KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A measurement, not a CI test (memory targets are proven by benchmarks): the daemon's peak
/// RSS while 200 clients each download a 1 MB page rewritten, at 400 kB/s, so all are in
/// flight at once. `FHT_REWRITE_TYPE=text/plain` gives
/// the same transfers without rewriting; `FHT_REWRITE_ENCODING=gzip|br` a compressed backend;
/// `FHT_REWRITE_ACCEPT=gzip|br` a client that takes that coding (default: none, so a
/// compressed body is decoded for it); `FHT_REWRITE_HTTP=1.1` HTTP/1.1 (default: HTTP/2, one
/// connection per transfer).
/// Figures: BENCHMARKS.md, "Automatic HTTPS Rewrites".
#[test]
#[ignore = "measurement: cargo test -p force-https-tests --test rewrites -- --ignored --nocapture"]
fn peak_rss_with_200_concurrent_1mb_rewrites() {
    if !require_root() {
        return;
    }
    // A 1 MiB page of links to upgrade (uncompressed; FHT_REWRITE_ENCODING=gzip measures a
    // compressed backend: each gzip stream adds a decoder and an encoder), served by the
    // backend from a docroot (FHT_REWRITE_UPLOAD=1: each client uploads it to /echo instead,
    // which adds the request path's buffers).
    let page: String = (0..20_000)
        .map(|i| format!("<p><a href=\"http://img.example.com/{i}\">link {i}</a>...</p>\n"))
        .collect();
    let docroot = tempfile::tempdir().expect("docroot");
    let file = docroot.path().join("big.html");
    std::fs::write(&file, &page).expect("page");
    let root = docroot.path().display().to_string();
    let e = Edge::start_with(&["--docroot", &root]);
    let upload = std::env::var("FHT_REWRITE_UPLOAD").is_ok_and(|v| v == "1");
    let at = format!("@{}", file.display());
    let ca = e.pki.ca();
    let resolve = format!("shop.example.com:443:{EDGE_V4}");
    // 200 transfers at once from one curl (--parallel), each read slowly enough that all are
    // in flight together (--limit-rate), bounded in time.
    // Options every transfer repeats after `--next`.
    let per_transfer: Vec<String> = [
        "--max-time",
        "60",
        "-s",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "--limit-rate",
        "400k",
        "-H",
        "Expect:",
        "-w",
        "%{http_code} %{size_download}\\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut per_transfer = per_transfer;
    // FHT_REWRITE_HTTP=1.1: HTTP/1.1 connections instead of HTTP/2 (one stream each).
    if std::env::var("FHT_REWRITE_HTTP").is_ok_and(|v| v == "1.1") {
        per_transfer.push("--http1.1".into());
    }
    if let Ok(accept) = std::env::var("FHT_REWRITE_ACCEPT") {
        per_transfer.extend(["-H".into(), format!("accept-encoding: {accept}")]);
    }
    let encoding = std::env::var("FHT_REWRITE_ENCODING").unwrap_or_else(|_| "identity".into());
    let media_type = std::env::var("FHT_REWRITE_TYPE").unwrap_or_else(|_| "text/html".into());
    let mut args: Vec<String> = [
        "--parallel",
        "--parallel-max",
        "200",
        "--parallel-immediate",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..200 {
        if i > 0 {
            args.push("--next".into());
        }
        args.extend(per_transfer.iter().cloned());
        if upload {
            args.extend(["--data-binary".to_string(), at.clone()]);
        }
        args.extend([
            "-H".into(),
            format!("x-want-encoding: {encoding}"),
            "-H".into(),
            format!("x-want-content-type: {media_type}"),
            "-o".into(),
            "/dev/null".into(),
            if upload {
                "https://shop.example.com/echo".into()
            } else {
                "https://shop.example.com/static/big.html".into()
            },
        ]);
    }
    let before = peak_rss_kib(e.d.pid());
    let out = output_timeout(e.ns.cli_cmd(&["curl"]).args(&args), Duration::from_secs(90));
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.lines().filter(|l| l.starts_with("200 ")).count();
    assert_eq!(ok, 200, "{text}");
    let peak = peak_rss_kib(e.d.pid());
    eprintln!("peak RSS: {before} KiB before, {peak} KiB after 200 concurrent 1 MB rewrites");
    let rewritten = e.d.counter("https_rewrites_responses");
    let passed = e.d.counter("https_rewrites_passed_codec_memory");
    eprintln!("responses rewritten: {rewritten}, passed for the codec budget: {passed}");
}
