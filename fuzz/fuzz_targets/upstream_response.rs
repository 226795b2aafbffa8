//! Arbitrary bytes as a backend's response on the direct upstream path (`proxy::h1`: the
//! response head, its framing, a chunked body and its trailers), read once whole and once in
//! pieces of sizes the input's first bytes choose, as a request to `GET` and to `HEAD`.
//!
//! It never panics, and:
//! - the outcome does not depend on how the bytes were split into reads (the head, its
//!   framing, whether the connection persists, the decoded body and trailers, the error);
//! - a head never keeps both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3);
//! - a response to `HEAD` has no body, and `Close` framing never persists;
//! - a decoded chunked body is never longer than the bytes it came from.
#![no_main]

use force_https::fuzzing::upstream_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pieces, bytes) = data.split_at(data.len().min(4));
    for head_request in [false, true] {
        let whole = upstream_response(bytes, head_request, &[255]);
        let split = upstream_response(bytes, head_request, pieces);
        let one = upstream_response(bytes, head_request, &[1]);
        assert_eq!(whole, split, "split as {pieces:?}");
        assert_eq!(whole, one, "split byte by byte");
        assert!(!whole.both_lengths);
        if head_request && whole.framing.is_some() {
            assert_eq!(whole.framing.as_deref(), Some("Empty"));
        }
        if whole.framing.as_deref() == Some("Close") {
            assert!(!whole.keep_alive);
        }
        if let Some(Ok((body, _))) = &whole.chunked {
            assert!(body.len() <= bytes.len());
        }
    }
});
