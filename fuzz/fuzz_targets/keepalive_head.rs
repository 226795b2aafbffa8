//! Arbitrary bytes as a client's request on a keep-alive connection (`keepalive::wire`): the
//! head parsed as the loop parses it, whole and as growing prefixes, and a response head
//! written with the request's fields in both listeners' styles.
//!
//! It never panics, and:
//! - a prefix that is not `Partial` decides as the whole input does;
//! - a request takes exactly its head out of the buffer and leaves the rest as it was; any
//!   other outcome leaves the buffer as it was;
//! - a served request is a `GET` or `HEAD` with an origin-form target;
//! - a written head starts with the status line and ends with the empty line, and holds
//!   no bare CR or LF inside a line.
#![no_main]

use force_https::fuzzing::keepalive_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (limit, bytes) = data.split_first().map_or((0, data), |(l, b)| (*l, b));
    let max_head = 16 + usize::from(limit) * 8;
    let read = keepalive_head(bytes, max_head);
    assert_ne!(read.outcome, "prefix disagrees");
    assert!(read.rest_intact);
    match read.outcome {
        "request" => assert!(read.consumed > 0 && read.consumed <= max_head),
        _ => assert_eq!(read.consumed, 0),
    }
    if let Some((method, target, _, _)) = &read.request {
        assert!(method == "GET" || method == "HEAD");
        assert!(target.starts_with('/'));
        for head in read.heads.iter().flatten() {
            assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
            assert!(head.ends_with(b"\r\n\r\n"));
            for line in head[..head.len() - 4].split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(!line.contains(&b'\r'));
            }
        }
    }
});
