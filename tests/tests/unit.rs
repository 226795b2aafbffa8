//! The systemd unit (`dist/force-https.service`) and the daemon's side of it: the unit's
//! exposure score stays at 2.0 or less (`systemd-analyze security --offline=yes`), it promises
//! nothing that does not exist, and the daemon reports ready over `$NOTIFY_SOCKET` (Type=notify)
//! once its listeners are bound, and stopping on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fh_tests::*;

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/force-https.service")
}

#[test]
fn unit_exposure_is_at_most_2_0() {
    let unit = unit_path();
    let out = output_timeout(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&unit),
        CMD_TIMEOUT,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for force-https.service:").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level from systemd-analyze: {text}"));
    assert!(score <= 2.0, "exposure {score}: {text}");
    // What the unit promises exists: no man page reference until there is one, Type=notify
    // (the daemon notifies), the user it runs as.
    let body = std::fs::read_to_string(&unit).expect("unit");
    assert!(
        !body.contains("man:"),
        "the unit points to a man page that does not exist"
    );
    assert!(body.contains("Type=notify"));
    assert!(body.contains("User=force-https"));
    let caps = body
        .lines()
        .filter(|l| {
            l.starts_with("AmbientCapabilities=") || l.starts_with("CapabilityBoundingSet=")
        })
        .collect::<Vec<_>>();
    assert_eq!(caps.len(), 2, "{caps:?}");
    for l in caps {
        assert!(!l.contains("CAP_SYS_ADMIN"), "{l}");
    }
}

#[test]
fn daemon_notifies_ready_and_stopping() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let d = Daemon::prepare(
        &ns,
        &Config::new().site(Site::new("shop", &["shop.example.com"]).enforced()),
    );
    let sock_path = d.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.edge])
        .arg(force_https_bin())
        .arg("run")
        .arg("--config")
        .arg(&d.config_path)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the daemon");
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("no READY=1 from the daemon");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // Ready means serving: port 80 answers at once.
    assert!(
        ns.edge_listening(80, false),
        "READY=1 before port 80 listens"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // SIGTERM: STOPPING=1, then a clean exit.
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("no STOPPING=1 from the daemon");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "{st}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
