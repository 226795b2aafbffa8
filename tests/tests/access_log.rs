//! The access log (`[log] access = "json"`), black-box: one JSON line per request with the
//! documented fields, from the port-80 socket path (raw answers and proxied requests) and the
//! TLS path; a reload turns it on and off.

use std::time::Duration;

use fh_tests::*;

const SHOP: &str = "shop.example.com";
const BLOG: &str = "blog.example.com";

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(json)
        .collect()
}

fn wait_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        got = lines(path);
        got.len() >= n
    });
    got
}

#[test]
fn json_lines_for_redirects_proxied_and_tls_requests_and_reload_toggles_it() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let a = Backend::start(&ns, "a", 9001);
    let mut d = Daemon::prepare(&ns, &Config::new());
    let dir = d.dir().to_path_buf();
    let (cert, key) = self_signed(&dir, &[SHOP, BLOG]);
    let log = dir.join("access.log");
    let (state_dir, socket) = (d.state_dir.clone(), d.socket.clone());
    let cfg = |access: &str| {
        Config::new()
            .site(Site::new("shop", &[SHOP]).backend(&a.url()).enforced())
            .site(Site::new("blog", &[BLOG]).backend(&a.url()))
            .https()
            .extra(&format!(
                "[tls]\ndefault_cert = {{ cert = {}, key = {} }}\n[log]\naccess = \"{access}\"\npath = {}\n",
                toml_str(&cert),
                toml_str(&key),
                toml_str(log.to_str().unwrap())
            ))
            .render(&state_dir, &socket)
    };
    std::fs::write(&d.config_path, cfg("json")).unwrap();
    d.launch();
    d.wait_ready();

    // A raw redirect, a raw 404, a proxied request (two on one keep-alive connection through
    // curl), one over TLS.
    assert_eq!(get(&ns, SHOP, "/cart?x=1").status, 301);
    assert_eq!(get(&ns, "nobody.example", "/").status, 404);
    let r = curl(
        &ns,
        &[
            &format!("http://{BLOG}/a"),
            &format!("http://{BLOG}/b"),
            "--resolve",
            &format!("{BLOG}:80:{EDGE_V4}"),
        ],
    );
    assert!(r.contains("backend=a"), "{r}");
    let r = curl(
        &ns,
        &[
            "--cacert",
            &cert,
            "--resolve",
            &format!("{SHOP}:443:{EDGE_V4}"),
            &format!("https://{SHOP}/t"),
        ],
    );
    assert!(r.contains("backend=a"), "{r}");
    let got = wait_lines(&log, 5);
    assert_eq!(got.len(), 5, "{got:?}");
    let keys: Vec<&str> = got[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for k in [
        "time",
        "client",
        "host",
        "method",
        "target",
        "status",
        "bytes",
        "duration_ms",
        "path",
        "decision",
    ] {
        assert!(keys.contains(&k), "{k} missing: {}", got[0]);
    }
    let find = |target: &str| {
        got.iter()
            .find(|l| l["target"] == target)
            .cloned()
            .unwrap_or_else(|| panic!("{target} not logged: {got:?}"))
    };
    let r = find("/cart?x=1");
    assert_eq!(r["host"], SHOP);
    assert_eq!(r["client"], CLIENT_V4);
    assert_eq!(r["method"], "GET");
    assert_eq!(
        (r["status"].as_u64(), r["bytes"].as_u64()),
        (Some(301), Some(0))
    );
    assert_eq!(
        (r["path"].as_str(), r["decision"].as_str()),
        (Some("http80"), Some("redirect"))
    );
    let t = r["time"].as_str().unwrap();
    assert!(
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );
    assert!(r["duration_ms"].as_f64().unwrap() >= 0.0);
    let r = got.iter().find(|l| l["status"] == 404).unwrap();
    assert_eq!(
        (r["path"].as_str(), r["decision"].as_str()),
        (Some("http80"), Some("local"))
    );
    for t in ["/a", "/b"] {
        let r = find(t);
        assert_eq!(
            (r["status"].as_u64(), r["host"].as_str()),
            (Some(200), Some(BLOG))
        );
        assert_eq!(
            (r["path"].as_str(), r["decision"].as_str()),
            (Some("http80"), Some("proxy"))
        );
        assert!(r["bytes"].as_u64().unwrap() > 0, "{r}");
    }
    let r = find("/t");
    assert_eq!(
        (r["path"].as_str(), r["decision"].as_str()),
        (Some("tls"), Some("proxy"))
    );

    let stats = json(&d.cli(&["stats", "--json"]).out());
    assert_eq!(stats["access_log_lines"].as_u64(), Some(5), "{stats}");
    assert_eq!(stats["access_log_dropped"].as_u64(), Some(0), "{stats}");

    // Off by reload: nothing more is logged.
    std::fs::write(&d.config_path, cfg("off")).unwrap();
    assert!(d.cli(&["reload"]).status.success());
    assert_eq!(get(&ns, SHOP, "/after-off").status, 301);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lines(&log).len(), 5);
    // On again, after logrotate moved the file: a new file is opened.
    std::fs::rename(&log, dir.join("access.log.1")).unwrap();
    std::fs::write(&d.config_path, cfg("json")).unwrap();
    assert!(d.cli(&["reload"]).status.success());
    assert_eq!(get(&ns, SHOP, "/after-on").status, 301);
    let got = wait_lines(&log, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["target"], "/after-on");
}
