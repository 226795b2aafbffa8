//! The response-filter chain of the proxy (the pingora model): every response the proxy
//! service sends, from a backend or made by force-https itself, passes each filter's
//! [`ResponseFilter::response_head`] in order; a filter may replace the whole response (the
//! chain then runs again on the replacement, from the first filter). A filter that wants the
//! body returns a [`BodyFilter`], which then sees every data chunk and the end of the stream
//! (trailers pass through after the filter's last bytes). A streaming rewriter fits here.
//!
//! Filters, in order: [`hsts::Hsts`], [`loop_guard::LoopGuard`], [`csp::CspUpgrade`],
//! [`https_rewrites::HttpsRewrites`].

pub mod codec_budget;
pub mod csp;
pub mod hsts;
pub mod https_rewrites;
pub mod loop_guard;
pub mod rewrite_cache;

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{
    body::{Body as HttpBody, Frame, SizeHint},
    http::response::Parts,
};

use super::{Body, ConnInfo};
use crate::{
    config::ProxyConfig,
    edge::Settings,
    metrics::Metrics,
    policy::{HostEntry, PolicyTable},
};

/// Where a response comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The site's backend.
    Upstream,
    /// force-https itself (an error, a redirect, a local answer).
    Local,
}

/// The request a backend answered.
#[derive(Debug, Clone, Copy)]
pub struct Requested<'a> {
    /// Its host, normalized.
    pub host: &'a str,
    /// Its path and query as received.
    pub path_and_query: &'a str,
    /// Its method.
    pub method: &'a hyper::Method,
    /// Its `Accept-Encoding` field (the client's, as received), if any.
    pub accept_encoding: Option<&'a str>,
}

/// What a filter knows about the exchange.
pub struct FilterCtx<'a> {
    /// The client connection.
    pub conn: ConnInfo,
    /// The host entry of the request, when its host is in the policy table.
    pub entry: Option<&'a Arc<HostEntry>>,
    /// The edge's settings.
    pub settings: &'a Settings,
    /// Counters.
    pub metrics: &'a Arc<Metrics>,
    /// The policy table when the response arrived (which hosts are enforced now).
    pub table: Option<&'a Arc<PolicyTable>>,
    /// Who made the response.
    pub origin: Origin,
    /// The request, for a response from a backend.
    pub request: Option<Requested<'a>>,
}

/// What a head filter decided.
pub enum Verdict {
    /// Go on with the (possibly changed) head.
    Continue,
    /// Send this response instead (force-https's own): the chain runs again on it.
    Replace(hyper::Response<Body>),
}

/// A filter of response heads, and optionally of bodies.
pub trait ResponseFilter: Send + Sync {
    /// Changes the response head before it is sent, or replaces the response.
    fn response_head(&self, ctx: &FilterCtx<'_>, head: &mut Parts) -> Verdict;

    /// A filter for this response's body, if it wants to see it (after
    /// [`ResponseFilter::response_head`] of every filter ran).
    fn body(&self, _ctx: &FilterCtx<'_>, _head: &Parts) -> Option<Box<dyn BodyFilter>> {
        None
    }
}

/// A streaming transformation of one response body.
pub trait BodyFilter: Send {
    /// Transforms one data chunk; may return fewer bytes (holding some back) or none.
    fn chunk(&mut self, chunk: Bytes) -> Bytes;
    /// Output still due from the last chunk: a filter whose output per chunk is not bounded
    /// by the chunk (a decoder: compressed input may expand a thousandfold) returns it in
    /// steps here. Called until it returns nothing, before the next chunk and the end.
    fn more(&mut self) -> Bytes {
        Bytes::new()
    }
    /// The end of the stream: whatever is still held back.
    fn end(&mut self) -> Bytes;
}

/// The filters of the proxy, in order.
#[derive(Default)]
pub struct Chain {
    filters: Vec<Box<dyn ResponseFilter>>,
}

impl Chain {
    /// The standard chain: HSTS, the redirect-loop guard, the CSP upgrade, Automatic HTTPS
    /// Rewrites (its codecs within `[proxy] https_rewrites_codec_memory_bytes`, shown in
    /// `metrics`).
    pub fn standard(cfg: &ProxyConfig, metrics: Arc<Metrics>) -> Chain {
        Chain {
            filters: vec![
                Box::new(hsts::Hsts),
                Box::new(loop_guard::LoopGuard::default()),
                Box::new(csp::CspUpgrade),
                Box::new(https_rewrites::HttpsRewrites::new(
                    codec_budget::CodecBudget::new(cfg.https_rewrites_codec_memory_bytes, metrics),
                )),
            ],
        }
    }

    /// A chain of the given filters.
    #[cfg(test)]
    pub fn new(filters: Vec<Box<dyn ResponseFilter>>) -> Chain {
        Chain { filters }
    }

    /// Runs every filter over `resp`: heads in order, then the body through the body filters
    /// that asked for it (the body is untouched when none did).
    pub fn apply(&self, ctx: &FilterCtx<'_>, resp: hyper::Response<Body>) -> hyper::Response<Body> {
        let (mut head, mut body) = resp.into_parts();
        let mut i = 0;
        let mut replaced = false;
        let local = FilterCtx {
            conn: ctx.conn.clone(),
            origin: Origin::Local,
            request: None,
            ..*ctx
        };
        let mut ctx = ctx;
        while let Some(f) = self.filters.get(i) {
            i += 1;
            match f.response_head(ctx, &mut head) {
                Verdict::Continue => {}
                // One replacement at most, so the chain always ends.
                Verdict::Replace(r) if !replaced => {
                    replaced = true;
                    (head, body) = r.into_parts();
                    ctx = &local;
                    i = 0;
                }
                Verdict::Replace(_) => {}
            }
        }
        let body_filters: Vec<Box<dyn BodyFilter>> = self
            .filters
            .iter()
            .filter_map(|f| f.body(ctx, &head))
            .collect();
        if body_filters.is_empty() {
            return hyper::Response::from_parts(head, body);
        }
        // A body filter may change the length: the body goes out chunked (HTTP/1.1) or
        // without a length (HTTP/2).
        head.headers.remove(hyper::header::CONTENT_LENGTH);
        let filtered = Filtered {
            inner: body,
            pending: Bytes::new(),
            filters: body_filters,
            draining: false,
            trailers: None,
            done: false,
        };
        hyper::Response::from_parts(head, filtered.boxed_unsync())
    }
}

/// The most input bytes body filters get at once: a larger frame is cut, so what a filter
/// produces per poll (and holds while the client reads it) stays small.
const FILTER_SLICE: usize = 16 * 1024;

/// A body passed through body filters.
struct Filtered {
    inner: Body,
    /// The rest of an input frame larger than [`FILTER_SLICE`].
    pending: Bytes,
    filters: Vec<Box<dyn BodyFilter>>,
    /// A filter may still have output due ([`BodyFilter::more`]).
    draining: bool,
    /// Trailers held until the filters' last bytes are out.
    trailers: Option<Frame<Bytes>>,
    done: bool,
}

impl Filtered {
    fn through(&mut self, data: Bytes) -> Bytes {
        self.draining = true;
        self.through_from(0, data)
    }

    /// `data` through the filters from the `first` on.
    fn through_from(&mut self, first: usize, mut data: Bytes) -> Bytes {
        for f in self.filters.iter_mut().skip(first) {
            data = f.chunk(data);
        }
        data
    }

    /// The next output a filter still owes, through the filters after it: the last filter's
    /// first (it is earlier in the stream). `None` when none owes anything.
    fn drain(&mut self) -> Option<Bytes> {
        for i in (0..self.filters.len()).rev() {
            let more = self.filters[i].more();
            if !more.is_empty() {
                return Some(self.through_from(i + 1, more));
            }
        }
        self.draining = false;
        None
    }

    /// The end of the stream: each filter gets what the filters before it still emitted,
    /// then gives up what it held back.
    fn finish(&mut self) -> Bytes {
        let mut carry = Bytes::new();
        for f in &mut self.filters {
            let passed = if carry.is_empty() {
                Bytes::new()
            } else {
                let mut passed = f.chunk(carry).to_vec();
                loop {
                    let more = f.more();
                    if more.is_empty() {
                        break;
                    }
                    passed.extend_from_slice(&more);
                }
                Bytes::from(passed)
            };
            let end = f.end();
            carry = if end.is_empty() {
                passed
            } else if passed.is_empty() {
                end
            } else {
                [passed, end].concat().into()
            };
        }
        carry
    }
}

impl HttpBody for Filtered {
    type Data = Bytes;
    type Error = super::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::BoxError>>> {
        loop {
            if let Some(t) = self.trailers.take() {
                return Poll::Ready(Some(Ok(t)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            if self.draining {
                if let Some(out) = self.drain()
                    && !out.is_empty()
                {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                continue;
            }
            if !self.pending.is_empty() {
                let n = self.pending.len().min(FILTER_SLICE);
                let piece = self.pending.split_to(n);
                let out = self.through(piece);
                if !out.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                continue;
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        if data.len() > FILTER_SLICE {
                            self.pending = data.split_off(FILTER_SLICE);
                        }
                        let out = self.through(data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => {
                        self.done = true;
                        let out = self.finish();
                        if out.is_empty() {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        self.trailers = Some(trailers);
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Poll::Ready(None) => {
                    self.done = true;
                    let out = self.finish();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not before the filters had their end: they may still have bytes to give.
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // A filter may change the length.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Config, edge::Settings, policy::Scheme};
    use http_body_util::BodyExt;
    use std::sync::Mutex;

    /// Upper-cases and holds the last byte of each chunk back until the next one or the end,
    /// and records what it saw.
    struct Shout {
        held: Option<u8>,
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl BodyFilter for Shout {
        fn chunk(&mut self, chunk: Bytes) -> Bytes {
            self.seen
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&chunk).into_owned());
            let mut v: Vec<u8> = self.held.take().into_iter().collect();
            v.extend(chunk.to_ascii_uppercase());
            self.held = v.pop();
            v.into()
        }
        fn end(&mut self) -> Bytes {
            self.seen.lock().unwrap().push("<end>".into());
            self.held.take().map(|b| vec![b]).unwrap_or_default().into()
        }
    }

    struct ShoutFilter(Arc<Mutex<Vec<String>>>);

    impl ResponseFilter for ShoutFilter {
        fn response_head(&self, _: &FilterCtx<'_>, head: &mut Parts) -> Verdict {
            head.headers.insert("x-shout", "1".parse().unwrap());
            Verdict::Continue
        }
        fn body(&self, _: &FilterCtx<'_>, _: &Parts) -> Option<Box<dyn BodyFilter>> {
            Some(Box::new(Shout {
                held: None,
                seen: self.0.clone(),
            }))
        }
    }

    #[tokio::test]
    async fn body_filters_see_every_chunk_the_end_and_keep_trailers() {
        let cfg = Config::from_toml(std::path::Path::new("t.toml"), "").unwrap();
        let settings = Settings::from_config(&cfg);
        let metrics = Arc::new(Metrics::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let chain = Chain::new(vec![Box::new(ShoutFilter(seen.clone()))]);
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("x-sum", "7".parse().unwrap());
        let body: Body = Frames(
            [
                Frame::data(Bytes::from_static(b"ab")),
                Frame::data(Bytes::from_static(b"c")),
                Frame::trailers(trailers),
            ]
            .into(),
        )
        .boxed_unsync();
        let ctx = upstream_ctx(&settings, &metrics);
        assert_eq!(ctx.conn.scheme, Scheme::Http);
        let mut resp = hyper::Response::new(body);
        resp.headers_mut()
            .insert(hyper::header::CONTENT_LENGTH, "3".parse().unwrap());
        let resp = chain.apply(&ctx, resp);
        assert_eq!(resp.headers()["x-shout"], "1");
        // The filter may change the length: no Content-Length any more.
        assert!(!resp.headers().contains_key(hyper::header::CONTENT_LENGTH));
        let collected = resp.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-sum"], "7");
        assert_eq!(&collected.to_bytes()[..], b"ABC");
        assert_eq!(*seen.lock().unwrap(), ["ab", "c", "<end>"]);
    }

    /// Gives each chunk back three times: once from `chunk`, twice from `more` (the way a
    /// decoder hands out a large expansion in steps).
    struct Thrice {
        due: Vec<Bytes>,
    }

    impl BodyFilter for Thrice {
        fn chunk(&mut self, chunk: Bytes) -> Bytes {
            self.due = vec![chunk.clone(), chunk.clone()];
            chunk
        }
        fn more(&mut self) -> Bytes {
            self.due.pop().unwrap_or_default()
        }
        fn end(&mut self) -> Bytes {
            Bytes::new()
        }
    }

    struct ThriceFilter;

    impl ResponseFilter for ThriceFilter {
        fn response_head(&self, _: &FilterCtx<'_>, _: &mut Parts) -> Verdict {
            Verdict::Continue
        }
        fn body(&self, _: &FilterCtx<'_>, _: &Parts) -> Option<Box<dyn BodyFilter>> {
            Some(Box::new(Thrice { due: Vec::new() }))
        }
    }

    #[tokio::test]
    async fn output_due_in_steps_reaches_the_next_filters_in_order() {
        let cfg = Config::from_toml(std::path::Path::new("t.toml"), "").unwrap();
        let settings = Settings::from_config(&cfg);
        let metrics = Arc::new(Metrics::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let chain = Chain::new(vec![
            Box::new(ThriceFilter),
            Box::new(ShoutFilter(seen.clone())),
        ]);
        let body: Body = Frames(
            [
                Frame::data(Bytes::from_static(b"ab")),
                Frame::data(Bytes::from_static(b"c")),
            ]
            .into(),
        )
        .boxed_unsync();
        let ctx = upstream_ctx(&settings, &metrics);
        let resp = chain.apply(&ctx, hyper::Response::new(body));
        let mut body = resp.into_body();
        let mut frames = Vec::new();
        while let Some(f) = body.frame().await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        assert_eq!(frames.concat(), b"ABABABCCC");
        // One frame per step, never one for the whole expansion.
        assert!(frames.iter().all(|f| f.len() <= 2), "{frames:?}");
        assert_eq!(
            *seen.lock().unwrap(),
            ["ab", "ab", "ab", "c", "c", "c", "<end>"]
        );
    }

    /// The context of a response from a backend to a plain-HTTP request.
    fn upstream_ctx<'a>(settings: &'a Settings, metrics: &'a Arc<Metrics>) -> FilterCtx<'a> {
        FilterCtx {
            conn: super::super::ConnInfo::http("198.51.100.2:1".parse().unwrap(), 80),
            entry: None,
            settings,
            metrics,
            origin: Origin::Upstream,
            request: None,
            table: None,
        }
    }

    /// A body of ready frames.
    struct Frames(std::collections::VecDeque<Frame<Bytes>>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = crate::proxy::BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, crate::proxy::BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }
}
