//! Backend faults and big bodies (conformance: "Hostile load and faults").
//!
//! Backend faults come from `fh-backend --fault by-path` (the path picks the fault, see its
//! module doc). Each fault is tried over port 80 (`blog`, not enforced, proxied), TLS h1 and
//! TLS h2 (`shop`, enforced: force-https's own 502/504 carry HSTS). The daemon must answer
//! 502 (reset before the head, garbage status line, 1 MiB of headers) or 504 (head dripped
//! slower than `[proxy] response_timeout_ms`), cut a body the backend resets short (connection
//! closed on h1, stream reset on h2: never a hang), keep running, give every descriptor back,
//! and keep serving through a backend that closes its kept-alive connections.
//!
//! Big bodies: 1 GiB up and 1 GiB down through the proxy on port 80, TLS h1 and TLS h2, streamed
//! from and to curl (`head -c N /dev/zero | curl -T -`, `-o /dev/null`), byte counts checked
//! end to end, the daemon's VmRSS sampled every 100 ms and kept under 64 MiB.
//! `FH_BIG_BODY_BYTES` overrides the size (default 1 GiB).

use std::{
    process::Output,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use fh_tests::serde_json::Value;
use fh_tests::*;

/// Enforced host, served over TLS (HSTS on every answer).
const SHOP: &str = "shop.example.test";
/// Host not enforced: proxied on port 80.
const BLOG: &str = "blog.example.test";
/// `[proxy] response_timeout_ms` of these tests.
const RESPONSE_TIMEOUT_MS: u64 = 500;
/// The HSTS value force-https adds by default.
const HSTS: &str = "max-age=31536000";
/// Bound on one fault request (curl `--max-time`): far above every expected answer time.
const FAULT_MAX_TIME: Duration = Duration::from_secs(10);
/// Ceiling on the daemon's resident memory during big transfers.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// The test edge: namespaces, one backend behind both sites, the daemon. Fields drop in
/// declaration order: the daemon first, the namespaces last.
struct Edge {
    d: Daemon,
    _backend: Backend,
    dir: tempfile::TempDir,
    ns: Netns,
}

impl Edge {
    /// `backend_args` are extra `fh-backend` arguments (`--fault by-path`).
    fn start(backend_args: &[&str]) -> Edge {
        let ns = Netns::new();
        let dir = tempfile::Builder::new()
            .prefix("fht-faults-")
            .tempdir()
            .expect("tempdir");
        let (cert, key) = self_signed(dir.path(), &[SHOP, BLOG]);
        let backend = Backend::start_with(&ns, "b", 0, backend_args);
        let url = backend.url();
        let cfg = Config::raw(&format!(
            r#"[listen]
http = ["0.0.0.0:80", "[::]:80"]
https = ["0.0.0.0:443", "[::]:443"]
[state]
dir = "{{STATE_DIR}}"
control_socket = "{{CONTROL_SOCKET}}"
[proxy]
response_timeout_ms = {RESPONSE_TIMEOUT_MS}
pool_idle_timeout_ms = 1000
[[site]]
name = "shop"
domains = ["{SHOP}"]
backend = "{url}"
force_https = true
tls = {{ cert = {cert}, key = {key} }}
[[site]]
name = "blog"
domains = ["{BLOG}"]
backend = "{url}"
tls = {{ cert = {cert}, key = {key} }}
"#,
            cert = toml_str(&cert),
            key = toml_str(&key),
        ));
        let d = Daemon::start(&ns, &cfg);
        // Raw configs are ready when the control socket answers; wait for the listeners too.
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                ns.edge_listening(80, false) && ns.edge_listening(443, false)
            }),
            "listeners not up"
        );
        Edge {
            d,
            _backend: backend,
            dir,
            ns,
        }
    }

    fn ca(&self) -> String {
        self.dir.path().join("edge.pem").display().to_string()
    }
}

/// The three client paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// Port 80, host not enforced, HTTP/1.1.
    Http80,
    /// TLS, enforced host, HTTP/1.1.
    H1,
    /// TLS, enforced host, HTTP/2.
    H2,
}

const VIAS: [Via; 3] = [Via::Http80, Via::H1, Via::H2];

impl Via {
    fn tls(self) -> bool {
        self != Via::Http80
    }

    /// curl arguments selecting this path, and the URL of `path`.
    fn curl_args(self, ca: &str, path: &str) -> Vec<String> {
        let (host, port, scheme) = match self {
            Via::Http80 => (BLOG, 80, "http"),
            Via::H1 | Via::H2 => (SHOP, 443, "https"),
        };
        let mut v = vec![
            "--resolve".to_string(),
            format!("{host}:{port}:{EDGE_V4}"),
            match self {
                Via::H2 => "--http2",
                _ => "--http1.1",
            }
            .into(),
        ];
        if self.tls() {
            v.push("--cacert".into());
            v.push(ca.into());
        }
        v.push(format!("{scheme}://{host}{path}"));
        v
    }
}

/// One curl exchange: exit code, status, head and body as received, time taken.
struct Fetched {
    code: i32,
    status: u16,
    head: String,
    body: Vec<u8>,
    elapsed: Duration,
    stderr: String,
}

impl Fetched {
    fn header(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "curl exit {} after {:?}, status {}, {} body bytes\n{}\n{}",
            self.code,
            self.elapsed,
            self.status,
            self.body.len(),
            self.head,
            self.stderr.trim()
        )
    }
}

/// `curl -sS -i` of `path` over `via` from the client namespace.
fn fetch(e: &Edge, via: Via, path: &str) -> Fetched {
    let mut args: Vec<String> = vec![
        "curl".into(),
        "-sS".into(),
        "-i".into(),
        "--max-time".into(),
        FAULT_MAX_TIME.as_secs().to_string(),
    ];
    args.extend(via.curl_args(&e.ca(), path));
    let start = Instant::now();
    let o = output_timeout(&mut e.ns.cli_cmd(&args), FAULT_MAX_TIME + CMD_TIMEOUT);
    parse_fetched(&o, start.elapsed())
}

fn parse_fetched(o: &Output, elapsed: Duration) -> Fetched {
    let out = &o.stdout;
    let (head, body) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => (
            String::from_utf8_lossy(&out[..p]).into_owned(),
            out[p + 4..].to_vec(),
        ),
        None => (String::from_utf8_lossy(out).into_owned(), Vec::new()),
    };
    Fetched {
        code: o.code(),
        status: status_of(head.as_bytes()),
        head,
        body,
        elapsed,
        stderr: o.err(),
    }
}

/// `force-https stats --json` as a map of counters.
fn stats(d: &Daemon) -> fh_tests::serde_json::Map<String, Value> {
    let o = d.cli(&["stats", "--json"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    match json(&o.out()) {
        Value::Object(mut m) => match m.remove("stats") {
            Some(Value::Object(s)) => s,
            Some(other) => panic!("stats is not an object: {other}"),
            None => m,
        },
        v => panic!("stats --json is not an object: {v}"),
    }
}

fn counter(m: &fh_tests::serde_json::Map<String, Value>, name: &str) -> u64 {
    m.get(name)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no counter {name} in {m:?}"))
}

/// Waits (10 s at most) for the daemon's descriptor count to come back to `baseline`.
fn assert_fds_return(pid: u32, baseline: usize) {
    let mut now = 0;
    let back = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        now = fds(pid);
        now <= baseline
    });
    assert!(
        back,
        "descriptors leaked: {now} open, {baseline} at the baseline"
    );
}

/// Fetches `path` and checks that backend `b` answered it 200; returns what came back.
fn assert_ok(e: &Edge, via: Via, path: &str) -> Fetched {
    let r = fetch(e, via, path);
    assert_eq!(
        (r.code, r.status),
        (0, 200),
        "{via:?} {path}: {}",
        r.describe()
    );
    assert!(
        String::from_utf8_lossy(&r.body).contains("backend=b"),
        "{via:?} {path}: {}",
        r.describe()
    );
    r
}

/// 502 for a reset before the head, a garbage status line and 1 MiB of headers; 504 when the
/// head drips in slower than the response timeout; a body reset mid-way is cut short with the
/// connection closed (h1) or the stream reset (h2). HSTS on the TLS errors, never on port 80.
/// Afterwards the daemon runs, serves, counted every 502/504 and holds no extra descriptor.
#[test]
fn backend_faults_give_502_504_and_leak_nothing() {
    if !require_root() {
        return;
    }
    let mut e = Edge::start(&["--fault", "by-path"]);
    let pid = e.d.pid();
    let baseline = fds(pid);
    let before = stats(&e.d);
    let mut want_502 = 0;
    let mut want_504 = 0;
    for via in VIAS {
        assert_ok(&e, via, "/warm");
        for (fault, want) in [
            ("reset-before-head", 502),
            ("garbage-status", 502),
            ("huge-headers", 502),
            ("drip", 504),
        ] {
            let r = fetch(&e, via, &format!("/fault/{fault}"));
            eprintln!(
                "{via:?} {fault}: status {} in {:?}, curl exit {}",
                r.status, r.elapsed, r.code
            );
            assert_eq!(
                (r.code, r.status),
                (0, want),
                "{via:?} {fault}: {}",
                r.describe()
            );
            if want == 504 {
                assert!(
                    r.elapsed >= Duration::from_millis(RESPONSE_TIMEOUT_MS - 50)
                        && r.elapsed < Duration::from_millis(RESPONSE_TIMEOUT_MS + 2500),
                    "{via:?} {fault}: 504 not at the timeout: {}",
                    r.describe()
                );
                want_504 += 1;
            } else {
                assert!(
                    r.elapsed < Duration::from_secs(3),
                    "{via:?} {fault}: {}",
                    r.describe()
                );
                want_502 += 1;
            }
            let hsts = r.header("strict-transport-security");
            if via.tls() {
                assert_eq!(hsts, vec![HSTS], "{via:?} {fault}: {}", r.describe());
            } else {
                assert!(hsts.is_empty(), "{via:?} {fault}: {}", r.describe());
            }
        }

        // Reset mid-body: the head (200, Content-Length 65536) and the first 16 KiB arrive,
        // then the client's connection is closed (h1) or its stream reset (h2), promptly.
        let r = fetch(&e, via, "/fault/reset-mid-body");
        eprintln!(
            "{via:?} reset-mid-body: status {}, {} of 65536 body bytes in {:?}, curl exit {}: {}",
            r.status,
            r.body.len(),
            r.elapsed,
            r.code,
            r.stderr.trim()
        );
        assert_eq!(r.status, 200, "{via:?}: {}", r.describe());
        assert!(r.body.len() < 65536, "{via:?}: {}", r.describe());
        assert!(
            r.elapsed < Duration::from_secs(3),
            "{via:?}: {}",
            r.describe()
        );
        // 18: transfer closed with outstanding data (h1); 92: HTTP/2 stream error.
        let want_code = if via == Via::H2 { 92 } else { 18 };
        assert_eq!(r.code, want_code, "{via:?}: {}", r.describe());
        if via.tls() {
            assert_eq!(
                r.header("strict-transport-security"),
                vec![HSTS],
                "{via:?}: {}",
                r.describe()
            );
        }

        // The same backend still serves on this path.
        assert_ok(&e, via, "/after");
    }

    assert!(e.d.running(), "daemon died:\n{}", e.d.log());
    let after = stats(&e.d);
    assert_eq!(
        counter(&after, "responses_502") - counter(&before, "responses_502"),
        want_502
    );
    assert_eq!(
        counter(&after, "responses_504") - counter(&before, "responses_504"),
        want_504
    );
    assert_fds_return(pid, baseline);
    let log = e.d.log();
    assert!(!log.contains("panicked"), "daemon panicked:\n{log}");
}

/// A backend that sends its head at once and then drips the body one byte a second: the
/// response timeout covers only the head, so the client gets `200` at once and the body as it
/// drips (6 bytes in about 6 s), on every path, and nothing is left open afterwards.
#[test]
fn a_body_dripped_after_the_head_is_streamed_through() {
    if !require_root() {
        return;
    }
    let mut e = Edge::start(&["--fault", "by-path"]);
    let pid = e.d.pid();
    let baseline = fds(pid);
    let results: Vec<(Via, Fetched, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = VIAS
            .iter()
            .map(|&via| {
                let e = &e;
                s.spawn(move || {
                    let mut args: Vec<String> = vec![
                        "curl".into(),
                        "-sS".into(),
                        "-i".into(),
                        "--max-time".into(),
                        "20".into(),
                        "-w".into(),
                        "\n%{time_starttransfer}".into(),
                    ];
                    args.extend(via.curl_args(&e.ca(), "/fault/drip-body"));
                    let start = Instant::now();
                    let o = output_timeout(&mut e.ns.cli_cmd(&args), Duration::from_secs(30));
                    let mut r = parse_fetched(&o, start.elapsed());
                    // The last line is time_starttransfer (when the first byte arrived).
                    let split = r.body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
                    let first: f64 = String::from_utf8_lossy(&r.body[split..])
                        .trim()
                        .parse()
                        .unwrap_or(f64::NAN);
                    r.body.truncate(split);
                    (via, r, first)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("drip thread"))
            .collect()
    });
    for (via, r, first_byte) in results {
        eprintln!(
            "{via:?} drip-body: status {}, first byte after {first_byte:.3} s, body {:?} complete after {:?}, curl exit {}",
            r.status,
            String::from_utf8_lossy(&r.body),
            r.elapsed,
            r.code
        );
        assert_eq!((r.code, r.status), (0, 200), "{via:?}: {}", r.describe());
        assert_eq!(r.body, b"drip!\n", "{via:?}: {}", r.describe());
        assert!(first_byte < 2.0, "{via:?}: head late ({first_byte} s)");
        assert!(
            r.elapsed >= Duration::from_secs(4) && r.elapsed < Duration::from_secs(15),
            "{via:?}: {}",
            r.describe()
        );
    }
    assert!(e.d.running(), "daemon died:\n{}", e.d.log());
    assert_fds_return(pid, baseline);
}

/// A backend that closes every kept-alive connection right after its answer: the pooled
/// connection is dead when the next request comes. Forty requests on one client connection,
/// alternating such answers and normal ones, all succeed on every path; then sequential
/// requests with pauses (the close has surely arrived), then requests the backend closes a
/// reused connection on without answering; no 502; descriptors return to baseline.
/// Requests per client connection in the pool test.
const BACK_TO_BACK: usize = 40;

#[test]
fn the_pool_recovers_from_backends_closing_kept_alive_connections() {
    if !require_root() {
        return;
    }
    let mut e = Edge::start(&["--fault", "by-path"]);
    let pid = e.d.pid();
    let baseline = fds(pid);
    let before = stats(&e.d);
    for via in VIAS {
        // One curl, one client connection, 20 requests back to back.
        let mut args: Vec<String> = vec![
            "curl".into(),
            "-sS".into(),
            "--max-time".into(),
            "20".into(),
        ];
        for i in 0..BACK_TO_BACK {
            let path = if i % 2 == 0 {
                format!("/fault/close-after-response/{i}")
            } else {
                format!("/normal/{i}")
            };
            let mut a = via.curl_args(&e.ca(), &path);
            let url = a.pop().expect("url");
            if i == 0 {
                args.extend(a);
            }
            args.extend(["-o".into(), "/dev/null".into(), "-w".into()]);
            args.push("%{http_code}\n".into());
            args.push(url);
        }
        let o = output_timeout(&mut e.ns.cli_cmd(&args), Duration::from_secs(30));
        let codes: Vec<String> = o.out().lines().map(str::to_owned).collect();
        eprintln!("{via:?} back to back: {codes:?}");
        assert_eq!(o.code(), 0, "{via:?}: {}", o.describe());
        assert_eq!(codes.len(), BACK_TO_BACK, "{via:?}: {}", o.describe());
        assert!(
            codes.iter().all(|c| c == "200"),
            "{via:?}: a request failed after the backend closed a pooled connection: {codes:?}"
        );
        // Separate clients with a pause: the pool must drop the closed connection.
        for i in 0..5 {
            assert_ok(&e, via, &format!("/fault/close-after-response/p{i}"));
            std::thread::sleep(Duration::from_millis(50));
            assert_ok(&e, via, &format!("/next/p{i}"));
        }
        // The race itself, made certain: the backend closes a kept-alive connection when the
        // next request arrives on it, unanswered. The proxy sends such an idempotent bodyless
        // request once more, on a new connection.
        assert_ok(&e, via, "/fault/close-on-reuse/first");
        for i in 0..5 {
            let path = format!("/fault/close-on-reuse/{i}");
            // The repeat carries what the first attempt carried: the headers this edge adds
            // (the backend echoes every header it got).
            let r = assert_ok(&e, via, &path);
            let body = String::from_utf8_lossy(&r.body);
            let (proto, host) = if via.tls() {
                ("https", SHOP)
            } else {
                ("http", BLOG)
            };
            for want in [
                format!("header:host={host}\n"),
                format!("header:x-forwarded-proto={proto}\n"),
                "header:x-forwarded-for=198.51.100.".into(),
                format!("header:x-forwarded-host={host}\n"),
                "header:x-forwarded-port=".into(),
                "header:forwarded=for=198.51.100.".into(),
                "header:cdn-loop=".into(),
            ] {
                assert!(
                    body.contains(&want),
                    "{via:?} {path}: the repeated request lacks {want:?}:\n{body}"
                );
            }
        }
    }
    let after = stats(&e.d);
    assert_eq!(
        counter(&after, "responses_502"),
        counter(&before, "responses_502"),
        "502s while the backend closed pooled connections"
    );
    // The repeats are counted (at least one per path: five races each), and so are the
    // connections opened for them.
    let grew = |name| counter(&after, name) - counter(&before, name);
    let retries = grew("backend_retries");
    assert!(
        retries >= VIAS.len() as u64,
        "backend_retries grew by {retries} over {} paths",
        VIAS.len()
    );
    assert!(grew("backend_connections") >= retries, "{after:?}");
    assert!(e.d.running(), "daemon died:\n{}", e.d.log());
    assert_fds_return(pid, baseline);
}

// ---------------------------------------------------------------------------------------------
// Big bodies
// ---------------------------------------------------------------------------------------------

/// Bytes per big transfer: `FH_BIG_BODY_BYTES`, else 1 GiB.
fn big_size() -> u64 {
    std::env::var("FH_BIG_BODY_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30)
}

/// Bound on one big transfer.
const BIG_MAX_TIME: Duration = Duration::from_secs(300);

/// Runs `f` while sampling the daemon's VmRSS every 100 ms; returns f's result and the
/// largest sample (KiB).
fn with_rss_sampler<R>(pid: u32, f: impl FnOnce() -> R) -> (R, u64) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut max = rss_kib(pid);
            // Bounded: one sample per 100 ms for at most the transfer bound plus a margin.
            let limit = (BIG_MAX_TIME + CMD_TIMEOUT).as_millis() / 100 + 10;
            for _ in 0..limit {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                max = max.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            max.max(rss_kib(pid))
        });
        let r = f();
        stop.store(true, Ordering::Relaxed);
        (r, sampler.join().expect("sampler"))
    })
}

/// One big transfer in the client namespace: a shell pipeline around curl.
fn big_transfer(e: &Edge, via: Via, upload: bool, n: u64) -> Output {
    let max = BIG_MAX_TIME.as_secs();
    let quoted: Vec<String> = via
        .curl_args(&e.ca(), if upload { "/upload" } else { "" })
        .into_iter()
        .map(|a| format!("'{a}'"))
        .collect();
    let mut args = quoted.join(" ");
    let script = if upload {
        format!(
            "head -c {n} /dev/zero | curl -sS --max-time {max} -X POST -T - -H 'Expect:' {args}"
        )
    } else {
        // The URL is the last argument: append the path to it.
        args.pop();
        format!(
            "curl -sS --max-time {max} -o /dev/null -w '%{{http_code}} %{{size_download}}' {args}/bytes/{n}'"
        )
    };
    output_timeout(
        &mut e.ns.cli_cmd(&["sh", "-c", &script]),
        BIG_MAX_TIME + CMD_TIMEOUT,
    )
}

/// 1 GiB up and 1 GiB down on port 80, TLS h1 and TLS h2: every byte arrives, the daemon's
/// RSS stays under 64 MiB throughout. Prints the time and the largest RSS of each transfer.
#[test]
fn big_bodies_stream_through_in_bounded_memory() {
    if !require_root() {
        return;
    }
    let mut e = Edge::start(&[]);
    let pid = e.d.pid();
    let n = big_size();
    let mut report = Vec::new();
    for via in VIAS {
        for upload in [true, false] {
            let start = Instant::now();
            let (o, max_rss) = with_rss_sampler(pid, || big_transfer(&e, via, upload, n));
            let took = start.elapsed();
            let dir = if upload { "upload" } else { "download" };
            let line = format!(
                "{via:?} {dir} {n} bytes: {:.1} s ({:.0} MiB/s), max RSS {:.1} MiB",
                took.as_secs_f64(),
                n as f64 / (1 << 20) as f64 / took.as_secs_f64(),
                max_rss as f64 / 1024.0
            );
            eprintln!("{line}");
            report.push(line);
            assert_eq!(o.code(), 0, "{via:?} {dir}: {}", o.describe());
            if upload {
                assert!(
                    o.out().contains(&format!("\nbody-bytes={n}\n")),
                    "{via:?} upload: {}",
                    o.describe()
                );
            } else {
                assert_eq!(o.out().trim(), format!("200 {n}"), "{via:?} download");
            }
            assert!(
                max_rss < RSS_LIMIT_KIB,
                "{via:?} {dir}: daemon RSS reached {max_rss} KiB"
            );
        }
    }
    assert!(e.d.running(), "daemon died:\n{}", e.d.log());
    eprintln!("big bodies:\n{}", report.join("\n"));
}
