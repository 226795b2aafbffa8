//! Throughput of Automatic HTTPS Rewrites (`force_https_proto::rewrite`) on real pages
//! (`benches/corpus/`, 12 kB to 840 kB): each page is made mixed content (relative links
//! become `http://docs.example/…` until 1% of its bytes are URLs to upgrade) and rewritten
//! whole, fed in 16 KiB reads as the proxy gets them from a backend.
//!
//! - `rewrite/identity/PAGE`: the HTML rewriter alone (the target: at least 200 MB/s
//!   per core);
//! - `rewrite/untouched/PAGE`: the page as published (nothing to upgrade), the cost of
//!   passing a page through the rewriter;
//! - `rewrite/gzip/PAGE`: decode gzip, rewrite, encode gzip (what a compressed backend costs);
//! - `rewrite/lol_html-no-handler/PAGE`, `…-any-element/PAGE`, `…-our-selectors/PAGE`: the
//!   mixed page through lol_html alone with no handler (its floor), with a no-op element
//!   handler on `*`, and with one on the rewriter's selector list: what lol_html's selector
//!   matching costs before any of the rewriter's own work;
//! - `rewrite/one-tag-document`: making a rewriter for a document, rewriting `<p>`.
//!
//! Run with `cargo bench -p force-https-proto --bench rewrite` (add `-- --warm-up-time 1
//! --measurement-time 3` for a short run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{hint::black_box, io::Write, path::Path, sync::Arc};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use force_https_proto::rewrite::{
    coding::{Coding, Decoder, Encoder},
    html::{AsciiCompatibleEncoding, HtmlUpgrader, SELECTOR},
    urls::KnownHost,
};

/// The corpus, smallest first.
const PAGES: &[&str] = &[
    "book-toc-12k.html",
    "book-streams-30k.html",
    "reference-generics-70k.html",
    "std-intoiter-190k.html",
    "core-slice-840k.html",
];

/// The share of a page's bytes made URLs to upgrade.
const URL_SHARE: f64 = 0.01;

/// What the proxy reads from a backend at once.
const READ: usize = 16 * 1024;

fn page(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches/corpus")
            .join(name),
    )
    .unwrap()
}

/// The page with relative `href="`/`src="` links turned into `http://docs.example/` ones
/// until the URLs to upgrade make up [`URL_SHARE`] of its bytes; returns it and that share.
fn mixed(html: &[u8]) -> (Vec<u8>, f64) {
    let text = String::from_utf8_lossy(html);
    let target = (text.len() as f64 * URL_SHARE) as usize;
    let mut out = String::with_capacity(text.len() + target);
    let mut url_bytes = 0;
    let mut rest: &str = &text;
    while url_bytes < target {
        let Some(i) = rest.find(['h', 's']) else {
            break;
        };
        let (before, at) = rest.split_at(i);
        out.push_str(before);
        let attr = if at.starts_with("href=\"") {
            "href=\""
        } else if at.starts_with("src=\"") {
            "src=\""
        } else {
            out.push_str(&at[..1]);
            rest = &at[1..];
            continue;
        };
        let value_start = &at[attr.len()..];
        let end = value_start.find('"').unwrap_or(0);
        let value = &value_start[..end];
        out.push_str(attr);
        if !value.is_empty() && !value.contains(':') && !value.starts_with('#') {
            let url = format!(
                "http://docs.example/{}",
                value.trim_start_matches("../").trim_start_matches('/')
            );
            url_bytes += url.len();
            out.push_str(&url);
        } else {
            out.push_str(value);
        }
        rest = &value_start[end..];
    }
    out.push_str(rest);
    let share = url_bytes as f64 / out.len() as f64;
    (out.into_bytes(), share)
}

fn known() -> Arc<dyn KnownHost + Send + Sync> {
    Arc::new(|h: &str| h == "docs.example")
}

fn rewrite(html: &[u8]) -> (usize, u64) {
    let mut r = HtmlUpgrader::new(known(), AsciiCompatibleEncoding::utf_8(), true, 256 * 1024);
    let mut n = 0;
    for c in html.chunks(READ) {
        n += black_box(r.write(c)).len();
    }
    n += r.end().len();
    (n, r.links())
}

/// lol_html alone on the same page, as [`rewrite`] feeds it but with a no-op element handler
/// on `selector` instead of the rewriter's (`None`: no handler at all, lol_html's floor),
/// output counted and dropped.
fn lol_html_only(html: &[u8], selector: Option<&lol_html::Selector>) -> usize {
    use lol_html::{ElementContentHandlers, HtmlRewriter, Settings, html_content::Element};
    let mut settings = Settings::new().with_strict(false);
    if let Some(selector) = selector {
        settings = settings.append_element_content_handler((
            std::borrow::Cow::Borrowed(selector),
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                black_box(el);
                Ok(())
            }),
        ));
    }
    let mut n = 0;
    let mut r = HtmlRewriter::new(settings, |c: &[u8]| n += c.len());
    for c in html.chunks(READ) {
        r.write(c).unwrap();
    }
    r.end().unwrap();
    n
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn rewrite_gzip(gz: &[u8]) -> usize {
    let mut d = Decoder::new(Coding::Gzip);
    let mut e = Encoder::new(Coding::Gzip);
    let mut r = HtmlUpgrader::new(known(), AsciiCompatibleEncoding::utf_8(), true, 256 * 1024);
    let mut n = 0;
    for c in gz.chunks(READ) {
        let html = d.write(c).unwrap();
        n += e.write(&r.write(&html)).len();
    }
    let html = d.finish().unwrap();
    let mut tail = r.write(&html);
    tail.extend(r.end());
    n += e.write(&tail).len();
    n + e.finish().len()
}

fn bench_rewrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("rewrite");
    g.bench_function("one-tag-document", |b| b.iter(|| rewrite(b"<p>")));
    for name in PAGES {
        let original = page(name);
        let (html, share) = mixed(&original);
        let (_, links) = rewrite(&html);
        assert!(links > 0, "{name}: nothing to upgrade");
        eprintln!(
            "{name}: {} bytes, {:.2}% in {links} URLs to upgrade",
            html.len(),
            share * 100.0
        );
        g.throughput(Throughput::Bytes(html.len() as u64));
        g.bench_with_input(BenchmarkId::new("identity", name), &html, |b, h| {
            b.iter(|| rewrite(h))
        });
        g.throughput(Throughput::Bytes(original.len() as u64));
        g.bench_with_input(BenchmarkId::new("untouched", name), &original, |b, h| {
            b.iter(|| rewrite(h))
        });
        g.throughput(Throughput::Bytes(html.len() as u64));
        for (what, selector) in [
            ("lol_html-no-handler", None),
            ("lol_html-any-element", Some("*")),
            ("lol_html-our-selectors", Some(SELECTOR)),
        ] {
            let selector: Option<lol_html::Selector> = selector.map(|s| s.parse().unwrap());
            g.bench_with_input(BenchmarkId::new(what, name), &html, |b, h| {
                b.iter(|| lol_html_only(h, selector.as_ref()))
            });
        }
        let gz = gzip(&html);
        g.throughput(Throughput::Bytes(html.len() as u64));
        g.bench_with_input(BenchmarkId::new("gzip", name), &gz, |b, gz| {
            b.iter(|| rewrite_gzip(gz))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_rewrite);
criterion_main!(benches);
