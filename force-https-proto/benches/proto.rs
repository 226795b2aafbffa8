//! Micro-benchmarks of the pure per-request functions of `force-https-proto`, the work both
//! the socket path and the AF_XDP fast path do for every port-80 request:
//!
//! - `response/*`: building redirect bytes. `RedirectPrefix::write` (the per-request,
//!   allocation-free completion with the path) for a root, a typical and a long path, and a
//!   path with UTF-8 that is percent-encoded;
//!   `RedirectPrefix::new` (once per status, host and HTTPS port) and the allocating
//!   `redirect()` convenience for comparison.
//! - `head/parse_head/*`: the httparse-based head parser on three realistic heads: a
//!   minimal curl head (78 bytes), a typical browser GET (396 bytes: Host, User-Agent,
//!   Accept, Accept-Language, Accept-Encoding, Connection, ...) and the browser's headers
//!   under a 990-byte path with query (1,346 bytes).
//! - `head/to_response/*`: the whole socket-path computation on those heads, request bytes to
//!   response bytes: `parse_head`, `redirect_inputs`, `normalize_into`, `for_method`,
//!   `RedirectPrefix::write`.
//! - `host/*`: `parse_authority` + `normalize_into` of a `Host` value (name, name with port
//!   and trailing dot, IPv6 literal with port).
//! - `frame/*`: the AF_XDP frame code on an Ethernet/IPv4 and an Ethernet/IPv6 frame carrying
//!   the browser head, with the TCP timestamp option: `parse` alone; `rewrite` =
//!   `parse` + `answer_in_place` with a fixed redirect (address/port swaps, TCP options,
//!   IPv4 header and TCP checksums); `respond` = what the responder does per frame minus the
//!   policy lookup (copy the payload out, parse the head, `redirect_inputs`,
//!   `normalize_into`, rewrite). The frame is rewritten in place, so every iteration gets a
//!   fresh copy of the request frame from an untimed setup (`iter_batched_ref`).
//!
//! Run with `cargo bench -p force-https-proto` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a short run). Inputs are checked once before measuring, so every benchmark measures
//! the success path.
// A benchmark harness, not production code: its fixed inputs may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use force_https_proto::frame::{self, TH_ACK, TH_PSH};
use force_https_proto::head::{HeadStatus, parse_head, redirect_inputs};
use force_https_proto::host::{MAX_HOST_LEN, normalize_into, parse_authority};
use force_https_proto::response::{
    RedirectCode, RedirectPrefix, RedirectStatus, for_method, redirect,
};

/// The head size limit the daemon uses by default.
const MAX_HEAD: usize = 16 * 1024;

/// A minimal `curl http://www.example.com/` head.
const CURL: &[u8] =
    b"GET / HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// A typical browser navigation (Firefox on Linux), ~400 bytes.
const BROWSER: &[u8] = b"GET /docs/getting-started/index.html?lang=en HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Priority: u=0, i\r\n\
\r\n";

/// A ~1 KiB request-target (tracking parameters), with the browser's headers.
fn long_path() -> Vec<u8> {
    format!(
        "/campaigns/2024/spring/landing-page/products/category/subcategory/item?{}",
        (0..40)
            .map(|i| format!("utm_param_{i:02}=value{i:04}"))
            .collect::<Vec<_>>()
            .join("&")
    )
    .into_bytes()
}

fn long_path_head() -> Vec<u8> {
    let browser = std::str::from_utf8(BROWSER).expect("ASCII");
    let (_, rest) = browser.split_once(" HTTP/1.1").expect("request line");
    let path = String::from_utf8(long_path()).expect("ASCII");
    format!("GET {path} HTTP/1.1{rest}").into_bytes()
}

/// The socket path's computation, request bytes to response bytes; returns the length.
fn to_response(req: &[u8], out: &mut [u8]) -> usize {
    let HeadStatus::Complete(head) = parse_head(req, MAX_HEAD) else {
        return 0;
    };
    let Ok(rt) = redirect_inputs(&head, None) else {
        return 0;
    };
    let mut host = [0u8; MAX_HOST_LEN];
    let Ok(n) = normalize_into(&rt.authority, &mut host) else {
        return 0;
    };
    let Ok(host) = std::str::from_utf8(host.get(..n).unwrap_or_default()) else {
        return 0;
    };
    // The daemon looks the prefix up by (status, host); here every head has the same host,
    // so the lookup is a constant and the normalized host is only kept alive.
    black_box(host);
    let status = for_method(head.method.as_bytes(), RedirectCode::Auto);
    prefix_for(status)
        .write(rt.path_and_query, out)
        .unwrap_or(0)
}

/// The prefixes the daemon caches, for `www.example.com` (the host of every bench head).
fn prefix_for(status: RedirectStatus) -> &'static RedirectPrefix {
    static PREFIXES: std::sync::OnceLock<[RedirectPrefix; 2]> = std::sync::OnceLock::new();
    let p = PREFIXES.get_or_init(|| {
        [
            RedirectPrefix::new(RedirectStatus::Moved301, "www.example.com", 443),
            RedirectPrefix::new(RedirectStatus::Permanent308, "www.example.com", 443),
        ]
    });
    match status {
        RedirectStatus::Moved301 => &p[0],
        RedirectStatus::Permanent308 => &p[1],
    }
}

fn heads() -> [(&'static str, Vec<u8>); 3] {
    [
        ("curl", CURL.to_vec()),
        ("browser", BROWSER.to_vec()),
        ("long_path", long_path_head()),
    ]
}

fn bench_response(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    let prefix = RedirectPrefix::new(RedirectStatus::Moved301, "www.example.com", 443);
    let long = long_path();
    let paths: [(&str, &[u8]); 4] = [
        ("root", b"/"),
        ("typical", b"/docs/getting-started/index.html?lang=en"),
        ("long", &long),
        // UTF-8 in path and query: every non-ASCII byte is percent-encoded
        (
            "encoded",
            "/de/stra\u{df}e/\u{fc}ber-uns?q=caf\u{e9}".as_bytes(),
        ),
    ];
    let mut out = vec![0u8; 4096];
    for (name, path) in paths {
        assert!(prefix.write(path, &mut out).is_some(), "{name}");
        g.bench_with_input(BenchmarkId::new("write", name), path, |b, path| {
            b.iter(|| prefix.write(black_box(path), black_box(&mut out[..])))
        });
    }
    g.bench_function("prefix_new", |b| {
        b.iter(|| {
            RedirectPrefix::new(
                black_box(RedirectStatus::Permanent308),
                black_box("www.example.com"),
                black_box(8443),
            )
        })
    });
    g.bench_function("redirect_alloc/typical", |b| {
        b.iter(|| {
            redirect(
                black_box(RedirectStatus::Moved301),
                black_box("www.example.com"),
                black_box(443),
                black_box(b"/docs/getting-started/index.html?lang=en"),
            )
        })
    });
    g.finish();
}

fn bench_head(c: &mut Criterion) {
    let mut g = c.benchmark_group("head");
    let heads = heads();
    let mut out = vec![0u8; 4096];
    for (name, req) in &heads {
        assert!(
            matches!(parse_head(req, MAX_HEAD), HeadStatus::Complete(h) if h.head_len == req.len()),
            "{name}"
        );
        assert!(to_response(req, &mut out) > 0, "{name}");
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse_head", name), req, |b, req| {
            b.iter(|| parse_head(black_box(req), MAX_HEAD))
        });
        g.bench_with_input(BenchmarkId::new("to_response", name), req, |b, req| {
            b.iter(|| to_response(black_box(req), black_box(&mut out[..])))
        });
    }
    g.finish();
}

fn bench_host(c: &mut Criterion) {
    let mut g = c.benchmark_group("host");
    let values: [(&str, &[u8]); 3] = [
        ("name", b"www.example.com"),
        ("name_port_dot", b"WWW.Example.COM.:80"),
        ("ipv6_port", b"[2001:DB8::1]:80"),
    ];
    let mut out = [0u8; MAX_HOST_LEN];
    for (name, value) in values {
        assert!(parse_authority(value).is_ok(), "{name}");
        g.bench_with_input(
            BenchmarkId::new("parse_normalize", name),
            value,
            |b, value| {
                b.iter(|| {
                    parse_authority(black_box(value))
                        .ok()
                        .and_then(|a| normalize_into(&a, &mut out).ok())
                })
            },
        );
    }
    g.finish();
}

/// Builds a request frame in a 2048-byte UMEM-sized buffer: client 198.51.100.2:40000 (or
/// 2001:db8::2) to the server's port 80, NOP NOP + timestamp option, PSH|ACK, `payload`.
/// Mirrors the builder of `frame.rs`'s unit tests.
fn request_frame(ipv6: bool, payload: &[u8]) -> Vec<u8> {
    let opts: &[u8] = &[1, 1, 8, 10, 0, 0, 0, 7, 0xaa, 0xbb, 0xcc, 0xdd];
    let tcp_len = 20 + opts.len() + payload.len();
    let mut f = Vec::with_capacity(2048);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1]); // destination: the server
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2]); // source: the client
    if ipv6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        f.extend_from_slice(&[6, 63]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 63, 6, 0, 0]);
        f.extend_from_slice(&[198, 51, 100, 2, 198, 51, 100, 1]);
    }
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&80u16.to_be_bytes());
    f.extend_from_slice(&1000u32.to_be_bytes());
    f.extend_from_slice(&5000u32.to_be_bytes());
    f.push((((20 + opts.len()) / 4) as u8) << 4);
    f.push(TH_PSH | TH_ACK);
    f.extend_from_slice(&502u16.to_be_bytes());
    f.extend_from_slice(&[0xde, 0xad, 0, 0]); // partial checksum, as veth hands over
    f.extend_from_slice(opts);
    f.extend_from_slice(payload);
    f.resize(2048, 0);
    f
}

/// The responder's per-frame work minus the policy lookup; returns the answer's length.
fn respond(buf: &mut [u8], scratch: &mut [u8]) -> usize {
    let Ok(req) = frame::parse(buf) else {
        return 0;
    };
    let payload = req.payload(buf);
    let n = payload.len();
    let Some(dst) = scratch.get_mut(..n) else {
        return 0;
    };
    dst.copy_from_slice(payload);
    let head_bytes = scratch.get(..n).unwrap_or_default();
    let HeadStatus::Complete(head) = parse_head(head_bytes, MAX_HEAD) else {
        return 0;
    };
    let Ok(t) = redirect_inputs(&head, None) else {
        return 0;
    };
    let mut host = [0u8; MAX_HOST_LEN];
    let Ok(hl) = normalize_into(&t.authority, &mut host) else {
        return 0;
    };
    black_box(host.get(..hl));
    let prefix = prefix_for(for_method(head.method.as_bytes(), RedirectCode::Auto));
    frame::answer_in_place(buf, &req, |out| prefix.write(t.path_and_query, out)).unwrap_or(0)
}

fn bench_frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let prefix = prefix_for(RedirectStatus::Moved301);
    let path: &[u8] = b"/docs/getting-started/index.html?lang=en";
    let mut scratch = vec![0u8; 2048];
    for (name, ipv6) in [("ipv4", false), ("ipv6", true)] {
        let template = request_frame(ipv6, BROWSER);
        // Check the inputs: a valid answer on both paths.
        let mut f = template.clone();
        let req = frame::parse(&f).expect("request frame");
        let n =
            frame::answer_in_place(&mut f, &req, |out| prefix.write(path, out)).expect("answer");
        assert!(frame::checksums_ok(&f[..n]), "{name}");
        let mut f = template.clone();
        let m = respond(&mut f, &mut scratch);
        assert_eq!(m, n, "{name}");

        g.bench_with_input(BenchmarkId::new("parse", name), &template, |b, f| {
            b.iter(|| frame::parse(black_box(f)))
        });
        g.bench_function(BenchmarkId::new("rewrite", name), |b| {
            b.iter_batched_ref(
                || template.clone(),
                |f| {
                    let Ok(req) = frame::parse(f) else { return 0 };
                    frame::answer_in_place(f, &req, |out| prefix.write(black_box(path), out))
                        .unwrap_or(0)
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("respond", name), |b| {
            b.iter_batched_ref(
                || template.clone(),
                |f| respond(f, &mut scratch),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_response, bench_head, bench_host, bench_frame);
criterion_main!(benches);
