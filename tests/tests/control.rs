//! The control socket through the CLI: enable/disable taking effect at once, list/stats output,
//! invalid hosts (exit 4) and permission denied (exit 5).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use fh_tests::serde_json::Value;
use fh_tests::*;

fn status_here(host: &str) -> u16 {
    let out = raw_exchange_here(
        edge80(),
        format!("GET /probe HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    status_of(&out.bytes)
}

/// Runs `force-https VERB HOST --config F` from inside the client namespace, then polls `host`
/// every 10 ms until it answers `want`, for at most 100 ms after the CLI returned.
/// Returns the time from CLI return to the first `want` answer.
fn change_and_poll(ns: &Netns, d: &Daemon, verb: &str, host: &str, want: u16) -> Duration {
    change_and_poll_probe(ns, d, verb, host, host, want)
}

/// Same, probing `probe` (a name matched by the pattern `host`).
fn change_and_poll_probe(
    ns: &Netns,
    d: &Daemon,
    verb: &str,
    host: &str,
    probe: &str,
    want: u16,
) -> Duration {
    let cfg = d.config_path.to_str().unwrap().to_string();
    let (out, result) = ns.run_in_client(|| {
        let out = cli(&[verb, host, "--config", &cfg]);
        let returned = Instant::now();
        let mut last = 0;
        for _ in 0..=10 {
            last = status_here(probe);
            if last == want {
                return (out, Ok(returned.elapsed()));
            }
            if returned.elapsed() >= Duration::from_millis(100) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (out, Err((last, returned.elapsed())))
    });
    assert_eq!(out.code(), 0, "{verb} {host}: {}", out.describe());
    match result {
        Ok(t) => t,
        Err((last, t)) => {
            panic!("{verb} {host}: still {last} (want {want}) {t:?} after the CLI returned")
        }
    }
}

fn list_json(d: &Daemon) -> Vec<Value> {
    let o = d.cli(&["list", "--json"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    match json(&o.out()) {
        Value::Array(a) => a,
        Value::Object(mut m) => match m.remove("hosts") {
            Some(Value::Array(a)) => a,
            other => panic!("list --json: no hosts array: {other:?}"),
        },
        other => panic!("list --json: unexpected {other}"),
    }
}

fn entry<'a>(list: &'a [Value], host: &str) -> &'a Value {
    list.iter()
        .find(|e| e["host"] == host)
        .unwrap_or_else(|| panic!("{host} not listed: {list:?}"))
}

#[test]
fn enable_standalone_host_is_immediate_and_disable_reverts() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "blog", 8080);
    let d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("blog", &["blog.example.com"]).backend(&be.url())),
    );

    assert_eq!(
        status_of(&raw_request(
            &ns,
            edge80(),
            b"GET / HTTP/1.1\r\nHost: solo.example.org\r\n\r\n"
        )),
        404
    );
    change_and_poll(&ns, &d, "enable", "solo.example.org", 301);
    assert_eq!(
        String::from_utf8_lossy(&raw_request(
            &ns,
            edge80(),
            b"GET /a?b HTTP/1.1\r\nHost: solo.example.org\r\n\r\n"
        )),
        redirect_bytes(301, "https://solo.example.org/a?b")
    );
    change_and_poll(&ns, &d, "disable", "solo.example.org", 404);
    // The standalone host is gone from the list after disable.
    let l = list_json(&d);
    assert!(
        !l.iter()
            .any(|e| e["host"] == "solo.example.org" && e["enforced"] == true),
        "solo.example.org still enforced: {l:?}"
    );
}

#[test]
fn enable_disable_config_hosts() {
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
    let d = Daemon::start(&ns, &cfg);

    assert_eq!(get(&ns, "blog.example.com", "/").status, 200);
    change_and_poll(&ns, &d, "enable", "blog.example.com", 301);
    change_and_poll(&ns, &d, "disable", "blog.example.com", 200);
    let r = get(&ns, "blog.example.com", "/back");
    assert!(
        r.body_lines().contains(&"backend=be".to_string()),
        "{}",
        r.body_text()
    );

    change_and_poll(&ns, &d, "disable", "shop.example.com", 200);
    let r = get(&ns, "shop.example.com", "/proxied");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body_lines().contains(&"path=/proxied".to_string()),
        "{}",
        r.body_text()
    );
    change_and_poll(&ns, &d, "enable", "shop.example.com", 301);

    // Case and trailing dot are normalized by the CLI/daemon too.
    change_and_poll(&ns, &d, "disable", "Shop.Example.COM.", 200);
    change_and_poll(&ns, &d, "enable", "SHOP.example.com", 301);

    // A runtime wildcard.
    change_and_poll_probe(
        &ns,
        &d,
        "enable",
        "*.wild.example.net",
        "b.wild.example.net",
        301,
    );
    assert_eq!(
        status_of(&raw_request(
            &ns,
            edge80(),
            b"GET / HTTP/1.1\r\nHost: a.b.wild.example.net\r\n\r\n"
        )),
        404
    );

    // Several hosts in one call.
    let o = d.cli(&["enable", "m1.example.org", "m2.example.org"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    for h in ["m1.example.org", "m2.example.org"] {
        let out = raw_request(
            &ns,
            edge80(),
            format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&out), 301, "{h}");
    }
}

#[test]
fn list_json_shape_and_counters() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let be = Backend::start(&ns, "be", 8080);
    let cfg = Config::new()
        .site(Site::new("shop", &["shop.example.com"]).enforced())
        .site(Site::new("blog", &["blog.example.com"]).backend(&be.url()));
    let d = Daemon::start(&ns, &cfg);
    let o = d.cli(&["enable", "solo.example.org"]);
    assert_eq!(o.code(), 0, "{}", o.describe());

    for _ in 0..2 {
        assert_eq!(
            status_of(&raw_request(
                &ns,
                edge80(),
                b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
            )),
            301
        );
    }
    assert_eq!(get(&ns, "blog.example.com", "/").status, 200);

    let l = list_json(&d);
    for e in &l {
        let obj = e
            .as_object()
            .unwrap_or_else(|| panic!("entry not an object: {e}"));
        for k in ["host", "site", "source", "enforced", "redirects", "proxied"] {
            assert!(obj.contains_key(k), "entry lacks {k}: {e}");
        }
        assert!(e["host"].is_string(), "{e}");
        assert!(e["site"].is_string() || e["site"].is_null(), "{e}");
        assert!(e["source"].is_string(), "{e}");
        assert!(e["enforced"].is_boolean(), "{e}");
        assert!(e["redirects"].is_u64() && e["proxied"].is_u64(), "{e}");
    }
    let shop = entry(&l, "shop.example.com");
    assert_eq!(shop["site"], "shop", "{shop}");
    assert_eq!(shop["source"], "config", "{shop}");
    assert_eq!(shop["enforced"], true, "{shop}");
    assert_eq!(shop["redirects"], 2, "{shop}");
    assert_eq!(shop["proxied"], 0, "{shop}");
    let blog = entry(&l, "blog.example.com");
    assert_eq!(blog["site"], "blog", "{blog}");
    assert_eq!(blog["enforced"], false, "{blog}");
    assert_eq!(blog["proxied"], 1, "{blog}");
    assert_eq!(blog["redirects"], 0, "{blog}");
    let solo = entry(&l, "solo.example.org");
    assert!(solo["site"].is_null(), "{solo}");
    assert_eq!(solo["source"], "runtime", "{solo}");
    assert_eq!(solo["enforced"], true, "{solo}");

    // Counters keep increasing.
    assert_eq!(
        status_of(&raw_request(
            &ns,
            edge80(),
            b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
        )),
        301
    );
    assert_eq!(
        status_of(&raw_request(
            &ns,
            edge80(),
            b"GET / HTTP/1.1\r\nHost: solo.example.org\r\n\r\n"
        )),
        301
    );
    let l = list_json(&d);
    assert_eq!(entry(&l, "shop.example.com")["redirects"], 3);
    assert_eq!(entry(&l, "solo.example.org")["redirects"], 1);

    // The table form works too.
    let o = d.cli(&["list"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    for h in ["shop.example.com", "blog.example.com", "solo.example.org"] {
        assert!(o.out().contains(h), "{h} missing from list:\n{}", o.out());
    }
}

fn stats_map(d: &Daemon) -> fh_tests::serde_json::Map<String, Value> {
    let o = d.cli(&["stats", "--json"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let v = json(&o.out());
    let v = match v {
        Value::Object(mut m) if m.get("stats").is_some_and(Value::is_object) => {
            m.remove("stats").unwrap()
        }
        v => v,
    };
    let m = v
        .as_object()
        .unwrap_or_else(|| panic!("stats --json is not an object: {v}"))
        .clone();
    assert!(!m.is_empty(), "no counters");
    for (k, v) in &m {
        assert!(v.is_u64(), "counter {k} is not a number: {v}");
    }
    m
}

#[test]
fn stats_json_counts_requests() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("shop", &["shop.example.com"]).enforced()),
    );
    let before = stats_map(&d);
    for _ in 0..3 {
        assert_eq!(
            status_of(&raw_request(
                &ns,
                edge80(),
                b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
            )),
            301
        );
    }
    let after = stats_map(&d);
    let grew: Vec<&String> = after
        .iter()
        .filter(|(k, v)| {
            v.as_u64().unwrap() >= before.get(*k).and_then(Value::as_u64).unwrap_or(0) + 3
        })
        .map(|(k, _)| k)
        .collect();
    assert!(
        !grew.is_empty(),
        "no counter grew by 3 after 3 redirects:\nbefore {before:?}\nafter {after:?}"
    );
    let o = d.cli(&["stats"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert!(!o.out().trim().is_empty());
}

#[test]
fn invalid_host_exits_4_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("shop", &["shop.example.com"]).enforced()),
    );
    let before = list_json(&d);
    for args in [
        &["enable", "bad host"][..],
        &["enable", "a/b"],
        &["enable", "good.example.org", "bad host"],
        &["disable", "shop.example.com", "a/b"],
        &["enable", "*.*.example.com"],
        &["enable", "shop.example.com:80"],
        &["enable", ""],
    ] {
        let o = d.cli(args);
        assert_eq!(o.code(), 4, "{args:?}: {}", o.describe());
        assert!(!o.err().trim().is_empty(), "{args:?}: no message");
    }
    assert_eq!(
        list_json(&d),
        before,
        "the host list changed after rejected commands"
    );
    assert_eq!(
        status_of(&raw_request(
            &ns,
            edge80(),
            b"GET / HTTP/1.1\r\nHost: good.example.org\r\n\r\n"
        )),
        404
    );
    assert_eq!(
        status_of(&raw_request(
            &ns,
            edge80(),
            b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
        )),
        301
    );
}

#[test]
fn permission_denied_exits_5() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let d = Daemon::start(
        &ns,
        &Config::new().site(Site::new("shop", &["shop.example.com"]).enforced()),
    );
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "control socket mode {mode:o}");
    // Let the unprivileged user reach the socket's directory, so only the socket mode stops it.
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = list_json(&d);
    let sock = d.socket.to_str().unwrap();
    for args in [
        &["list", "--control", sock][..],
        &["enable", "x.example.org", "--control", sock],
        &["stats", "--control", sock],
    ] {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(force_https_bin())
            .args(args);
        let o = output_timeout(&mut cmd, CMD_TIMEOUT);
        assert_eq!(o.code(), 5, "{args:?} as nobody: {}", o.describe());
        assert!(
            o.err().to_lowercase().contains("permission") || o.err().contains(sock),
            "{args:?}: message should say permission denied: {}",
            o.err()
        );
    }
    assert_eq!(list_json(&d), before);
    assert!(Path::new(&d.socket).exists());
}

#[test]
fn bulk_enable_from_file_and_stdin_all_or_nothing() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let d = Daemon::start(&ns, &Config::new());
    let file = d.dir().join("hosts.txt");
    std::fs::write(
        &file,
        "# fleet A\na.bulk.example\n\n  b.bulk.example  \n*.c.bulk.example\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = d.cli(&["enable", "--from-file", f, "x.bulk.example"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let list = list_json(&d);
    for h in [
        "a.bulk.example",
        "b.bulk.example",
        "*.c.bulk.example",
        "x.bulk.example",
    ] {
        assert_eq!(entry(&list, h)["enforced"], true, "{h}");
    }
    // One invalid line: exit 4 naming it, and nothing changes.
    std::fs::write(&file, "d.bulk.example\nbad host\n").unwrap();
    let o = d.cli(&["disable", "--from-file", f, "a.bulk.example"]);
    assert_eq!(o.code(), 4, "{}", o.describe());
    assert!(o.err().contains("bad host"), "{}", o.describe());
    let list = list_json(&d);
    assert_eq!(entry(&list, "a.bulk.example")["enforced"], true);
    assert!(list.iter().all(|e| e["host"] != "d.bulk.example"));
    // From standard input.
    let cfg = d.config_path.to_str().unwrap();
    let mut c = cli_command(&["disable", "--from-file", "-", "--config", cfg]);
    c.stdin(std::process::Stdio::piped());
    c.stdout(std::process::Stdio::piped());
    c.stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"a.bulk.example\nb.bulk.example\n")
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", o.describe());
    let list = list_json(&d);
    assert!(
        list.iter().all(|e| e["host"] != "a.bulk.example"),
        "{list:?}"
    );
    assert!(
        list.iter().all(|e| e["host"] != "b.bulk.example"),
        "{list:?}"
    );
    assert_eq!(entry(&list, "x.bulk.example")["enforced"], true);
    // A missing file is a usage error.
    let o = d.cli(&["enable", "--from-file", "/nonexistent/hosts"]);
    assert_eq!(o.code(), 2, "{}", o.describe());
}
