//! Arbitrary bytes as the first request of a port-80 connection, answered by
//! `paths::http80::first::first_request` with the sites of `common/sites.rs`, once with the defaults
//! and once with `https_port = 8443`, a `default_host` and `max_head_bytes = 512`.
//!
//! It never panics, and:
//! - every answer is one complete HTTP/1.1 response (status line, `Name: value` fields,
//!   `Content-Length` equal to the body), with no `Strict-Transport-Security`;
//! - a `Location` is `https://HOST[:8443]PATH` with the request's normalized host and a PATH
//!   of URI bytes only (`force_https_common::uri`), every `%` starting a `%XX` triplet;
//! - a redirect only for an enforced host, never for an exempt path or `OPTIONS *`; 301 for
//!   GET/HEAD and 308 otherwise with `redirect_code = "auto"`, else the configured code;
//! - 200 only for `OPTIONS *` to an enforced host; 404 only without a usable entry; the proxy
//!   only for a host with a backend that is not redirected;
//! - "read more" only while fewer than `max_head_bytes` bytes have arrived.
#![no_main]

use force_https::fuzzing::{FirstOutcome, first_request};
use force_https_common::uri::{is_hex_digit, is_uri_path_byte};
use libfuzzer_sys::fuzz_target;

include!("../common/sites.rs");

struct Setup {
    config: String,
    https_port: u16,
    max_head: usize,
}

fn setups() -> &'static [Setup; 2] {
    static S: std::sync::OnceLock<[Setup; 2]> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        [
            Setup {
                config: SITES.to_string(),
                https_port: 443,
                max_head: 16 * 1024,
            },
            Setup {
                config: format!(
                    "[redirect]\nhttps_port = 8443\ndefault_host = \"Shop.Example.com\"\n\
                     [limits]\nmax_head_bytes = 512\n{SITES}"
                ),
                https_port: 8443,
                max_head: 512,
            },
        ]
    })
}

/// Status, fields and body of a response; panics when it is not one complete response.
fn split_response(r: &[u8]) -> (u16, Vec<(&str, &str)>, &[u8]) {
    let end = r
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = std::str::from_utf8(&r[..end]).expect("an ASCII head");
    let body = &r[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let (code, reason) = rest.split_at(3);
    let code: u16 = code.parse().expect("a 3-digit status");
    assert!(
        reason.starts_with(' ') && reason.len() > 1,
        "{status_line:?}"
    );
    let fields: Vec<(&str, &str)> = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap_or_else(|| panic!("field {l:?}"));
            assert!(!n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)), "value {v:?}");
            (n, v)
        })
        .collect();
    let len: Vec<_> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .collect();
    assert_eq!(len.len(), 1, "one Content-Length");
    assert_eq!(
        len[0].1.parse::<usize>().ok(),
        Some(body.len()),
        "Content-Length"
    );
    assert!(
        !fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("strict-transport-security")),
        "HSTS on port 80"
    );
    (code, fields, body)
}

fn check_path(path: &[u8]) {
    assert!(path.starts_with(b"/"), "{path:?}");
    for (i, &b) in path.iter().enumerate() {
        assert!(is_uri_path_byte(b), "{b:#x} in {path:?}");
        if b == b'%' {
            assert!(
                path.get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(|&d| is_hex_digit(d))),
                "lone % in {path:?}"
            );
        }
    }
}

fn check(s: &Setup, data: &[u8], o: &FirstOutcome) {
    let Some(answer) = &o.answer else {
        if o.proxied {
            let r = o.request.as_ref().expect("a proxied request parses");
            let e = r.entry.as_ref().expect("a proxied host has an entry");
            assert!(e.has_backend);
            assert!(!e.enforced || (e.exempt && !r.asterisk));
        } else {
            assert!(o.request.is_none());
            assert!(
                data.len() < s.max_head,
                "read more after {} bytes",
                data.len()
            );
        }
        return;
    };
    let (code, fields, body) = split_response(answer);
    let location = fields
        .iter()
        .find(|(n, _)| *n == "Location")
        .map(|(_, v)| *v);
    assert_eq!(location.is_some(), matches!(code, 301 | 308));
    let r = o.request.as_ref();
    let entry = r.and_then(|r| r.entry.as_ref());
    match code {
        301 | 308 => {
            let (r, e) = (r.expect("parsed"), entry.expect("an entry"));
            assert!(e.enforced && !e.exempt && !r.asterisk);
            assert!(body.is_empty());
            let want = match e.redirect_code {
                "auto" if matches!(&r.method[..], b"GET" | b"HEAD") => 301,
                "auto" => 308,
                "301" => 301,
                _ => 308,
            };
            assert_eq!(code, want, "method {:?}", r.method);
            let port = if s.https_port == 443 {
                String::new()
            } else {
                format!(":{}", s.https_port)
            };
            let prefix = format!("https://{}{port}", r.host);
            let location = location.expect("Location");
            let path = location
                .strip_prefix(prefix.as_str())
                .unwrap_or_else(|| panic!("{location:?} for {prefix:?}"));
            check_path(path.as_bytes());
        }
        200 => {
            let (r, e) = (r.expect("parsed"), entry.expect("an entry"));
            assert!(r.asterisk && e.enforced);
            assert!(fields.iter().any(|(n, _)| *n == "Allow"));
        }
        404 => {
            let r = r.expect("parsed");
            if let Some(e) = &r.entry {
                assert!(!e.has_backend && (!e.enforced || e.exempt || r.asterisk));
            }
        }
        400 => {
            if let Some(r) = r {
                // Only a redirect that cannot be built: control bytes in the target.
                let e = r.entry.as_ref().expect("an entry");
                assert!(e.enforced && !e.exempt);
                assert!(r.path_and_query.iter().any(|&b| b <= 0x20 || b == 0x7f));
            }
        }
        414 => assert!(r.is_none() && data.len() >= s.max_head),
        431 => assert!(r.is_none()),
        other => panic!("status {other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    for s in setups() {
        let o = first_request(&s.config, data).expect("the fuzz config is valid");
        check(s, data, &o);
    }
});
