//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the browser
//! tests (dashboard.rs): launched in a network namespace with `--remote-debugging-port=0`,
//! its page reached over a WebSocket, `Runtime.evaluate` to read and click, and
//! `Page.captureScreenshot` for artifacts under target/. [`load`] is the one-shot form
//! (browser_rewrites.rs): a page's DOM after load and its console messages.
//!
//! The WebSocket client is the few lines the protocol needs on a loopback socket (a
//! handshake, masked text frames out, unmasked frames in) rather than a crate:
//! `tungstenite` would bring a dozen dependencies (rand, sha1, http...) into the tests for
//! that.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Netns, output_timeout, pki::Pki, run_in_netns};

/// The Chromium binary on `$PATH` (`chromium`, Debian's name, or `chromium-browser`).
pub fn chromium_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The Chromium binary, or `None` after printing `skipping` — except under `CI=true`, where a
/// missing browser fails the test (`cargo xtask setup` installs Debian's `chromium`).
pub fn require_chromium() -> Option<PathBuf> {
    match chromium_bin() {
        Some(p) => Some(p),
        None => {
            let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            if ci {
                panic!(
                    "this test needs headless Chromium (Debian's `chromium`, installed by `cargo xtask setup`); CI=true, so failing instead of skipping"
                );
            }
            eprintln!("skipping: needs chromium on PATH (apt-get install chromium)");
            None
        }
    }
}

/// A headless Chromium with one page, driven over the DevTools protocol. Dropping it kills
/// the browser (only it).
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket,
    next_id: u64,
    /// Everything Chromium wrote on stderr so far.
    pub stderr: Arc<Mutex<String>>,
}

/// Bound of one DevTools call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Browser {
    /// Starts Chromium inside network namespace `netns` on `url`, with a window of
    /// `width`×`height` CSS pixels, and connects to its page.
    pub fn launch(netns: &str, chromium: &Path, url: &str, width: u32, height: u32) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("fht-chromium-")
            .tempdir()
            .expect("tempdir");
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromium");
        // Killed if anything below panics before the Browser (whose Drop kills it) exists.
        let mut child = KillOnDrop(Some(child));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.get().stderr.take().expect("stderr");
        let log = stderr.clone();
        // Drains stderr for the browser's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(ws) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(ws.trim().to_string());
                }
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let browser_ws = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                panic!(
                    "chromium did not print its DevTools address within 30 s; stderr:\n{}",
                    stderr.lock().map(|s| s.clone()).unwrap_or_default()
                );
            }
        };
        // ws://127.0.0.1:PORT/devtools/browser/ID → the page's own socket, from /json/list.
        let hostport = browser_ws
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .expect("DevTools address")
            .to_string();
        let ws = run_in_netns(netns, || {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let list = http_get(&hostport, "/json/list");
                let page = list.as_array().and_then(|a| {
                    a.iter()
                        .find(|t| t["type"] == "page")
                        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                        .map(String::from)
                });
                if let Some(p) = page {
                    return WebSocket::connect(&p);
                }
                assert!(Instant::now() < deadline, "no page target: {list}");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut b = Browser {
            child: child.take(),
            _profile: profile,
            ws,
            next_id: 0,
            stderr,
        };
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    /// Sends one DevTools command and returns its `result` (events in between are skipped).
    /// Panics on a protocol error or after 30 s.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send_text(&msg);
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "{method}: no answer in 30 s");
            let text = self.ws.read_text();
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value; panics when it
    /// throws.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expr}: threw {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` every 50 ms until it is `true`, for at most `timeout`; an `expr` that
    /// throws (the page is still loading) counts as not yet.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let guarded = format!(
            "(() => {{ try {{ return ({expr}) === true; }} catch (e) {{ return false; }} }})()"
        );
        loop {
            if self.eval(&guarded) == Value::Bool(true) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Emulates a viewport of `width`×`height` CSS pixels (`mobile` for a phone).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Writes a PNG screenshot of the whole page to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = r["data"].as_str().expect("screenshot data");
        let png = base64_decode(data).expect("screenshot base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

/// A child process killed and reaped on drop unless taken.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn get(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }
    fn take(&mut self) -> Child {
        self.0.take().expect("child")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET PATH` over HTTP/1.0 in the calling thread's namespace, the body parsed as JSON
/// (`null` when the server is not answering yet).
fn http_get(hostport: &str, path: &str) -> Value {
    let Ok(mut s) = TcpStream::connect(hostport) else {
        return Value::Null;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    );
    // It answers with a Content-Length and may keep the connection open: read that much.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len
                && buf.len() >= end + 4 + len
            {
                return serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null)
}

/// A client WebSocket (RFC 6455) on a plain TCP connection: text frames only.
struct WebSocket {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl WebSocket {
    fn connect(url: &str) -> WebSocket {
        let rest = url.strip_prefix("ws://").expect("ws:// URL");
        let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let stream = TcpStream::connect(hostport).expect("connect DevTools");
        stream
            .set_read_timeout(Some(CALL_TIMEOUT))
            .expect("read timeout");
        let mut writer = stream.try_clone().expect("clone");
        write!(
            writer,
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: ZmgtdGVzdHMtZGV2dG9vbHM=\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("handshake");
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("handshake answer");
        assert!(status.contains(" 101 "), "WebSocket handshake: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("handshake headers");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        WebSocket { reader, writer }
    }

    fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x5a, 0x13, 0xc7, 0x2e];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame).expect("send frame");
    }

    /// The next complete text message (fragments joined; pings answered).
    fn read_text(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.reader.read_exact(&mut h).expect("frame header");
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.reader.read_exact(&mut b).expect("len16");
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.reader.read_exact(&mut b).expect("len64");
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mask = if h[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.reader.read_exact(&mut m).expect("mask");
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; len];
            self.reader.read_exact(&mut payload).expect("payload");
            if let Some(m) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            match opcode {
                0x8 => panic!("DevTools closed the WebSocket"),
                0x9 => {
                    // Ping: answer with a masked pong of the same payload.
                    let mut f = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    f.extend_from_slice(&payload);
                    self.writer.write_all(&f).expect("pong");
                }
                0xa => {}
                _ => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("UTF-8 message");
                    }
                }
            }
        }
    }
}

/// Decodes standard base64 (with padding).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if c == b'=' { 0 } else { val(c)? };
            n |= v << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    Some(out)
}

/// What a page load gave.
pub struct PageLoad {
    /// The DOM after the load event (`--dump-dom`).
    pub dom: String,
    /// Chromium's log: console messages are the lines with `CONSOLE`.
    pub log: String,
}

impl PageLoad {
    /// The console messages.
    pub fn console(&self) -> Vec<&str> {
        self.log.lines().filter(|l| l.contains("CONSOLE")).collect()
    }
}

/// The base64 SHA-256 of a certificate's public key (`--ignore-certificate-errors-spki-list`).
pub fn spki_hash(pki: &Pki, cert_name: &str) -> String {
    let cert = pki.path(&format!("{cert_name}.pem"));
    let cmd = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        cert.display()
    );
    let out = output_timeout(
        std::process::Command::new("sh").args(["-c", &cmd]),
        Duration::from_secs(15),
    );
    assert!(out.status.success(), "spki hash of {}", cert.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Loads `url` in headless Chromium in the client namespace, every host name mapped to
/// `edge_ip`, trusting the keys `spki` (base64 SHA-256), with a 10 s virtual-time budget.
pub fn load(ns: &Netns, bin: &Path, url: &str, edge_ip: &str, spki: &[String]) -> PageLoad {
    load_until(ns, bin, url, edge_ip, spki, |_| true)
}

/// Loads (as [`load`]) until the page has a DOM and `ready` holds for the load, three loads at
/// most, each with a fresh profile; returns the last one. Every load that is not ready is
/// printed (its DOM and Chromium's log) so that a failing test shows each attempt.
///
/// Why more than one: a browser on a loaded machine sometimes exits without a DOM, and once
/// in CI (2026-12-01) a page's two subresources failed on the browser's side, with nothing
/// failed in the daemon's log. A fault of the daemon fails every load, so the test still
/// fails; `ready` should be what the test goes on to assert.
pub fn load_until(
    ns: &Netns,
    bin: &Path,
    url: &str,
    edge_ip: &str,
    spki: &[String],
    ready: impl Fn(&PageLoad) -> bool,
) -> PageLoad {
    const LOADS: usize = 3;
    let mut last = load_once(ns, bin, url, edge_ip, spki);
    for attempt in 2..=LOADS {
        if last.dom.contains("<html") && ready(&last) {
            break;
        }
        eprintln!(
            "chromium's load of {url} is not ready; loading it again ({attempt} of {LOADS}). \
             Its DOM:\n{}\nIts log:\n{}",
            last.dom, last.log
        );
        last = load_once(ns, bin, url, edge_ip, spki);
    }
    last
}

fn load_once(ns: &Netns, bin: &Path, url: &str, edge_ip: &str, spki: &[String]) -> PageLoad {
    let profile = tempfile::Builder::new()
        .prefix("fht-chromium-")
        .tempdir()
        .expect("profile dir");
    let rules = format!("--host-resolver-rules=MAP * {edge_ip}");
    let trust = format!("--ignore-certificate-errors-spki-list={}", spki.join(","));
    let data = format!("--user-data-dir={}", profile.path().display());
    let out: std::process::Output = output_timeout(
        ns.cli_cmd(&[
            bin.to_str().expect("utf-8 path"),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            // Shared memory in /tmp: Debian's wrapper adds this when /dev/shm is small, but its
            // check breaks when /dev/shm is mounted twice (as on these machines), so it never
            // does.
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            &rules,
            &trust,
            &data,
            "--dump-dom",
            url,
        ])
        .env("HOME", profile.path()),
        Duration::from_secs(60),
    );
    PageLoad {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(super::base64_decode("YWJj").unwrap(), b"abc");
    }
}
