//! Hostile clients, bounded in count and time: slow clients holding half a request head on
//! port 80 and half a TLS handshake on 443 while others are served; the connection cap; and
//! descriptor exhaustion (accept backs off, service resumes).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use fh_tests::*;

const SHOP: &str = "shop.example.test";

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (the slow clients need a few
/// thousand sockets); returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn config(dir: &std::path::Path, max_connections: u64, timeout_ms: u64) -> Config {
    let (cert, key) = self_signed(dir, &[SHOP]);
    let mut cfg = Config::new().site(Site::new("shop", &[SHOP]).enforced());
    cfg.max_connections = Some(max_connections);
    cfg.head_timeout_ms = Some(timeout_ms);
    cfg.extra(&format!(
        "[tls]\nhandshake_timeout_ms = {timeout_ms}\ndefault_cert = {{ cert = {}, key = {} }}",
        toml_str(&cert),
        toml_str(&key)
    ))
    .https()
}

fn edge443() -> SocketAddr {
    format!("{EDGE_V4}:443").parse().expect("addr")
}

/// The first bytes of a TLS ClientHello record (header says 512 bytes, 16 are sent).
const HALF_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0,
];

/// Opens `n` connections to `addr`, each sending `bytes` and then nothing.
fn hold(addr: SocketAddr, n: usize, bytes: &[u8]) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                let _ = s.write_all(bytes);
                v.push(s);
            }
            Err(e) => panic!("slow client {i} to {addr}: {e}"),
        }
    }
    v
}

/// Latencies of `n` sequential port-80 redirects, a new connection each, sorted.
fn redirect_latencies(n: usize) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = raw_exchange_here(
            edge80(),
            format!("GET /x HTTP/1.1\r\nHost: {SHOP}\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(status_of(&r.bytes), 301, "{:?}", r.text());
        v.push(t.elapsed());
    }
    v.sort();
    v
}

/// A TLS handshake and one request with curl; returns (status, seconds).
fn https_once(ns: &Netns) -> (u16, f64) {
    let out = curl(
        ns,
        &[
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}",
            "--max-time",
            "5",
            "--resolve",
            &format!("{SHOP}:443:{EDGE_V4}"),
            &format!("https://{SHOP}/"),
        ],
    );
    let mut it = out.split_whitespace();
    let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let secs = it.next().and_then(|c| c.parse().ok()).unwrap_or(99.0);
    (code, secs)
}

#[test]
fn slow_clients_do_not_starve_others_and_resources_come_back() {
    if !require_root() {
        return;
    }
    raise_nofile();
    const SLOW: usize = 1500;
    let ns = Netns::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(&ns, &config(dir.path(), 10_000, 3000));
    let pid = d.pid();
    // Warm up, then the baseline.
    ns.run_in_client(|| redirect_latencies(20));
    let (fd0, rss0) = (fds(pid), rss_kib(pid));

    let (lat, held80, held443) = ns.run_in_client(|| {
        let a = hold(edge80(), SLOW, b"GET / HTTP/1.1\r\nHost: shop.exa");
        let b = hold(edge443(), SLOW, HALF_HELLO);
        (redirect_latencies(200), a, b)
    });
    let during = fds(pid);
    assert!(
        during >= fd0 + SLOW,
        "the slow clients were not all accepted: {during} fds (baseline {fd0})"
    );
    let p99 = lat[lat.len() * 99 / 100 - 1];
    let rss_peak = rss_kib(pid);
    eprintln!(
        "slow clients: {SLOW}+{SLOW}; redirects p50 {:?} p99 {p99:?}; fds {fd0} -> {during}; RSS {rss0} -> {rss_peak} KiB",
        lat[lat.len() / 2]
    );
    assert!(
        p99 < Duration::from_millis(200),
        "p99 {p99:?} with {SLOW}+{SLOW} slow clients (median {:?})",
        lat[lat.len() / 2]
    );
    // A full handshake and force-https's own answer (shop has no backend: 404).
    let (code, secs) = https_once(&ns);
    assert_eq!(code, 404, "HTTPS while slow clients wait");
    assert!(secs < 1.0, "HTTPS took {secs} s while slow clients wait");

    // The timeouts (3 s) answer or close every slow client: port 80 gets 408.
    let (answered408, closed443) = ns.run_in_client(move || {
        let mut held80 = held80;
        let mut held443 = held443;
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut n408 = 0;
        for s in &mut held80 {
            let _ = s.set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
            ));
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            if status_of(&buf) == 408 {
                n408 += 1;
            }
        }
        let mut closed = 0;
        for s in &mut held443 {
            let _ = s.set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
            ));
            let mut buf = [0u8; 64];
            if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
                closed += 1;
            }
        }
        (n408, closed)
    });
    assert_eq!(answered408, SLOW, "port-80 slow clients answered 408");
    assert_eq!(closed443, SLOW, "TLS slow clients closed");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            fds(pid) <= fd0 + 2
        }),
        "descriptors did not come back: {} (baseline {fd0})",
        fds(pid)
    );
    // Freed memory goes back to the kernel within a few seconds of the burst's end.
    let back = wait_until(Duration::from_secs(6), Duration::from_millis(200), || {
        rss_kib(pid) < rss0 + 8 * 1024
    });
    assert!(
        back,
        "RSS {} KiB after the slow clients left (baseline {rss0} KiB)",
        rss_kib(pid)
    );
    eprintln!(
        "after the timeouts: fds {}, RSS {} KiB",
        fds(pid),
        rss_kib(pid)
    );
    let stats = json(&d.cli(&["stats", "--json"]).out());
    assert_eq!(stats["active_connections"].as_u64(), Some(0), "{stats}");
    assert!(
        stats["tls_handshake_failures"].as_u64().unwrap_or(0) >= SLOW as u64,
        "{stats}"
    );
}

#[test]
fn at_the_connection_cap_new_clients_get_a_quick_answer() {
    if !require_root() {
        return;
    }
    raise_nofile();
    let ns = Netns::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let _d = Daemon::start(&ns, &config(dir.path(), 100, 10_000));
    ns.run_in_client(|| {
        let _held = hold(edge80(), 100, b"GET / HTTP/1.1\r\nHost: shop.exa");
        std::thread::sleep(Duration::from_millis(200));
        // Port 80: 503 at once.
        let t = Instant::now();
        let r = raw_exchange_here(
            edge80(),
            format!("GET / HTTP/1.1\r\nHost: {SHOP}\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(status_of(&r.bytes), 503, "{:?}", r.text());
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        // 443: closed at once (no HTTP answer is possible before a handshake).
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&edge443(), Duration::from_secs(2)).expect("443");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = s.write_all(HALF_HELLO);
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf);
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    });
}

#[test]
fn descriptor_exhaustion_backs_off_and_recovers() {
    if !require_root() {
        return;
    }
    raise_nofile();
    let ns = Netns::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(&ns, &config(dir.path(), 10_000, 30_000));
    let pid = d.pid();
    // Leave the daemon 20 descriptors.
    let limit = fds(pid) + 20;
    let out = output_timeout(
        Command::new("prlimit").args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ]),
        CMD_TIMEOUT,
    );
    assert!(out.status.success(), "prlimit: {out:?}");
    let held = ns.run_in_client(|| hold(edge80(), 60, b"GET / HTTP/1.1\r\nHost: shop.exa"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        fds(pid) >= limit - 1,
        "not exhausted: {} of {limit}",
        fds(pid)
    );
    // Exhausted: accept keeps failing, and the daemon sleeps between attempts.
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu_ticks(pid) - c0;
    let hz = 100.0; // USER_HZ on Linux
    let share = ticks as f64 / hz / t0.elapsed().as_secs_f64();
    assert!(share < 0.1, "CPU share {share:.2} while out of descriptors");
    eprintln!("out of descriptors: CPU share {share:.3} over 2 s");
    assert!(
        d.log().contains("failed") && d.log().contains("backing off"),
        "{}",
        d.log()
    );
    // Descriptors free up: service resumes.
    drop(held);
    let ok = ns.run_in_client(|| {
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let r = raw_exchange_here(
                edge80(),
                format!("GET / HTTP/1.1\r\nHost: {SHOP}\r\n\r\n").as_bytes(),
                Duration::from_secs(2),
            );
            status_of(&r.bytes) == 301
        })
    });
    assert!(ok, "no service after descriptors freed: {}", d.log());
}

/// A client that stops in the middle of a proxied request body is answered 408 once
/// `limits.idle_timeout_ms` passes without a byte, and the backend connection is let go: a
/// dripped upload cannot hold a slot forever.
#[test]
fn a_stalled_request_body_gets_408() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "blog", 0);
    let mut cfg = Config::new().site(Site::new("blog", &["blog.example.test"]).backend(&be.url()));
    cfg.idle_timeout_ms = Some(1000);
    let d = Daemon::start(&ns, &cfg);
    let (status, took) = ns.run_in_client(|| {
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&edge80(), Duration::from_secs(2)).expect("connect");
        s.write_all(
            b"POST /up HTTP/1.1\r\nHost: blog.example.test\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        (status_of(&buf), t.elapsed())
    });
    assert_eq!(status, 408);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let stats = json(&d.cli(&["stats", "--json"]).out());
    assert_eq!(stats["responses_408"].as_u64(), Some(1), "{stats}");
    assert_eq!(stats["active_connections"].as_u64(), Some(0), "{stats}");
}
