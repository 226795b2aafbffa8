//! The access log (`[log] access = "json"`): one JSON line per request, written off the
//! request path.
//!
//! A request path fills an [`Entry`] (a few small strings) and hands it to [`AccessLog::log`],
//! which never waits: the entry goes into a bounded channel (`[log] buffer`, default 8192),
//! and when the channel is full it is dropped and counted (`access_log_dropped`). One writer
//! task per log formats the lines and writes them in batches (one write per batch of whatever
//! queued up) to standard output or to `[log] path` (opened for appending).
//!
//! Which requests are logged: every request the port-80 socket path answers itself (first
//! requests redirected or answered locally) and every request of the proxy service (port-80
//! keep-alive connections, proxied first requests, everything over TLS). Requests answered
//! by the XDP fast path are counted (`afxdp_redirects_*`), not logged: its responders
//! allocate nothing per packet, and a log line per packet would undo that.
//!
//! A line (keys always in this order; `host` and `bytes` are `null` when unknown):
//!
//! ```json
//! {"time":"2026-05-01T12:00:00.123Z","client":"198.51.100.7","host":"shop.example.com","method":"GET","target":"/cart?x=1","status":301,"bytes":0,"duration_ms":0.042,"path":"http80","decision":"redirect"}
//! ```

use std::{
    fmt::Write as _,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use force_https_proto::host::{normalize, parse_authority};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use crate::{
    config::{AccessFormat, LogConfig},
    metrics::Metrics,
};

/// Default capacity of the channel to the writer, in lines.
pub const DEFAULT_BUFFER: usize = 8192;

/// Which request path served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathTaken {
    /// The port-80 socket path or the proxy service on a port-80 connection.
    Http80,
    /// The TLS listeners.
    Tls,
}

impl PathTaken {
    fn as_str(self) -> &'static str {
        match self {
            PathTaken::Http80 => "http80",
            PathTaken::Tls => "tls",
        }
    }
}

/// What force-https did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Redirected to HTTPS (301 or 308).
    Redirect,
    /// Sent to the site's backend (the status is the backend's, or 502/504).
    Proxy,
    /// Answered by force-https itself: an error (400, 404, 408, 414, 421, 431, 508) or
    /// `OPTIONS *`.
    Local,
}

impl Decided {
    fn as_str(self) -> &'static str {
        match self {
            Decided::Redirect => "redirect",
            Decided::Proxy => "proxy",
            Decided::Local => "local",
        }
    }
}

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When the request's head was complete (or the connection accepted, on port 80).
    pub time: SystemTime,
    /// The client's address.
    pub client: IpAddr,
    /// The request's host, normalized when force-https could find one.
    pub host: Option<String>,
    /// The method token as received (lossy UTF-8).
    pub method: String,
    /// The request-target as received (lossy UTF-8).
    pub target: String,
    /// The status code sent.
    pub status: u16,
    /// Response body bytes: those sent when force-https wrote the answer itself, else the
    /// `Content-Length` declared; `None` when neither is known (a streamed body).
    pub bytes: Option<u64>,
    /// From `time` until the response head was ready.
    pub duration: Duration,
    /// Which request path served it.
    pub path: PathTaken,
    /// What was done with it.
    pub decision: Decided,
}

impl Entry {
    /// The JSON line of this entry, newline included, appended to `out`.
    pub fn write_json(&self, out: &mut String) {
        let since = self.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        out.push_str("{\"time\":\"");
        rfc3339(since, out);
        let _ = write!(out, "\",\"client\":\"{}\",\"host\":", self.client);
        match &self.host {
            Some(h) => json_str(h, out),
            None => out.push_str("null"),
        }
        out.push_str(",\"method\":");
        json_str(&self.method, out);
        out.push_str(",\"target\":");
        json_str(&self.target, out);
        let _ = write!(out, ",\"status\":{},\"bytes\":", self.status);
        match self.bytes {
            Some(b) => {
                let _ = write!(out, "{b}");
            }
            None => out.push_str("null"),
        }
        let _ = writeln!(
            out,
            ",\"duration_ms\":{:.3},\"path\":\"{}\",\"decision\":\"{}\"}}",
            self.duration.as_secs_f64() * 1000.0,
            self.path.as_str(),
            self.decision.as_str()
        );
    }
}

/// A JSON string literal (RFC 8259 §7).
fn json_str(s: &str, out: &mut String) {
    // serde_json's escaping; a `String` cannot fail to serialize.
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("null"),
    }
}

/// `since` (from the Unix epoch) as RFC 3339 UTC with milliseconds,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(since: Duration, out: &mut String) {
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    );
}

/// A running access log: the sending side of the channel to its writer task. The writer
/// ends (after writing what is queued) when the last clone of the sender is dropped.
#[derive(Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Entry>,
}

impl AccessLog {
    /// Starts the access log of `cfg` (`None` when `access = "off"`): opens `cfg.path` for
    /// appending (created with mode 0640) or takes standard output, and spawns the writer on
    /// the current tokio runtime.
    ///
    /// # Errors
    /// The file cannot be opened, or there is no runtime.
    pub fn start(cfg: &LogConfig) -> anyhow::Result<Option<Arc<AccessLog>>> {
        if cfg.access == AccessFormat::Off {
            return Ok(None);
        }
        let out: Box<dyn AsyncWrite + Send + Unpin> = match &cfg.path {
            Some(p) => Box::new(tokio::fs::File::from_std(open(p)?)),
            None => Box::new(tokio::io::stdout()),
        };
        let rt = tokio::runtime::Handle::try_current()
            .context("the access log must start inside the runtime")?;
        let (tx, rx) = mpsc::channel(cfg.buffer.unwrap_or(DEFAULT_BUFFER).max(1));
        let what = cfg.path.as_ref().map_or_else(
            || "standard output".to_string(),
            |p| p.display().to_string(),
        );
        rt.spawn(writer(rx, out, what));
        Ok(Some(Arc::new(AccessLog { tx })))
    }

    /// Queues one entry without waiting, counted in `m` (`access_log_lines`, or
    /// `access_log_dropped` when the channel was full or the writer gone). Returns whether it
    /// was queued.
    pub fn log(&self, entry: Entry, m: &Metrics) -> bool {
        let queued = self.tx.try_send(entry).is_ok();
        Metrics::inc(if queued {
            &m.access_log_lines
        } else {
            &m.access_log_dropped
        });
        queued
    }
}

/// A request of the proxy service being served, logged when its response is ready
/// ([`Pending::finish`]). Taken only when the log is on.
pub struct Pending {
    log: Arc<AccessLog>,
    entry: Entry,
    start: Instant,
}

impl Pending {
    /// Notes what the log needs of `req` (before the request is consumed) from a client at
    /// `client`, over TLS or not.
    pub fn start<B>(
        log: Arc<AccessLog>,
        req: &hyper::Request<B>,
        client: IpAddr,
        tls: bool,
    ) -> Pending {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| req.headers().get(hyper::header::HOST).map(|h| h.as_bytes()));
        let host = authority
            .and_then(|a| parse_authority(a).ok())
            .map(|a| normalize(&a));
        Pending {
            log,
            entry: Entry {
                time: SystemTime::now(),
                client,
                host,
                method: req.method().as_str().to_string(),
                target: req
                    .uri()
                    .path_and_query()
                    .map_or_else(|| req.uri().to_string(), |p| p.as_str().to_string()),
                status: 0,
                bytes: None,
                duration: Duration::ZERO,
                path: if tls {
                    PathTaken::Tls
                } else {
                    PathTaken::Http80
                },
                decision: Decided::Local,
            },
            start: Instant::now(),
        }
    }

    /// Logs the request with its response: `proxied` when the upstream phase ran (else a
    /// 301/308 is a redirect and anything else a local answer).
    pub fn finish<B: hyper::body::Body>(
        mut self,
        resp: &hyper::Response<B>,
        proxied: bool,
        m: &Metrics,
    ) {
        let e = &mut self.entry;
        e.status = resp.status().as_u16();
        e.bytes = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .or_else(|| resp.body().size_hint().exact());
        e.duration = self.start.elapsed();
        e.decision = match (proxied, e.status) {
            (true, _) => Decided::Proxy,
            (false, 301 | 308) => Decided::Redirect,
            (false, _) => Decided::Local,
        };
        self.log.log(self.entry, m);
    }
}

/// Opens an access log file for appending, mode 0640 when created.
fn open(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("cannot open the access log {}", path.display()))
}

/// Writes every entry that arrives, a batch (what queued up meanwhile) per write, until the
/// channel closes.
async fn writer(
    mut rx: mpsc::Receiver<Entry>,
    mut out: Box<dyn AsyncWrite + Send + Unpin>,
    what: String,
) {
    let mut buf = String::with_capacity(64 * 1024);
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        buf.clear();
        first.write_json(&mut buf);
        while buf.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(e) => e.write_json(&mut buf),
                Err(_) => break,
            }
        }
        let r = match out.write_all(buf.as_bytes()).await {
            Ok(()) => out.flush().await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => failing = false,
            // Said once per run of failures, not once per line.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("cannot write the access log to {what}: {e}");
            }
            Err(_) => {}
        }
    }
    let _ = out.flush().await;
    // Keep the synchronous std stdout in step for tests that read it at exit.
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: UNIX_EPOCH + Duration::from_millis(1_777_636_800_123),
            client: "198.51.100.7".parse().unwrap(),
            host: Some("shop.example.com".into()),
            method: "GET".into(),
            target: "/a\"b\\c?x=1".into(),
            status: 301,
            bytes: Some(0),
            duration: Duration::from_micros(42),
            path: PathTaken::Http80,
            decision: Decided::Redirect,
        }
    }

    #[test]
    fn one_json_line() {
        let mut s = String::new();
        entry().write_json(&mut s);
        assert!(s.ends_with("}\n") && s.matches('\n').count() == 1, "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["time"], "2026-05-01T12:00:00.123Z");
        assert_eq!(v["client"], "198.51.100.7");
        assert_eq!(v["host"], "shop.example.com");
        assert_eq!(v["target"], "/a\"b\\c?x=1");
        assert_eq!(v["status"], 301);
        assert_eq!(v["bytes"], 0);
        assert_eq!(v["duration_ms"], 0.042);
        assert_eq!(v["path"], "http80");
        assert_eq!(v["decision"], "redirect");
        let mut e = entry();
        e.host = None;
        e.bytes = None;
        e.target = "/\u{1}".into();
        let mut s = String::new();
        e.write_json(&mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(v["host"].is_null() && v["bytes"].is_null(), "{s}");
    }

    #[test]
    fn rfc3339_dates() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (4_102_444_799, "2099-12-31T23:59:59.000Z"),
        ] {
            let mut s = String::new();
            rfc3339(Duration::from_secs(secs), &mut s);
            assert_eq!(s, want);
        }
    }

    #[tokio::test]
    async fn full_channel_drops_never_waits() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("access.log");
        let cfg = LogConfig {
            access: AccessFormat::Json,
            path: Some(path.clone()),
            buffer: Some(2),
        };
        let log = AccessLog::start(&cfg).unwrap().unwrap();
        // Nothing runs the writer between these sends (current-thread runtime): the third
        // and later ones find the channel full.
        let m = Metrics::default();
        let sent: Vec<bool> = (0..5).map(|_| log.log(entry(), &m)).collect();
        assert_eq!(sent, [true, true, false, false, false]);
        assert_eq!(
            m.access_log_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        drop(log);
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if std::fs::read_to_string(&path).unwrap().lines().count() == 2 {
                return;
            }
        }
        panic!("{:?}", std::fs::read_to_string(&path));
    }

    /// The cost of one line on the request path (building the entry, `log`) and in the
    /// writer (formatting), in ns; `cargo test --release -p force-https-userspace --lib
    /// access_log::tests::cost -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn cost() {
        let d = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            access: AccessFormat::Json,
            path: Some(d.path().join("a.log")),
            buffer: Some(1 << 20),
        };
        let log = AccessLog::start(&cfg).unwrap().unwrap();
        let m = Metrics::default();
        let n = 200_000u32;
        let t = Instant::now();
        for _ in 0..n {
            let e = entry();
            log.log(std::hint::black_box(e), &m);
        }
        let per_log = t.elapsed() / n;
        let e = entry();
        let mut s = String::with_capacity(256);
        let t = Instant::now();
        for _ in 0..n {
            s.clear();
            e.write_json(&mut s);
            std::hint::black_box(&s);
        }
        let per_fmt = t.elapsed() / n;
        println!(
            "access log: request path {per_log:?}/line (entry + try_send), writer {per_fmt:?}/line (JSON), dropped {}",
            m.access_log_dropped
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }

    #[test]
    fn off_starts_nothing() {
        assert!(AccessLog::start(&LogConfig::default()).unwrap().is_none());
    }
}
