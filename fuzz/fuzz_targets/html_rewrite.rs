//! Arbitrary HTML through the Automatic HTTPS Rewrites rewriter, split into chunks anywhere
//! (the first two bytes pick the chunk sizes, the third the memory bound): it never panics,
//! the output never loses or invents a byte where nothing matched (it reads the same as the
//! input, invalid UTF-8 read as U+FFFD the way a browser reads it), the same document gives
//! the same output however it is split, and every upgrade only turns `http://` into
//! `https://` (and drops a `:80`). The rewriter's `http://` pre-filter changes nothing: the
//! output equals that of `HtmlUpgrader::without_prefilter` (every element with a rewritten
//! attribute handed to the handler), except on the one input kind documented there (a value
//! starting with a UTF-16 byte order mark), which is skipped.
#![no_main]

use std::sync::Arc;

use force_https_proto::rewrite::{
    html::{AsciiCompatibleEncoding, HtmlUpgrader, SRCSET_ATTRIBUTES, URL_ATTRIBUTES},
    urls::KnownHost,
};
use libfuzzer_sys::fuzz_target;

fn known() -> Arc<dyn KnownHost + Send + Sync> {
    Arc::new(|h: &str| h == "a.example" || h.ends_with(".b.example"))
}

fn rewrite(data: &[u8], split: usize, max: usize) -> (Vec<u8>, u64) {
    rewrite_with(HtmlUpgrader::new, data, split, max)
}

type Make =
    fn(Arc<dyn KnownHost + Send + Sync>, AsciiCompatibleEncoding, bool, usize) -> HtmlUpgrader;

fn rewrite_with(make: Make, data: &[u8], split: usize, max: usize) -> (Vec<u8>, u64) {
    let mut r = make(known(), AsciiCompatibleEncoding::utf_8(), false, max);
    let mut out = Vec::new();
    for c in data.chunks(split.max(1)) {
        out.extend(r.write(c));
    }
    out.extend(r.end());
    (out, r.links())
}

fuzz_target!(|input: &[u8]| {
    let [a, b, m, data @ ..] = input else {
        return;
    };
    let max = 1024 + usize::from(*m) * 256;
    let (whole, links) = rewrite(data, usize::MAX, 1 << 20);
    let (split_a, links_a) = rewrite(data, usize::from(*a), 1 << 20);
    assert_eq!(whole, split_a, "the output depends on where the input was split");
    assert_eq!(links, links_a);
    let (bounded, _) = rewrite(data, usize::from(*b), max);
    if !data.windows(2).any(|w| w == b"\xff\xfe" || w == b"\xfe\xff") {
        let unfiltered = rewrite_with(HtmlUpgrader::without_prefilter, data, usize::MAX, 1 << 20);
        let changed = "the pre-filter changed the output";
        assert_eq!((&whole, links), (&unfiltered.0, unfiltered.1), "{changed}");
        let unfiltered = rewrite_with(HtmlUpgrader::without_prefilter, data, usize::from(*b), max);
        assert_eq!(bounded, unfiltered.0, "the pre-filter changed a bounded rewrite");
    }
    let lossy = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    if links == 0 {
        assert_eq!(lossy(&whole), lossy(data), "changed a document with nothing to upgrade");
    }
    // A tag with an upgraded URL is written anew by lol_html (quoting, spacing, the case of
    // the scheme may change): compare what a parser reads, with upgrades undone.
    assert_eq!(read(&whole), read(data), "more than URLs changed");
    // A small memory bound may stop the rewrite part way; the rest passes whole.
    assert_eq!(read(&bounded), read(data), "a bounded rewrite lost or changed bytes");
});

/// What an HTML parser (lol_html, non-strict) reads in a document: every start tag with the
/// attributes the rewriter looks at, and the text, with `https://` read as `http://` and `:80` dropped, `&quot;`
/// as `"`.
fn read(doc: &[u8]) -> Vec<String> {
    use lol_html::{RewriteStrSettings, element, text};
    use std::cell::RefCell;
    let undo = |v: &str| {
        drop_port_80(
            &v.to_ascii_lowercase()
                .replace("&quot;", "\"")
                .replace("https://", "http://"),
        )
    };
    let seen = RefCell::new(Vec::new());
    let settings = RewriteStrSettings::new()
        .append_element_content_handler(element!("*", |el| {
            let mut s = format!("<{}", el.tag_name());
            // The attributes the rewriter may change (others may be written anew with the
            // tag, and lol_html writes malformed names its own way).
            for name in URL_ATTRIBUTES
                .iter()
                .chain(SRCSET_ATTRIBUTES.iter())
                .chain(["style", "content"].iter())
            {
                if let Some(v) = el.get_attribute(name) {
                    s.push_str(&format!(" {name}={}", undo(&v)));
                }
            }
            seen.borrow_mut().push(s);
            Ok(())
        }))
        .append_element_content_handler(text!("*", |t| {
            seen.borrow_mut().push(undo(t.as_str()));
            Ok(())
        }))
        .with_strict(false);
    let _ = lol_html::rewrite_str(&String::from_utf8_lossy(doc), settings);
    // Text chunks may be split differently: join consecutive texts.
    let mut out: Vec<String> = Vec::new();
    for s in seen.into_inner() {
        match out.last_mut() {
            Some(last) if !last.starts_with('<') && !s.starts_with('<') => last.push_str(&s),
            _ => out.push(s),
        }
    }
    out
}

/// `s` without every `:` + digits naming port 80 (`:80`, `:080`, …), which an upgrade drops.
fn drop_port_80(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b':' {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let port = &s[i + 1..i + 1 + digits];
            if digits > 0 && port.trim_start_matches('0') == "80" {
                i += 1 + digits;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}
