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
//! --measurement-time 3` for a short run). On a machine shared with other work, the
//! instruction counts of `examples/rewrite_cost.rs` compare builds more steadily.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;

use common::{PAGES, READ, known, lol_html_only, mixed, page, rewrite};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use force_https_proto::rewrite::{
    coding::{Coding, Decoder, Encoder},
    html::{AsciiCompatibleEncoding, HtmlUpgrader, SELECTOR},
};

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
