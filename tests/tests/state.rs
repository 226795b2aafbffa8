//! Persistence of runtime changes across SIGTERM and kill -9, a corrupt state file, and the
//! SIGTERM drain of in-flight requests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fh_tests::serde_json::Value;
use fh_tests::*;

fn status(ns: &Netns, host: &str) -> u16 {
    status_of(&raw_request(
        ns,
        edge80(),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    ))
}

/// The persisted state as the daemon would load it: the snapshot `state.json`, then the
/// journal `state.journal` replayed over it (one JSON line per change, `null` removes).
fn read_state(d: &Daemon) -> Value {
    let path = d.state_file();
    let mut v = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let v = json(&text);
            assert_eq!(v["version"], 1, "state file {text}");
            assert!(v["hosts"].is_object(), "state file {text}");
            v
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json(r#"{"version":1,"hosts":{}}"#),
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    let journal = d.state_dir.join("state.journal");
    if let Ok(text) = std::fs::read_to_string(&journal) {
        let hosts = v["hosts"].as_object_mut().expect("hosts object");
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let change = json(line);
            for (host, enforced) in change["hosts"].as_object().expect("journal line") {
                if enforced.is_null() {
                    hosts.remove(host);
                } else {
                    hosts.insert(host.clone(), enforced.clone());
                }
            }
        }
    }
    v
}

#[test]
fn runtime_changes_survive_sigterm_and_restart() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "be", 8080);
    let cfg = Config::new()
        .site(Site::new("blog", &["blog.example.com"]).backend(&be.url()))
        .site(
            Site::new("shop", &["shop.example.com"])
                .backend(&be.url())
                .enforced(),
        );
    let mut d = Daemon::start(&ns, &cfg);

    for args in [
        &["enable", "solo.example.org", "blog.example.com"][..],
        &["disable", "shop.example.com"],
    ] {
        let o = d.cli(args);
        assert_eq!(o.code(), 0, "{args:?}: {}", o.describe());
    }
    assert_eq!(status(&ns, "solo.example.org"), 301);
    assert_eq!(status(&ns, "blog.example.com"), 301);
    assert_eq!(status(&ns, "shop.example.com"), 200);

    d.sigterm();
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("daemon did not exit within 10 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");

    let s = read_state(&d);
    assert_eq!(s["hosts"]["solo.example.org"], true, "{s}");
    assert_eq!(s["hosts"]["blog.example.com"], true, "{s}");
    assert_eq!(s["hosts"]["shop.example.com"], false, "{s}");

    d.restart();
    assert_eq!(status(&ns, "solo.example.org"), 301);
    assert_eq!(status(&ns, "blog.example.com"), 301);
    assert_eq!(status(&ns, "shop.example.com"), 200);
}

#[test]
fn kill9_right_after_enable_keeps_the_change() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let mut d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("shop", &["shop.example.com"]).enforced()),
    );
    let o = d.cli(&["enable", "solo.example.org"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    d.kill9();
    assert_eq!(read_state(&d)["hosts"]["solo.example.org"], true);
    d.restart();
    assert_eq!(status(&ns, "solo.example.org"), 301);
    assert_eq!(status(&ns, "shop.example.com"), 301);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Enforced,
    NotEnforced,
    Unknown,
}

#[test]
fn kill9_during_enable_disable_loop_keeps_every_acknowledged_change() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let mut d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("shop", &["shop.example.com"]).enforced()),
    );
    let cfg = d.config_path.to_str().unwrap().to_string();
    let stop = AtomicBool::new(false);
    let acked: Mutex<BTreeMap<String, Want>> = Mutex::new(BTreeMap::new());
    let ok_count = std::sync::atomic::AtomicUsize::new(0);

    std::thread::scope(|s| {
        s.spawn(|| {
            // enable h<i>; for even i, disable it again right after.
            for i in 0..400 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let host = format!("h{i}.loop.example.org");
                let o = cli(&["enable", &host, "--config", &cfg]);
                if o.code() != 0 {
                    acked.lock().unwrap().insert(host, Want::Unknown);
                    break;
                }
                acked.lock().unwrap().insert(host.clone(), Want::Enforced);
                ok_count.fetch_add(1, Ordering::SeqCst);
                if i % 2 == 0 {
                    // Until the disable is acknowledged, either state is acceptable.
                    acked.lock().unwrap().insert(host.clone(), Want::Unknown);
                    let o = cli(&["disable", &host, "--config", &cfg]);
                    if o.code() != 0 {
                        break;
                    }
                    acked.lock().unwrap().insert(host, Want::NotEnforced);
                    ok_count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let reached = wait_until(Duration::from_secs(20), Duration::from_millis(5), || {
            ok_count.load(Ordering::SeqCst) >= 15
        });
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        assert!(
            reached,
            "only {} acknowledged changes in 20 s",
            ok_count.load(Ordering::SeqCst)
        );
    });

    let acked = acked.into_inner().unwrap();
    let state = read_state(&d);
    let hosts = &state["hosts"];
    let mut checked = 0;
    for (host, want) in &acked {
        match want {
            Want::Enforced => {
                assert_eq!(
                    hosts[host.as_str()],
                    true,
                    "{host} acknowledged enabled but state is {state}"
                );
                checked += 1;
            }
            Want::NotEnforced => {
                assert_ne!(
                    hosts[host.as_str()],
                    true,
                    "{host} acknowledged disabled but state is {state}"
                );
                checked += 1;
            }
            Want::Unknown => {}
        }
    }
    assert!(
        checked >= 10,
        "too few acknowledged changes checked: {checked}"
    );

    d.restart();
    let l = d.cli(&["list", "--json"]);
    assert_eq!(l.code(), 0, "{}", l.describe());
    let list = json(&l.out());
    let list = list
        .as_array()
        .cloned()
        .or_else(|| list["hosts"].as_array().cloned())
        .expect("list array");
    for (host, want) in &acked {
        let e = list.iter().find(|e| e["host"] == host.as_str());
        match want {
            Want::Enforced => assert_eq!(
                e.map(|e| &e["enforced"]),
                Some(&Value::Bool(true)),
                "{host} after restart: {e:?}"
            ),
            Want::NotEnforced => assert!(
                e.is_none_or(|e| e["enforced"] == false),
                "{host} after restart: {e:?}"
            ),
            Want::Unknown => {}
        }
    }
    if let Some((host, _)) = acked.iter().find(|(_, w)| **w == Want::Enforced) {
        assert_eq!(status(&ns, host), 301, "{host}");
    }
}

#[test]
fn corrupt_state_file_stops_startup() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let mut d = Daemon::prepare(
        &ns,
        &Config::new().site(Site::new("shop", &["shop.example.com"]).enforced()),
    );
    std::fs::create_dir_all(&d.state_dir).unwrap();
    std::fs::write(d.state_file(), "{garbage").unwrap();
    d.launch();
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("daemon kept running with a corrupt state file");
    assert!(!st.success(), "exit status {st}");
    let log = d.log();
    let path = d.state_file();
    assert!(
        log.contains(path.to_str().unwrap()),
        "the error does not name {}:\n{log}",
        path.display()
    );
    // The corrupt file is left for the operator.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{garbage");
}

#[test]
fn sigterm_drains_in_flight_requests() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let slow = Backend::start_with(&ns, "slow", 8080, &["--delay-ms", "1000"]);
    let mut d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("slow", &["slow.example.com"]).backend(&slow.url())),
    );
    let start = Instant::now();
    let (resp, exit) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            ns.run_in_client(|| {
                http_request_here(
                    edge80(),
                    b"GET /drain HTTP/1.1\r\nHost: slow.example.com\r\n\r\n",
                )
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        d.sigterm();
        let exit = d.wait_exit(Duration::from_secs(10));
        (h.join().expect("client thread"), exit)
    });
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        resp.body_lines().contains(&"path=/drain".to_string()),
        "{}",
        resp.body_text()
    );
    assert!(start.elapsed() >= Duration::from_millis(900));
    let exit = exit.expect("daemon did not exit within 10 s of SIGTERM");
    assert_eq!(exit.code(), Some(0), "exit status {exit}");
}
