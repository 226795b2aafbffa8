//! The streaming HTML rewriter of Automatic HTTPS Rewrites: lol_html (Cloudflare's streaming
//! rewriter) with one element handler for the attributes that load a resource or navigate,
//! and one text handler for `<style>` elements. Input goes in as chunks split anywhere;
//! output comes out as soon as lol_html has it. Memory is bounded: when a document needs more
//! than the bound (a start tag or a `<style>` element larger than it), the rest of the
//! document passes through byte for byte, never truncated.

use std::{
    borrow::Cow,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

pub use lol_html::AsciiCompatibleEncoding;
use lol_html::{
    MemorySettings, Selector,
    html_content::{ContentType, Element, TextChunk},
    send::{ElementContentHandlers, HtmlRewriter, Settings},
};

use super::urls::{self, KnownHost};

/// Attributes whose whole value is one URL (HTML's resource-loading and navigation
/// attributes, plus the legacy `background`).
pub const URL_ATTRIBUTES: [&str; 8] = [
    "src",
    "href",
    "action",
    "formaction",
    "poster",
    "data",
    "cite",
    "background",
];

/// Attributes whose value is a list of image candidates.
pub const SRCSET_ATTRIBUTES: [&str; 2] = ["srcset", "imagesrcset"];

/// The elements the rewriter looks at (a lol_html selector list): those with a rewritten
/// attribute that holds `http://` in any case. The handler changes nothing without one (every
/// upgrade starts at an `http://`), so this only spares it the elements it would leave alone
/// (most links are relative or `https://`). lol_html matches the attribute's raw bytes, as
/// written (character references not decoded, like the value the handler reads), in the
/// document's encoding, where an ASCII-compatible encoding writes `http://` as these ASCII
/// bytes and decodes those bytes only to it. The one exception, a value lol_html decodes as
/// UTF-16 by its byte order mark, is described at [`HtmlUpgrader::without_prefilter`].
pub const SELECTOR: &str = "[src*=\"http://\" i],[href*=\"http://\" i],[action*=\"http://\" i],\
    [formaction*=\"http://\" i],[poster*=\"http://\" i],[data*=\"http://\" i],\
    [cite*=\"http://\" i],[background*=\"http://\" i],[srcset*=\"http://\" i],\
    [imagesrcset*=\"http://\" i],[style*=\"http://\" i],meta[http-equiv][content*=\"http://\" i]";

/// [`SELECTOR`] and `style`, parsed once (`None` cannot happen: both are constant, valid
/// selectors; a rewriter without them would pass documents through unchanged).
static SELECTORS: LazyLock<Option<(Selector, Selector)>> =
    LazyLock::new(|| Some((SELECTOR.parse().ok()?, "style".parse().ok()?)));

/// The selector list before the `http://` pre-filter of [`SELECTOR`]: every element with one
/// of the rewritten attributes, whatever its value (see [`HtmlUpgrader::without_prefilter`]).
const EVERY_CANDIDATE: &str = "[src],[href],[action],[formaction],[poster],[data],[cite],\
                               [background],[srcset],[imagesrcset],[style],meta[http-equiv]";

/// [`EVERY_CANDIDATE`] and `style`, parsed once.
static EVERY_CANDIDATE_SELECTORS: LazyLock<Option<(Selector, Selector)>> =
    LazyLock::new(|| Some((EVERY_CANDIDATE.parse().ok()?, "style".parse().ok()?)));

/// The most bytes handed to lol_html at once.
const WRITE_SLICE: usize = 16 * 1024;

/// Room beyond a chunk's length reserved for its output: what lol_html held back from the
/// previous chunk (an unfinished tag) and the bytes upgrades add, in bytes.
const OUTPUT_SLACK: usize = 1024;

/// The largest `<style>` element text rewritten, bytes: a larger one passes through as it was.
pub const MAX_STYLE_BYTES: usize = 256 * 1024;

/// The encoding a `charset` label (WHATWG Encoding labels, case-insensitive) names, when
/// lol_html can work in it: `None` for an unknown label and for UTF-16 and the other
/// encodings that are not ASCII-compatible.
pub fn encoding_for_label(label: &str) -> Option<AsciiCompatibleEncoding> {
    encoding_rs::Encoding::for_label(label.trim().as_bytes()).and_then(AsciiCompatibleEncoding::new)
}

/// The WHATWG name of an encoding (`UTF-8`, `windows-1252`, …).
pub fn encoding_name(encoding: AsciiCompatibleEncoding) -> &'static str {
    <&'static encoding_rs::Encoding>::from(encoding).name()
}

/// Why a document passed through (the rest of it, from where the rewriter stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassReason {
    /// It needed more memory than the bound.
    Memory,
    /// lol_html refused it for another reason.
    Error,
}

/// What a rewriter did so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// URLs upgraded.
    pub links: AtomicU64,
}

/// Shared between the lol_html sink and the rewriter's owner.
type Sink = Arc<Mutex<Vec<u8>>>;

/// lol_html's output, collected for the owner to take.
struct SharedSink(Sink);

impl lol_html::OutputSink for SharedSink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if let Ok(mut o) = self.0.lock() {
            o.extend_from_slice(chunk);
        }
    }
}

/// One document being rewritten.
pub struct HtmlUpgrader {
    rewriter: Option<HtmlRewriter<'static, SharedSink>>,
    out: Sink,
    counts: Arc<Counts>,
    passed: Option<PassReason>,
}

impl HtmlUpgrader {
    /// A rewriter for one document in `encoding` (an ASCII-compatible one; UTF-16 is refused
    /// by [`AsciiCompatibleEncoding::new`]), using at most about `max_memory` bytes of buffer,
    /// upgrading URLs whose host `known` says serves HTTPS. With `meta_charset`, a
    /// `<meta charset>` in the document switches the encoding (only when the response header
    /// named none).
    pub fn new(
        known: Arc<dyn KnownHost + Send + Sync>,
        encoding: AsciiCompatibleEncoding,
        meta_charset: bool,
        max_memory: usize,
    ) -> HtmlUpgrader {
        HtmlUpgrader::with_selectors(
            SELECTORS.as_ref(),
            known,
            encoding,
            meta_charset,
            max_memory,
        )
    }

    /// [`HtmlUpgrader::new`] without the `http://` pre-filter: every element with one of the
    /// rewritten attributes goes to the handler, as before [`SELECTOR`] had the filter.
    /// Slower; for differential tests and the fuzz target, which check that both give the
    /// same bytes. They differ on one kind of input only: an attribute value whose raw bytes
    /// start with a UTF-16 byte order mark (FF FE or FE FF) and then spell `http://…` in
    /// UTF-16, which lol_html's decoding hands to this handler as a URL (and it upgrades);
    /// the pre-filter sees no `http://` in the bytes and leaves them as they are.
    pub fn without_prefilter(
        known: Arc<dyn KnownHost + Send + Sync>,
        encoding: AsciiCompatibleEncoding,
        meta_charset: bool,
        max_memory: usize,
    ) -> HtmlUpgrader {
        HtmlUpgrader::with_selectors(
            EVERY_CANDIDATE_SELECTORS.as_ref(),
            known,
            encoding,
            meta_charset,
            max_memory,
        )
    }

    /// [`HtmlUpgrader::new`] with the element and `<style>` selectors given.
    fn with_selectors(
        selectors: Option<&(Selector, Selector)>,
        known: Arc<dyn KnownHost + Send + Sync>,
        encoding: AsciiCompatibleEncoding,
        meta_charset: bool,
        max_memory: usize,
    ) -> HtmlUpgrader {
        let out: Sink = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(Counts::default());
        let sink = SharedSink(out.clone());
        let (k1, c1) = (known.clone(), counts.clone());
        let (k2, c2) = (known, counts.clone());
        let mut style = StyleText::default();
        let mut settings = Settings::new_send();
        // The selectors are parsed once per process, not per document.
        if let Some((elements, styles)) = selectors {
            settings = settings
                .append_element_content_handler((
                    Cow::Borrowed(elements),
                    ElementContentHandlers::default().element(
                        move |el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>| {
                            upgrade_element(el, &*k1, &c1);
                            Ok(())
                        },
                    ),
                ))
                .append_element_content_handler((
                    Cow::Borrowed(styles),
                    ElementContentHandlers::default().text(move |t: &mut TextChunk<'_>| {
                        style.chunk(t, &*k2, &c2);
                        Ok(())
                    }),
                ));
        }
        let settings = settings
            .with_encoding(encoding)
            .with_adjust_charset_on_meta_tag(meta_charset)
            // A misparse guess beats an unrecoverable error on ambiguous markup.
            .with_strict(false)
            .with_memory_settings(
                MemorySettings::new()
                    .with_preallocated_parsing_buffer_size(1024.min(max_memory))
                    .with_max_allowed_memory_usage(max_memory)
                    .with_graceful_bail_out_on_memory_limit_exceeded(true),
            )
            .with_graceful_bail_out_on_content_handler_error(true);
        HtmlUpgrader {
            rewriter: Some(HtmlRewriter::new(settings, sink)),
            out,
            counts,
            passed: None,
        }
    }

    /// Rewrites one chunk; returns what is ready (possibly nothing, possibly more than one
    /// chunk's worth).
    pub fn write(&mut self, chunk: &[u8]) -> Vec<u8> {
        // The output is about the input's size (an upgrade adds one byte): sized once, not
        // grown by doubling through lol_html's many small pieces (a 16 KiB step used to end
        // in a 32 KiB buffer, held until the client took it, after three reallocations).
        if let Ok(mut o) = self.out.lock() {
            o.reserve_exact(chunk.len() + OUTPUT_SLACK);
        }
        // lol_html appends a whole chunk to the bytes it still holds before parsing: fed in
        // slices, its buffer needs one slice beside the longest token, not one network read.
        let mut rest = chunk;
        while !rest.is_empty() {
            let (slice, after) = rest.split_at(rest.len().min(WRITE_SLICE));
            rest = after;
            let Some(r) = self.rewriter.as_mut() else {
                let mut v = self.take();
                v.extend_from_slice(slice);
                v.extend_from_slice(rest);
                return v;
            };
            if let Err(e) = r.write(slice) {
                // lol_html has flushed every byte it held, raw: the rest passes through.
                self.stop(&e);
            }
        }
        self.take()
    }

    /// The end of the document: whatever was still held.
    pub fn end(&mut self) -> Vec<u8> {
        if let Some(r) = self.rewriter.take()
            && let Err(e) = r.end()
        {
            self.passed.get_or_insert(reason(&e));
        }
        self.take()
    }

    /// URLs upgraded so far.
    pub fn links(&self) -> u64 {
        self.counts.links.load(Relaxed)
    }

    /// Why the rest of the document passed through, if it did.
    pub fn passed(&self) -> Option<PassReason> {
        self.passed
    }

    fn stop(&mut self, e: &lol_html::errors::RewritingError) {
        self.rewriter = None;
        self.passed = Some(reason(e));
    }

    fn take(&mut self) -> Vec<u8> {
        match self.out.lock() {
            Ok(mut o) => std::mem::take(&mut *o),
            Err(_) => Vec::new(),
        }
    }
}

fn reason(e: &lol_html::errors::RewritingError) -> PassReason {
    match e {
        lol_html::errors::RewritingError::MemoryLimitExceeded(_) => PassReason::Memory,
        _ => PassReason::Error,
    }
}

/// Upgrades the URL-bearing attributes of one element.
fn upgrade_element<H: lol_html::HandlerTypes>(
    el: &mut Element<'_, '_, H>,
    known: &dyn KnownHost,
    counts: &Counts,
) {
    if el.attributes().is_empty() {
        return;
    }
    // Read first; a tag is only written anew when one of its URLs changes.
    let mut changes: Vec<(&'static str, u64, String)> = Vec::new();
    let mut check = |name: &'static str,
                     old: Option<String>,
                     up: fn(&str, &dyn KnownHost) -> Option<String>| {
        if let Some(old) = old
            && let Some(new) = up(&old, known)
        {
            changes.push((name, count_upgrades(&old, &new), new));
        }
    };
    for name in URL_ATTRIBUTES {
        check(name, el.get_attribute(name), urls::upgrade_url);
    }
    for name in SRCSET_ATTRIBUTES {
        check(name, el.get_attribute(name), urls::upgrade_srcset);
    }
    check("style", el.get_attribute("style"), |v, k| {
        urls::upgrade_css(v, k, true)
    });
    if el.tag_name() == "meta"
        && el
            .get_attribute("http-equiv")
            .is_some_and(|h| h.trim().eq_ignore_ascii_case("refresh"))
    {
        check(
            "content",
            el.get_attribute("content"),
            urls::upgrade_meta_refresh,
        );
    }
    if changes.is_empty() {
        return;
    }
    // lol_html cannot faithfully write back attribute names that only malformed markup has
    // (quotes, `=`, `<` in a name): such a tag is left as it is rather than parsed
    // differently afterwards.
    if el
        .attributes()
        .iter()
        .any(|a| a.name().contains(['"', '\'', '=', '<', '`']))
    {
        return;
    }
    for (name, n, new) in changes {
        if el.set_attribute(name, &new).is_ok() {
            counts.links.fetch_add(n, Relaxed);
        }
    }
}

/// The text of the current `<style>` element, gathered across chunks (a `url(` may be split
/// anywhere) up to [`MAX_STYLE_BYTES`]. Held text is decoded; it is written back encoded,
/// which gives the same bytes for text that decoded cleanly.
#[derive(Default)]
struct StyleText {
    held: String,
    /// The element outgrew the bound: its text passes as it is.
    passing: bool,
}

impl StyleText {
    fn chunk(&mut self, t: &mut TextChunk<'_>, known: &dyn KnownHost, counts: &Counts) {
        let last = t.last_in_text_node();
        if !self.passing {
            // Too long, or bytes that did not decode (U+FFFD would not encode back to them):
            // the element's text passes as it came.
            if self.held.len() + t.as_str().len() > MAX_STYLE_BYTES
                || t.as_str().contains('\u{fffd}')
            {
                // Give back what was held, unchanged, and let the rest through.
                let held = std::mem::take(&mut self.held);
                t.before(&held, ContentType::Html);
                self.passing = true;
            } else {
                self.held.push_str(t.as_str());
                if last {
                    let css = std::mem::take(&mut self.held);
                    match urls::upgrade_css(&css, known, false) {
                        Some(up) => {
                            counts.links.fetch_add(count_upgrades(&css, &up), Relaxed);
                            t.replace(&up, ContentType::Html);
                        }
                        None => t.replace(&css, ContentType::Html),
                    }
                } else {
                    t.remove();
                }
            }
        }
        if last {
            self.passing = false;
        }
    }
}

/// How many URLs an upgrade changed: each adds one `https://` (lengths say nothing, since a
/// dropped `:80` shortens the URL).
fn count_upgrades(before: &str, after: &str) -> u64 {
    let n = |s: &str| {
        s.as_bytes()
            .windows(8)
            .filter(|w| w.eq_ignore_ascii_case(b"https://"))
            .count()
    };
    n(after).saturating_sub(n(before)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Arc<dyn KnownHost + Send + Sync> {
        Arc::new(|h: &str| h == "a.example" || h.ends_with(".cdn.example"))
    }

    fn run(input: &[u8], split: usize, max: usize) -> (Vec<u8>, u64, Option<PassReason>) {
        let mut r = HtmlUpgrader::new(known(), AsciiCompatibleEncoding::utf_8(), true, max);
        let mut out = Vec::new();
        for c in input.chunks(split.max(1)) {
            out.extend(r.write(c));
        }
        out.extend(r.end());
        (out, r.links(), r.passed())
    }

    const PAGE: &str = r#"<!doctype html><html><head>
<meta http-equiv="Refresh" content="30; url=http://a.example/next">
<link rel=stylesheet href=http://a.example/s.css>
<style>body{background:url("http://img.cdn.example/bg.png")} p{background:url(http://other.example/x.png)}</style>
</head><body style="background-image:url('http://a.example/b.png')">
<img src="http://a.example/i.png" srcset="http://a.example/1.png 1x, http://other.example/2.png 2x">
<a href="http://other.example/">other</a> <a href='HTTP://A.EXAMPLE:80/x?y=1&amp;z=2'>me</a>
<form action="http://a.example/post"><button formaction="http://a.example/b">b</button></form>
<video poster="http://a.example/p.jpg"></video><object data="http://a.example/o"></object>
<q cite="http://a.example/c">q</q><table background="http://a.example/t.gif"></table>
<link rel=preload imagesrcset="http://a.example/p.png 2x" as=image>
<script>var u = "http://a.example/not-an-attribute";</script>
</body></html>"#;

    #[test]
    fn upgrades_every_kind_of_url_and_nothing_else() {
        let (out, links, passed) = run(PAGE.as_bytes(), usize::MAX, 1 << 20);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(passed, None);
        for want in [
            "content=\"30; url=https://a.example/next\"",
            "href=\"https://a.example/s.css\"",
            "url(\"https://img.cdn.example/bg.png\")",
            "url(http://other.example/x.png)",
            "url('https://a.example/b.png')",
            "src=\"https://a.example/i.png\"",
            "srcset=\"https://a.example/1.png 1x, http://other.example/2.png 2x\"",
            "<a href=\"http://other.example/\">",
            "href=\"https://A.EXAMPLE/x?y=1&amp;z=2\"",
            "action=\"https://a.example/post\"",
            "formaction=\"https://a.example/b\"",
            "poster=\"https://a.example/p.jpg\"",
            "data=\"https://a.example/o\"",
            "cite=\"https://a.example/c\"",
            "background=\"https://a.example/t.gif\"",
            "imagesrcset=\"https://a.example/p.png 2x\"",
            "\"http://a.example/not-an-attribute\"",
        ] {
            assert!(out.contains(want), "missing {want}\n{out}");
        }
        assert_eq!(links, 14);
    }

    #[test]
    fn chunk_boundaries_do_not_change_the_output() {
        let (whole, links, _) = run(PAGE.as_bytes(), usize::MAX, 1 << 20);
        for split in [1, 2, 3, 7, 16, 64] {
            let (out, l, _) = run(PAGE.as_bytes(), split, 1 << 20);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&whole),
                "split {split}"
            );
            assert_eq!(l, links);
        }
    }

    #[test]
    fn untouched_documents_are_byte_for_byte() {
        let doc = "<!DOCTYPE html><p class=x>plain <a href='https://a.example/'>x</a> <img src=/rel.png>\
                   <a href=\"http://other.example/\">o</a><!-- http://a.example/ --></p>";
        for split in [1, 5, usize::MAX] {
            let (out, links, _) = run(doc.as_bytes(), split, 1 << 20);
            assert_eq!(out, doc.as_bytes());
            assert_eq!(links, 0);
        }
    }

    #[test]
    fn over_the_memory_bound_the_rest_passes_through_whole() {
        // A start tag larger than the bound, fed in small chunks.
        let big = format!(
            "<p><img src=\"http://a.example/1.png\"><div title=\"{}\"><img src=\"http://a.example/2.png\"></div>",
            "x".repeat(64 * 1024)
        );
        let (out, _, passed) = run(big.as_bytes(), 1000, 16 * 1024);
        assert_eq!(passed, Some(PassReason::Memory));
        let out = String::from_utf8(out).unwrap();
        // Nothing lost, nothing cut: the document is the input with at most the URLs before
        // the bail-out upgraded.
        assert_eq!(out.replace("https://", "http://"), big);
        assert!(out.ends_with("<img src=\"http://a.example/2.png\"></div>"));
    }

    #[test]
    fn a_huge_style_element_passes_unchanged() {
        let css = format!(
            "a{{background:url(http://a.example/x.png)}}{}",
            "/* pad */".repeat(MAX_STYLE_BYTES / 8)
        );
        let doc = format!("<style>{css}</style><img src=http://a.example/y.png>");
        let (out, _, _) = run(doc.as_bytes(), 4096, 8 << 20);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with(&format!("<style>{css}</style>")));
        assert!(out.ends_with("<img src=\"https://a.example/y.png\">"));
    }

    #[test]
    fn style_text_that_does_not_decode_reads_the_same() {
        // Invalid UTF-8 in a <style> element: lol_html writes a text it handled back from
        // its decoded form, so the bad bytes become U+FFFD, which is what a browser reads
        // there anyway. The element with them is not rewritten.
        let doc = b"<style>a{background:url(http://a.example/x.png)}</style><style>b{content:'\xff\xfe'} c{background:url(http://a.example/y.png)}</style>";
        let want = String::from_utf8_lossy(doc).replacen("http://", "https://", 1);
        for split in [1, 7, usize::MAX] {
            let (out, links, _) = run(doc, split, 1 << 20);
            assert_eq!(String::from_utf8_lossy(&out), want, "split {split}");
            assert_eq!(links, 1, "split {split}");
        }
    }

    /// `input` through [`HtmlUpgrader::new`] and [`HtmlUpgrader::without_prefilter`], split
    /// every `split` bytes, under `max` bytes of memory: both outcomes.
    fn both(input: &[u8], split: usize, max: usize) -> [(Vec<u8>, u64, Option<PassReason>); 2] {
        [HtmlUpgrader::new, HtmlUpgrader::without_prefilter].map(|make| {
            let enc = AsciiCompatibleEncoding::utf_8();
            let mut r = make(known(), enc, true, max);
            let mut out = Vec::new();
            for c in input.chunks(split.max(1)) {
                out.extend(r.write(c));
            }
            out.extend(r.end());
            (out, r.links(), r.passed())
        })
    }

    #[track_caller]
    fn assert_prefilter_changes_nothing(input: &[u8], splits: &[usize], maxes: &[usize]) {
        for &split in splits {
            for &max in maxes {
                let [filtered, every] = both(input, split, max);
                assert_eq!(
                    String::from_utf8_lossy(&filtered.0),
                    String::from_utf8_lossy(&every.0),
                    "split {split}, max {max}, input {:?}",
                    String::from_utf8_lossy(input)
                );
                assert_eq!(filtered, every, "split {split}, max {max}");
            }
        }
    }

    #[test]
    fn the_prefilter_keeps_every_upgrade_the_handler_makes() {
        // Each is upgraded (the first element) or left alone (the second) the same way
        // with and without the pre-filter; the upgraded ones say the test is not vacuous.
        let cases: &[(&str, bool)] = &[
            ("<a href=\"HTTP://A.EXAMPLE/\">", true),
            ("<a HREF='hTtP://a.example/x'>", true),
            ("<a href=\" \t\nhttp://a.example/\">", true),
            ("<a href=\"\x0chttp://a.example/\">", true),
            ("<a href=http://a.example/x>", true),
            ("<IMG SRC=\"Http://a.example:80/i.png\">", true),
            (
                "<img srcset=\"/a.png 1x,HTTP://x.cdn.example/b.png 2x\">",
                true,
            ),
            (
                "<img srcset=\"/a.png&#32;1x, http://a.example/b.png 2x\">",
                true,
            ),
            ("<link imagesrcset=\"http://a.example/p.png 2x\">", true),
            (
                "<p style=\"background:URL(&quot;HTTP://a.example/b.png&quot;)\">",
                true,
            ),
            ("<p style='background:url(http://a.example/b.png)'>", true),
            (
                "<meta content=\"0;URL=HTTP://A.EXAMPLE/\" http-equiv=\"REFRESH\">",
                true,
            ),
            (
                "<META HTTP-EQUIV=\" refresh \" CONTENT='5, http://a.example/'>",
                true,
            ),
            ("<svg><image href=\"http://a.example/s.svg\"/></svg>", true),
            (
                "<x-custom data=\"http://a.example/d\" cite=\"http://a.example/c\">",
                true,
            ),
            ("<a href=\"/x\" href=\"http://a.example/\">", false),
            ("<a href=\"http://a.example/\" href=\"/x\">", true),
            ("<a href=\"http&#58;//a.example/\">", false),
            ("<a href=\"http&#x3a;//a.example/\">", false),
            ("<a href=\"&#104;ttp://a.example/\">", false),
            ("<a href=\"http:&#47;&#47;a.example/\">", false),
            ("<img srcset=\"http&#58;//a.example/1.png 1x\">", false),
            (
                "<p style=\"background:url(http&#58;//a.example/b.png)\">",
                false,
            ),
            (
                "<meta http-equiv=refresh content=\"0;url=http&#58;//a.example/\">",
                false,
            ),
            ("<meta http-equiv=refresh>", false),
            ("<meta name=x content=\"http://a.example/\">", false),
            ("<a title=\"http://a.example/\" href=\"/\">", false),
            ("<a xlink:href=\"http://a.example/\">", false),
            ("<a href=\"http://other.example/\">", false),
            ("<a href=\"https://a.example/\">", false),
            ("<a \"x=1 href=\"http://a.example/\">", false),
            (
                "<script>document.write('<a href=\"http://a.example/\">')</script>",
                false,
            ),
            ("<!-- <a href=\"http://a.example/\"> -->", false),
            ("<textarea><a href=\"http://a.example/\"></textarea>", false),
            // lol_html decodes a value with BOM sniffing: a leading U+FEFF goes, with or
            // without the pre-filter (the raw bytes still hold `http://`).
            ("<a href=\"\u{feff}http://a.example/\">", true),
        ];
        for (doc, upgraded) in cases {
            let [filtered, _] = both(doc.as_bytes(), usize::MAX, 1 << 20);
            assert_eq!(filtered.1 > 0, *upgraded, "{doc}");
            assert_prefilter_changes_nothing(doc.as_bytes(), &[1, 3, usize::MAX], &[1 << 20]);
        }
        let all: String = cases.iter().map(|(d, _)| *d).collect();
        assert_prefilter_changes_nothing(all.as_bytes(), &[1, 7, 64, usize::MAX], &[1 << 20, 1024]);
        assert_prefilter_changes_nothing(PAGE.as_bytes(), &[1, 5, usize::MAX], &[1 << 20, 1024]);
    }

    #[test]
    fn the_prefilter_agrees_on_generated_markup() {
        // Markup-shaped noise in a reproducible order (xorshift): start tags with attributes
        // the rewriter reads or not, in any case, quoted or not, values made of URL-ish
        // pieces, between raw fragments (text, comments, raw text elements, stray bytes).
        const TAGS: &[&[u8]] = &[
            b"<a",
            b"<IMG",
            b"<meta",
            b"<META",
            b"<div",
            b"<svg><image",
            b"<td",
            b"<x-y",
        ];
        const NAMES: &[&[u8]] = &[
            b"href",
            b"HREF",
            b"src",
            b"SrcSet",
            b"imagesrcset",
            b"style",
            b"action",
            b"formaction",
            b"poster",
            b"data",
            b"cite",
            b"background",
            b"content",
            b"http-equiv",
            b"xlink:href",
            b"title",
            b"\"q",
            b"x=y",
        ];
        const QUOTES: &[&[u8]] = &[b"\"", b"'", b""];
        const VALUES: &[&[u8]] = &[
            b"http://a.example/x",
            b"HTTP://A.EXAMPLE:80/",
            b" \thttp://a.example",
            b"http&#58;//a.example/",
            b"&#104;ttp://a.example/",
            b"hTTp://x.cdn.example/ 1x,",
            b"http://a.example/2 2x",
            b"url(&quot;http://a.example/i&quot;)",
            b"url(http://a.example/i)",
            b"@import 'HTTP://a.example/s.css';",
            b"0; url=",
            b"refresh",
            b"Refresh",
            b"https://a.example/",
            b"/rel",
            b"http://other.example/",
            b"http:/",
            b"//",
            b"&amp;",
            b"&quot;",
            b"\xc3\xa9",
            b"\xff",
            b"\xef\xbb\xbf",
            b" ",
            b">",
            b"\"",
            b"'",
        ];
        const RAW: &[&[u8]] = &[
            b"</a>",
            b"<style>",
            b"</style>",
            b"<script>",
            b"</script>",
            b"<!--",
            b"-->",
            b"<textarea>",
            b"</textarea>",
            b"<![CDATA[",
            b"]]>",
            b">",
            b"/>",
            b"text ",
            b"http://a.example/",
            b"\n",
            b"\xff",
            b"<",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut upgraded = 0;
        for _ in 0..1500 {
            let mut doc = Vec::new();
            for _ in 0..1 + next(12) {
                if next(5) == 0 {
                    doc.extend_from_slice(RAW[next(RAW.len())]);
                    continue;
                }
                doc.extend_from_slice(TAGS[next(TAGS.len())]);
                for _ in 0..next(4) {
                    doc.extend_from_slice([&b" "[..], b"\n", b"/"][next(3)]);
                    doc.extend_from_slice(NAMES[next(NAMES.len())]);
                    if next(6) == 0 {
                        continue;
                    }
                    let quote = QUOTES[next(QUOTES.len())];
                    doc.push(b'=');
                    doc.extend_from_slice(quote);
                    for _ in 0..1 + next(3) {
                        doc.extend_from_slice(VALUES[next(VALUES.len())]);
                    }
                    doc.extend_from_slice(quote);
                }
                doc.extend_from_slice([&b">"[..], b" />", b""][next(3)]);
            }
            let split = 1 + next(40);
            assert_prefilter_changes_nothing(&doc, &[split, usize::MAX], &[1 << 20]);
            upgraded += usize::from(both(&doc, usize::MAX, 1 << 20)[0].1 > 0);
        }
        // Not vacuous: a good share of the documents had URLs upgraded.
        assert!(upgraded > 300, "{upgraded} of 1500");
    }

    #[test]
    fn the_prefilter_agrees_on_the_bench_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/corpus");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "html") {
                continue;
            }
            let page = std::fs::read(&path).unwrap();
            // As published, and with every link absolute on a host that serves HTTPS.
            let mixed = String::from_utf8_lossy(&page)
                .replace("href=\"", "href=\"HTTP://a.example/")
                .replace("src=\"", "src=\" http://x.cdn.example/");
            for doc in [&page[..], mixed.as_bytes()] {
                assert_prefilter_changes_nothing(doc, &[16 * 1024], &[256 * 1024]);
            }
        }
    }

    #[test]
    fn a_value_that_only_decodes_to_a_url_by_its_utf16_bom_is_left_alone() {
        // lol_html decodes an attribute value with BOM sniffing: bytes FF FE then
        // `h\0t\0t\0p\0…` read as `http://…` to a handler. A browser reads no URL there;
        // the pre-filter (raw bytes, no `http://` in them) leaves it as it is. The one input
        // on which it differs from handling every candidate, which upgraded it.
        let doc = b"<img src=\"\xff\xfeh\0t\0t\0p\0:\0/\0/\0a\0.\0e\0x\0a\0m\0p\0l\0e\0/\0\">";
        let [filtered, every] = both(doc, usize::MAX, 1 << 20);
        assert_eq!(filtered.0, doc.to_vec());
        assert_eq!(filtered.1, 0);
        assert_eq!(every.0, b"<img src=\"https://a.example/\">".to_vec());
    }

    #[test]
    fn windows_1252_documents_keep_their_bytes() {
        let enc = AsciiCompatibleEncoding::new(encoding_rs::WINDOWS_1252).unwrap();
        let mut r = HtmlUpgrader::new(known(), enc, false, 1 << 20);
        let doc = b"<p title=\"caf\xe9\"><img src=\"http://a.example/\xe9.png\"></p>";
        let mut out = r.write(doc);
        out.extend(r.end());
        assert_eq!(
            out,
            b"<p title=\"caf\xe9\"><img src=\"https://a.example/\xe9.png\"></p>".to_vec()
        );
    }
}
