//! Automatic HTTPS Rewrites (per site `https_rewrites`, default off): HTML responses proxied
//! over HTTPS for an enforced host have their `http://` links to hosts known to serve HTTPS
//! upgraded to `https://`, so the page loads no mixed content. Known: hosts enforced in the
//! policy table when the response arrives, plus the site's `https_rewrite_hosts`.
//!
//! The head phase decides and adjusts the head (`Content-Encoding` for the client, a weak
//! `ETag`, `Vary: Accept-Encoding`; the chain drops `Content-Length`); the body phase decodes
//! (gzip, deflate, br), rewrites with lol_html (force_https_proto::rewrite) and re-encodes
//! to what the client accepted. Responses it cannot rewrite safely pass through untouched
//! and are counted by reason: `Cache-Control: no-transform`, a content coding it cannot
//! decode, a charset lol_html cannot handle (UTF-16), a partial (206) response, a compressed
//! body whose decoder and encoder do not fit in the codec memory budget
//! ([`codec_budget`](super::codec_budget)). A document that needs more memory than the bound
//! passes through from where the bound was hit, whole.

use std::sync::Arc;

use bytes::Bytes;
use force_https_proto::{
    host::DomainPattern,
    rewrite::{
        coding::{Coding, Decoder, Encoder, br_window_bits},
        html::{
            AsciiCompatibleEncoding, HtmlUpgrader, PassReason, encoding_for_label, encoding_name,
        },
        urls::KnownHost,
    },
};
use hyper::{
    HeaderMap, Method, StatusCode,
    header::{self, HeaderValue},
    http::response::Parts,
};

use super::{
    BodyFilter, FilterCtx, Origin, ResponseFilter, Verdict,
    codec_budget::{CodecBudget, Reservation},
    rewrite_cache::{self, Cached, MAX_DOCUMENT_BYTES, RewriteCache},
};
use crate::{
    metrics::Metrics,
    policy::{HostEntry, PolicyTable, Scheme},
};

/// The most memory one document's rewriter may use for buffering, bytes: a start tag or a
/// `<style>` element larger than this makes the rest of the document pass through.
pub const MAX_MEMORY_BYTES: usize = 256 * 1024;

/// Decoded bytes per step of a compressed body ([`BodyFilter::more`]): what a response holds
/// does not depend on its compression ratio (a few kB of gzip can decode to megabytes).
const DECODE_STEP: usize = 16 * 1024;

/// The br window reserved before a stream's first byte tells its own, when the client needs
/// the body decoded (it does not take br), in bits: 22, the reference encoder's default and the
/// largest common servers use. A larger window is then held over the budget.
const BR_WINDOW_BITS_ASSUMED: u32 = 22;

/// The Automatic HTTPS Rewrites filter, with its cache of rewritten documents and the memory
/// budget of its codecs.
pub struct HttpsRewrites {
    cache: Arc<RewriteCache>,
    budget: Arc<CodecBudget>,
}

impl HttpsRewrites {
    /// The filter, its decoders and encoders within `budget`.
    pub fn new(budget: Arc<CodecBudget>) -> HttpsRewrites {
        HttpsRewrites {
            cache: Arc::default(),
            budget,
        }
    }
}

/// Whether requests of this exchange are rewritten: over TLS, for an enforced host whose
/// site has `https_rewrites`.
pub fn applies(scheme: Scheme, entry: Option<&Arc<HostEntry>>) -> bool {
    scheme == Scheme::Https
        && entry.is_some_and(|e| e.enforced && e.site.as_ref().is_some_and(|s| s.https_rewrites))
}

/// The content codings a rewritten body can come in: the `Accept-Encoding` sent to the
/// backend keeps only these (so a backend does not answer in one the rewriter cannot read).
/// A field left with nothing becomes `identity`.
pub fn restrict_accept_encoding(headers: &mut HeaderMap) {
    let Some(v) = headers.get(header::ACCEPT_ENCODING) else {
        return;
    };
    let kept: Vec<&str> = v
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|item| {
            let name = item.split(';').next().unwrap_or("").trim();
            ["gzip", "x-gzip", "deflate", "br", "identity"]
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
        })
        .collect();
    let value = if kept.is_empty() {
        "identity".to_string()
    } else {
        kept.join(", ")
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::ACCEPT_ENCODING, v);
    }
}

/// The media type and charset of a `Content-Type` value, lowercased.
fn media_type(v: &str) -> (String, Option<String>) {
    let mut parts = v.split(';');
    let mt = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    (mt, charset)
}

/// Whether `Cache-Control` forbids transforming the body (RFC 9111 §5.2.2.6).
fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// What the head phase decided for one response.
#[derive(Clone)]
struct Plan {
    decode: Coding,
    encode: Coding,
    encoding: AsciiCompatibleEncoding,
    /// No charset in `Content-Type`: `<meta charset>` may switch it, and a UTF-16 byte-order
    /// mark makes the document pass.
    sniff: bool,
    /// Small enough to rewrite whole and cache (not known to be larger).
    cacheable: bool,
    /// The declared length of an identity body (what the held document will need), else 0.
    size_hint: usize,
    /// The codecs' share of the budget (`None` for identity in and out).
    codec: Option<Arc<Reservation>>,
}

/// What a response's codecs reserve before its first body byte, bytes. The window of a br
/// stream is only known from that byte: when the client takes br, none is reserved yet (the
/// stream passes as it came if its window does not fit then); when the client needs it
/// decoded, [`BR_WINDOW_BITS_ASSUMED`].
fn head_reservation(decode: Coding, encode: Coding) -> usize {
    let window_bits = match (decode, encode) {
        (Coding::Br, Coding::Br) => 0,
        _ => BR_WINDOW_BITS_ASSUMED,
    };
    decode.decoder_memory(window_bits) + encode.encoder_memory()
}

impl HttpsRewrites {
    /// The plan for a response, or `None` when its body passes as it is (counted when it is
    /// an HTML document the filter would have rewritten).
    fn plan(&self, ctx: &FilterCtx<'_>, head: &Parts) -> Option<Plan> {
        if ctx.origin != Origin::Upstream || !applies(ctx.conn.scheme, ctx.entry) {
            return None;
        }
        let request = ctx.request?;
        if request.method == Method::HEAD
            || head.status.is_informational()
            || head.status == StatusCode::NO_CONTENT
            || head.status == StatusCode::NOT_MODIFIED
        {
            return None;
        }
        let (mt, charset) = media_type(
            head.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())?,
        );
        if mt != "text/html" && mt != "application/xhtml+xml" {
            return None;
        }
        let m = &ctx.metrics;
        if head.status == StatusCode::PARTIAL_CONTENT
            || head.headers.contains_key(header::CONTENT_RANGE)
        {
            Metrics::inc(&m.https_rewrites_passed_partial);
            return None;
        }
        if no_transform(&head.headers) {
            Metrics::inc(&m.https_rewrites_passed_no_transform);
            return None;
        }
        let ce: Vec<&str> = head
            .headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let Some(decode) = Coding::from_content_encoding(&ce.join(",")) else {
            Metrics::inc(&m.https_rewrites_passed_encoding);
            return None;
        };
        let encoding = match &charset {
            None => Some(AsciiCompatibleEncoding::utf_8()),
            Some(label) => encoding_for_label(label),
        };
        let Some(encoding) = encoding else {
            Metrics::inc(&m.https_rewrites_passed_charset);
            return None;
        };
        let encode = Coding::for_client(decode, request.accept_encoding);
        let codec = match head_reservation(decode, encode) {
            0 => None,
            bytes => {
                let Some(r) = self.budget.reserve(bytes) else {
                    Metrics::inc(&m.https_rewrites_passed_codec_memory);
                    return None;
                };
                Some(Arc::new(r))
            }
        };
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        Some(Plan {
            cacheable: !(decode == Coding::Identity
                && declared.is_some_and(|n| n > MAX_DOCUMENT_BYTES)),
            size_hint: declared
                .filter(|_| decode == Coding::Identity)
                .unwrap_or(0)
                .min(MAX_DOCUMENT_BYTES),
            decode,
            encode,
            encoding,
            sniff: charset.is_none(),
            codec,
        })
    }
}

impl ResponseFilter for HttpsRewrites {
    fn response_head(&self, ctx: &FilterCtx<'_>, head: &mut Parts) -> Verdict {
        let Some(plan) = self.plan(ctx, head) else {
            return Verdict::Continue;
        };
        let h = &mut head.headers;
        h.remove(header::CONTENT_ENCODING);
        if let Some(t) = plan.encode.token() {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(t));
        }
        if plan.decode != Coding::Identity && !vary_has(h, "accept-encoding") {
            h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        // The bytes change: a strong validator would claim byte-identity (RFC 9110 §8.8.1).
        if let Some(etag) = h.get(header::ETAG).and_then(|v| v.to_str().ok())
            && !etag.starts_with("W/")
            && let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}"))
        {
            h.insert(header::ETAG, weak);
        }
        for digest in ["content-md5", "content-digest", "digest", "repr-digest"] {
            h.remove(digest);
        }
        // For the body phase, which sees the head as changed here.
        head.extensions.insert(plan);
        Verdict::Continue
    }

    fn body(&self, ctx: &FilterCtx<'_>, head: &Parts) -> Option<Box<dyn BodyFilter>> {
        let plan = head.extensions.get::<Plan>()?.clone();
        let site = ctx.entry?.site.clone()?;
        let table = ctx.table?.clone();
        let known: Arc<dyn KnownHost + Send + Sync> = Arc::new(Known {
            table: table.clone(),
            site: site.clone(),
        });
        Some(Box::new(RewriteBody {
            decoder: Some(Decoder::new(plan.decode)),
            html: None,
            known,
            encoding: plan.encoding,
            meta_charset: plan.sniff,
            encoder: Some(Encoder::new(plan.encode)),
            encode: plan.encode,
            window_unknown: plan.decode == Coding::Br,
            verbatim: false,
            codec: plan.codec,
            sniffing: plan.sniff,
            raw: false,
            held: plan.cacheable.then(|| Vec::with_capacity(plan.size_hint)),
            pending: Vec::new(),
            pending_at: 0,
            cache: self.cache.clone(),
            table,
            site,
            cached_links: 0,
            metrics: ctx.metrics.clone(),
        }))
    }
}

/// The hosts an upgraded link may point to.
struct Known {
    table: Arc<PolicyTable>,
    site: Arc<crate::config::Site>,
}

impl KnownHost for Known {
    fn serves_https(&self, host: &str) -> bool {
        self.table.lookup(host).is_some_and(|e| e.enforced)
            || self
                .site
                .https_rewrite_hosts
                .iter()
                .any(|p: &DomainPattern| p.matches(host))
    }
}

/// One response body on its way through decoder, rewriter and encoder.
struct RewriteBody {
    /// `None` once the input turned out not to be valid in its coding.
    decoder: Option<Decoder>,
    /// Made when first needed (a cache hit needs none).
    html: Option<HtmlUpgrader>,
    /// What the rewriter is made of.
    known: Arc<dyn KnownHost + Send + Sync>,
    encoding: AsciiCompatibleEncoding,
    /// No charset in the header: `<meta charset>` may switch it.
    meta_charset: bool,
    /// `None` once finished.
    encoder: Option<Encoder>,
    /// What the encoder makes.
    encode: Coding,
    /// A br stream whose window (its first byte) has not come yet.
    window_unknown: bool,
    /// The body passes as the backend sent it: its br window did not fit in the budget.
    verbatim: bool,
    /// The codecs' share of the budget, given back at the end.
    codec: Option<Arc<Reservation>>,
    /// The first bytes are still to be checked for a UTF-16 byte-order mark.
    sniffing: bool,
    /// The document passes as it is (UTF-16).
    raw: bool,
    /// The decoded document so far, while it may still be small enough to rewrite whole and
    /// cache; `None` once it streams.
    held: Option<Vec<u8>>,
    /// Decoded bytes not yet through the rewriter: what was held when the document turned out
    /// too large to cache, fed to the rewriter `DECODE_STEP` bytes per [`BodyFilter::more`]
    /// from `pending_at` on, so that one poll never carries the whole held document's output.
    pending: Vec<u8>,
    pending_at: usize,
    cache: Arc<RewriteCache>,
    table: Arc<PolicyTable>,
    site: Arc<crate::config::Site>,
    /// URLs upgraded in a document served from the cache.
    cached_links: u64,
    metrics: Arc<Metrics>,
}

impl RewriteBody {
    fn html(&mut self) -> &mut HtmlUpgrader {
        let (known, encoding, meta) = (&self.known, self.encoding, self.meta_charset);
        self.html.get_or_insert_with(|| {
            HtmlUpgrader::new(known.clone(), encoding, meta, MAX_MEMORY_BYTES)
        })
    }

    /// Decoded bytes through the rewriter (or into the held document).
    fn rewrite(&mut self, decoded: &[u8]) -> Vec<u8> {
        if self.sniffing && !decoded.is_empty() {
            self.sniffing = false;
            if decoded.starts_with(&[0xfe, 0xff]) || decoded.starts_with(&[0xff, 0xfe]) {
                // UTF-16: lol_html reads only ASCII-compatible encodings.
                self.raw = true;
                Metrics::inc(&self.metrics.https_rewrites_passed_charset);
            }
        }
        if self.raw {
            let mut out = self.held.take().unwrap_or_default();
            out.extend_from_slice(decoded);
            return out;
        }
        if self.pending_at < self.pending.len() {
            // Behind what is still pending: after it, in order.
            self.pending.extend_from_slice(decoded);
            return self.next_pending();
        }
        match self.held.as_mut() {
            Some(held) if held.len() + decoded.len() <= MAX_DOCUMENT_BYTES => {
                held.extend_from_slice(decoded);
                Vec::new()
            }
            Some(_) => {
                // Too large to cache: stream from here, a step at a time.
                let mut held = self.held.take().unwrap_or_default();
                held.extend_from_slice(decoded);
                self.pending = held;
                self.pending_at = 0;
                self.next_pending()
            }
            None => self.html().write(decoded),
        }
    }

    /// The next `DECODE_STEP` pending bytes through the rewriter (its output may be empty: it
    /// holds back an unfinished tag); the buffer is freed once all went through.
    fn next_pending(&mut self) -> Vec<u8> {
        let pending = std::mem::take(&mut self.pending);
        let end = pending.len().min(self.pending_at + DECODE_STEP);
        let out = match pending.get(self.pending_at..end) {
            Some(step) => self.html().write(step),
            None => Vec::new(),
        };
        self.pending_at = end;
        if end < pending.len() {
            self.pending = pending;
        } else {
            self.pending_at = 0;
        }
        out
    }

    /// Everything still pending through the rewriter (the end of the stream).
    fn flush_pending(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.pending_at < self.pending.len() {
            out.extend(self.next_pending());
        }
        out
    }

    /// The end of a held document: from the cache, or rewritten whole and cached.
    fn finish_held(&mut self, held: Vec<u8>) -> Bytes {
        let key = rewrite_cache::key(
            &self.site.name,
            encoding_name(self.encoding),
            self.meta_charset,
            &held,
        );
        if let Some(hit) = self.cache.get(&self.table, key, &held) {
            Metrics::inc(&self.metrics.https_rewrites_cache_hits);
            self.cached_links = hit.links;
            return hit.output.clone();
        }
        let mut out = self.html().write(&held);
        out.extend(self.html().end());
        let html = self.html();
        if html.passed().is_none() {
            let links = html.links();
            let output = Bytes::from(out);
            self.cache.put(
                &self.table,
                key,
                Cached {
                    input: Bytes::from(held),
                    output: output.clone(),
                    links,
                },
            );
            return output;
        }
        out.into()
    }

    /// Encodes for the client; identity passes the bytes on without a copy.
    fn encode(&mut self, bytes: Bytes) -> Bytes {
        match self.encoder.as_mut() {
            Some(Encoder::Identity) => bytes,
            Some(e) => e.write(&bytes).into(),
            None => Bytes::new(),
        }
    }

    /// Sizes the reservation for the br window `first` (a stream's first byte) declares:
    /// `false` when it does not fit and the bytes can pass as they came (the client takes
    /// br); a client that needs them decoded gets them decoded over the budget.
    fn fit_window(&mut self, first: u8) -> bool {
        // An invalid header: the decoder refuses the stream, nothing more to hold.
        let (Some(codec), Some(bits)) = (&self.codec, br_window_bits(first)) else {
            return true;
        };
        let need = Coding::Br.decoder_memory(bits) + self.encode.encoder_memory();
        if self.encode == Coding::Br {
            return codec.resize(need);
        }
        codec.force(need);
        true
    }

    /// The codecs are done: their share of the budget goes back.
    fn release(&mut self) {
        if let Some(codec) = self.codec.take() {
            codec.resize(0);
        }
    }

    fn decode_failed(&mut self, e: &std::io::Error) {
        self.decoder = None;
        Metrics::inc(&self.metrics.https_rewrites_decode_errors);
        tracing::warn!(
            "https_rewrites: the backend's body is not valid in its Content-Encoding ({e}); the response ends here"
        );
    }
}

impl BodyFilter for RewriteBody {
    fn chunk(&mut self, chunk: Bytes) -> Bytes {
        if self.verbatim {
            return chunk;
        }
        if let (true, Some(&first)) = (self.window_unknown, chunk.first()) {
            self.window_unknown = false;
            if !self.fit_window(first) {
                // Nothing was decoded yet: the whole stream passes as it came, in the coding
                // the client takes.
                self.verbatim = true;
                self.decoder = None;
                self.encoder = None;
                self.release();
                Metrics::inc(&self.metrics.https_rewrites_passed_codec_memory);
                return chunk;
            }
        }
        match self.decoder.as_mut() {
            None => Bytes::new(),
            // Identity: no copy.
            Some(Decoder::Identity) => {
                let html = self.rewrite(&chunk);
                if html.is_empty() {
                    return Bytes::new();
                }
                self.encode(html.into())
            }
            // Decoded in steps of DECODE_STEP ([`BodyFilter::more`]).
            Some(d) => {
                d.push(&chunk);
                self.more()
            }
        }
    }

    fn more(&mut self) -> Bytes {
        while self.pending_at < self.pending.len() {
            let html = self.next_pending();
            if !html.is_empty() {
                return self.encode(html.into());
            }
        }
        loop {
            let step = match self.decoder.as_mut() {
                None | Some(Decoder::Identity) => return Bytes::new(),
                Some(d) => d.pull(DECODE_STEP),
            };
            match step {
                Ok(decoded) if decoded.is_empty() => return Bytes::new(),
                Ok(decoded) => {
                    let html = self.rewrite(&decoded);
                    if !html.is_empty() {
                        return self.encode(html.into());
                    }
                    // Held for the cache: decode on.
                }
                Err(e) => {
                    self.decode_failed(&e);
                    return Bytes::new();
                }
            }
        }
    }

    fn end(&mut self) -> Bytes {
        if self.verbatim {
            return Bytes::new();
        }
        // `more` ran dry before the end, so nothing is pending; flushed anyway.
        let mut html = self.flush_pending();
        if let Some(mut d) = self.decoder.take() {
            // Everything pushed was pulled (`more` ran dry): the rest is the stream's end.
            d.end_input();
            loop {
                match d.pull(DECODE_STEP) {
                    Ok(rest) if rest.is_empty() => break,
                    Ok(rest) => {
                        html.extend(self.rewrite(&rest));
                        html.extend(self.flush_pending());
                    }
                    Err(e) => {
                        self.decode_failed(&e);
                        break;
                    }
                }
            }
        }
        let html: Bytes = if self.raw {
            // Passed as it came.
            html.into()
        } else if let Some(held) = self.held.take() {
            // `html` is empty: a held document's bytes are all in `held`.
            self.finish_held(held)
        } else {
            html.extend(self.html().end());
            html.into()
        };
        let out = self.encode(html);
        let out = match self.encoder.take() {
            Some(e) => {
                let tail = e.finish();
                if tail.is_empty() {
                    out
                } else {
                    [&out[..], &tail[..]].concat().into()
                }
            }
            None => out,
        };
        self.release();
        out
    }
}

impl Drop for RewriteBody {
    fn drop(&mut self) {
        self.release();
        let m = &self.metrics;
        if !self.verbatim {
            Metrics::inc(&m.https_rewrites_responses);
        }
        let links = self.cached_links + self.html.as_ref().map_or(0, |h| h.links());
        m.https_rewrites_links
            .fetch_add(links, std::sync::atomic::Ordering::Relaxed);
        if self.html.as_ref().and_then(|h| h.passed()) == Some(PassReason::Memory) {
            Metrics::inc(&m.https_rewrites_passed_memory);
        }
    }
}

/// Whether `Vary` lists `name` (or `*`).
fn vary_has(h: &HeaderMap, name: &str) -> bool {
    h.get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case(name))
}
