//! Arbitrary bytes as a request head: `parse_head`, `redirect_inputs`, host normalization and
//! the redirect builder never panic; a redirect is built for every accepted request that is
//! not asterisk-form (`OPTIONS *`) and whose path has no control bytes, and its `Location` is
//! a valid URI-reference: only bytes `force_https_common::uri::is_uri_path_byte` allows, every
//! `%` starting a `%XX` triplet (RFC 3986 §2.1, §3.3, §3.4).
#![no_main]

use force_https_common::uri::{is_hex_digit, is_uri_path_byte};
use force_https_proto::{
    head::{HeadStatus, parse_head, redirect_inputs},
    host::{MAX_HOST_LEN, normalize_into},
    response::{RedirectCode, RedirectPrefix, RedirectStatus, for_method},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for max in [64, 16 * 1024] {
        let HeadStatus::Complete(head) = parse_head(data, max) else {
            continue;
        };
        assert!(head.head_len <= data.len());
        for default_host in [None, Some(&b"default.example"[..])] {
            let Ok(t) = redirect_inputs(&head, default_host) else {
                continue;
            };
            let mut host = [0u8; MAX_HOST_LEN];
            let n = normalize_into(&t.authority, &mut host).expect("a validated host fits");
            let host = std::str::from_utf8(&host[..n]).expect("hosts are ASCII");
            assert!(!host.is_empty());
            assert!(!host.bytes().any(|b| b.is_ascii_uppercase()));
            let status = for_method(head.method.as_bytes(), RedirectCode::Auto);
            assert!(matches!(
                status,
                RedirectStatus::Moved301 | RedirectStatus::Permanent308
            ));
            let prefix = RedirectPrefix::new(status, host, 8443);
            let mut out = vec![0u8; prefix.response_len(t.path_and_query)];
            let written = prefix.write(t.path_and_query, &mut out);
            assert_eq!(t.is_asterisk, t.path_and_query == b"*");
            if t.is_asterisk {
                assert_eq!(head.method, "OPTIONS");
            }
            let clean = t.path_and_query.iter().all(|&b| b > 0x20 && b != 0x7f);
            assert_eq!(written.is_some(), clean && !t.is_asterisk);
            if let Some(len) = written {
                assert_eq!(len, out.len());
                assert!(out.ends_with(b"\r\n\r\n"));
                let location = &out[prefix.as_bytes().len()..len - 4];
                let path = location
                    .split(|&b| b == b'\r')
                    .next()
                    .expect("split yields one item");
                assert!(path.starts_with(b"/"));
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
        }
    }
});
