//! What the rewrite bench (`benches/rewrite.rs`) and the instruction-count example
//! (`examples/rewrite_cost.rs`) share: the corpus, the pages made mixed content, and one
//! rewrite of a page by the rewriter or by lol_html alone.

use std::{hint::black_box, path::Path, sync::Arc};

use force_https_proto::rewrite::{
    html::{AsciiCompatibleEncoding, HtmlUpgrader},
    urls::KnownHost,
};

/// The corpus, smallest first.
pub const PAGES: &[&str] = &[
    "book-toc-12k.html",
    "book-streams-30k.html",
    "reference-generics-70k.html",
    "std-intoiter-190k.html",
    "core-slice-840k.html",
];

/// The share of a page's bytes made URLs to upgrade.
pub const URL_SHARE: f64 = 0.01;

/// What the proxy reads from a backend at once.
pub const READ: usize = 16 * 1024;

/// A page of the corpus, as published.
pub fn page(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches/corpus")
            .join(name),
    )
    .unwrap()
}

/// The page with relative `href="`/`src="` links turned into `http://docs.example/` ones
/// until the URLs to upgrade make up [`URL_SHARE`] of its bytes; returns it and that share.
pub fn mixed(html: &[u8]) -> (Vec<u8>, f64) {
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

/// The one host the mixed pages link to, known to serve HTTPS.
pub fn known() -> Arc<dyn KnownHost + Send + Sync> {
    Arc::new(|h: &str| h == "docs.example")
}

/// `html` through the rewriter in [`READ`]-byte reads: output bytes and URLs upgraded.
pub fn rewrite(html: &[u8]) -> (usize, u64) {
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
pub fn lol_html_only(html: &[u8], selector: Option<&lol_html::Selector>) -> usize {
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
