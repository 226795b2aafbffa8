//! Automatic HTTPS Rewrites in a real browser: headless Chromium loads an HTTPS page whose
//! HTML references an image and a script by `http://` on an enforced host. With
//! `https_rewrites` the console shows no mixed-content message, the image loads and the
//! script runs; without it (same page, same backend, another site), Chromium reports mixed
//! content. Fails, never skips, under CI=true. The daemon writes its access log (printed with
//! its log when the test fails) and the page records what each of its fetches got.

use fh_tests::{browser, pki::Pki, *};

/// The page: an image and a script by `http://` on its own (enforced) host.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>mixed</title></head>
<body>
<img id="pixel" src="http://HOST/static/pixel.png" alt="pixel">
<script src="http://HOST/static/app.js"></script>
<script>
  const img = document.getElementById("pixel");
  function report() {
    document.body.setAttribute("data-image", img.complete && img.naturalWidth > 0 ? "loaded" : "failed");
  }
  if (img.complete) { report(); } else { img.addEventListener("load", report); img.addEventListener("error", report); }
  // For a failure's message: what each fetch got (status 0: no response).
  window.addEventListener("load", () => document.body.setAttribute("data-fetches",
    performance.getEntriesByType("resource")
      .map(e => `${e.name} ${e.responseStatus} ${e.nextHopProtocol}`).join("; ")));
</script>
</body></html>
"#;

const APP_JS: &str = r#"document.documentElement.setAttribute("data-script", "ran");"#;

/// A 1×1 PNG.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

#[test]
fn chromium_sees_no_mixed_content_with_rewrites_and_mixed_content_without() {
    if !require_root() {
        return;
    }
    let Some(chromium) = browser::require_chromium() else {
        return;
    };
    let ns = Netns::new();
    let pki = Pki::new();
    let docroot = tempfile::Builder::new()
        .prefix("fht-docroot-")
        .tempdir()
        .expect("docroot");
    for host in ["rewritten.example.com", "plain.example.com"] {
        std::fs::write(
            docroot.path().join(format!("{host}.html")),
            PAGE.replace("HOST", host),
        )
        .expect("page");
    }
    std::fs::write(docroot.path().join("app.js"), APP_JS).expect("js");
    std::fs::write(docroot.path().join("pixel.png"), PIXEL_PNG).expect("png");
    let root = docroot.path().display().to_string();
    let backend = Backend::start_with(&ns, "pages", 0, &["--docroot", &root]);
    let (cert, key) = pki.issue(
        "sites",
        "rewritten.example.com",
        &["rewritten.example.com", "plain.example.com"],
        false,
    );
    let url = backend.url();
    let d = Daemon::start(
        &ns,
        &Config::raw(&format!(
            r#"[listen]
http = ["0.0.0.0:80"]
https = ["0.0.0.0:443"]
[log]
access = "json"
[state]
dir = "{{STATE_DIR}}"
control_socket = "{{CONTROL_SOCKET}}"
[[site]]
name = "rewritten"
domains = ["rewritten.example.com"]
backend = "{url}"
force_https = true
https_rewrites = true
tls = {{ cert = "{cert}", key = "{key}" }}
[[site]]
name = "plain"
domains = ["plain.example.com"]
backend = "{url}"
force_https = true
tls = {{ cert = "{cert}", key = "{key}" }}
"#
        )),
    );
    let spki = vec![browser::spki_hash(&pki, "sites")];

    let with = browser::load_until(
        &ns,
        &chromium,
        "https://rewritten.example.com/static/rewritten.example.com.html",
        EDGE_V4,
        &spki,
        |p| p.dom.contains("data-image=\"loaded\"") && p.dom.contains("data-script=\"ran\""),
    );
    let mixed: Vec<&str> = with
        .console()
        .into_iter()
        .filter(|l| l.contains("Mixed Content"))
        .collect();
    assert!(
        mixed.is_empty(),
        "mixed content with https_rewrites: {mixed:?}\n{}",
        with.log
    );
    assert!(
        with.dom.contains("data-image=\"loaded\""),
        "the image did not load:\n{}\n{}",
        with.dom,
        with.log
    );
    assert!(
        with.dom.contains("data-script=\"ran\""),
        "the script did not run:\n{}\n{}",
        with.dom,
        with.log
    );
    assert!(
        with.dom
            .contains("src=\"https://rewritten.example.com/static/pixel.png\""),
        "{}",
        with.dom
    );

    let without = browser::load(
        &ns,
        &chromium,
        "https://plain.example.com/static/plain.example.com.html",
        EDGE_V4,
        &spki,
    );
    assert!(
        without
            .console()
            .iter()
            .any(|l| l.contains("Mixed Content") && l.contains("http://plain.example.com/static/")),
        "no mixed-content message without https_rewrites:\n{}",
        without.log
    );
    // Chromium blocks a mixed script outright.
    assert!(
        !without.dom.contains("data-script=\"ran\""),
        "{}",
        without.dom
    );
    assert!(d.counter("https_rewrites_links") >= 2);
}
