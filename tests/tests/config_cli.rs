//! CLI behaviour that needs no daemon and no root: `check` on good and bad configs (exit 2 with
//! the line), `run` refusing a bad config, usage errors, and "daemon not running" (exit 3).

use std::path::Path;
use std::time::Duration;

use fh_tests::*;

/// A valid config whose listeners are on loopback (never port 80 on the host, in case `run`
/// were to start by mistake) and whose state lives in `dir`. Line numbers matter: see below.
fn base_config(dir: &Path) -> Vec<String> {
    let sd = dir.join("state");
    let cs = dir.join("control.sock");
    vec![
        "[listen]".into(),                                                 // 1
        "http = [\"127.0.0.1:28080\"]".into(),                             // 2
        "https = []".into(),                                               // 3
        String::new(),                                                     // 4
        "[state]".into(),                                                  // 5
        format!("dir = {}", toml_str(sd.to_str().unwrap())),               // 6
        format!("control_socket = {}", toml_str(cs.to_str().unwrap())),    // 7
        String::new(),                                                     // 8
        "[[site]]".into(),                                                 // 9
        "name = \"shop\"".into(),                                          // 10
        "domains = [\"shop.example.com\", \"*.shop.example.com\"]".into(), // 11
        "backend = \"http://127.0.0.1:8080\"".into(),                      // 12
        "force_https = true".into(),                                       // 13
    ]
}

fn write_config(dir: &Path, lines: &[String]) -> String {
    let p = dir.join("config.toml");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p.to_str().unwrap().to_string()
}

/// True when `text` contains `line N` not followed by another digit.
fn mentions_line(text: &str, n: usize) -> bool {
    let pat = format!("line {n}");
    text.match_indices(&pat)
        .any(|(i, _)| !text[i + pat.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &base_config(dir.path()));
    let o = cli(&["check", "--config", &cfg]);
    assert_eq!(o.code(), 0, "{}", o.describe());
}

#[test]
fn check_warns_about_preload_without_include_subdomains_or_a_year() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = base_config(dir.path());
    assert!(
        cli(&["check", "--config", &write_config(dir.path(), &lines)])
            .err()
            .is_empty()
    );
    lines.push("hsts = { preload = true, max_age = 600 }".into());
    let o = cli(&["check", "--config", &write_config(dir.path(), &lines)]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let err = o.err();
    assert!(
        err.contains("warning: site \"shop\": hsts preload = true without include_subdomains"),
        "{}",
        o.describe()
    );
    assert!(
        err.contains("warning: site \"shop\": hsts preload = true with max_age = 600 < 31536000"),
        "{}",
        o.describe()
    );
}

#[test]
fn check_and_run_reject_bad_configs_with_the_line() {
    type Edit = Box<dyn Fn(&mut Vec<String>)>;
    let cases: Vec<(&str, Edit, usize)> = vec![
        (
            "unknown key in a site",
            Box::new(|l: &mut Vec<String>| l.push("frobnicate = 1".into())),
            14,
        ),
        (
            "unknown key in a table",
            Box::new(|l: &mut Vec<String>| l.insert(3, "colour = \"blue\"".into())),
            4,
        ),
        (
            "bad domain",
            Box::new(|l: &mut Vec<String>| {
                l[10] = "domains = [\"shop.example.com\", \"bad domain!\"]".into()
            }),
            11,
        ),
        (
            "bad backend URL",
            Box::new(|l: &mut Vec<String>| l[11] = "backend = \"ftp://127.0.0.1:8080\"".into()),
            12,
        ),
        (
            "unparsable backend URL",
            Box::new(|l: &mut Vec<String>| l[11] = "backend = \"not a url\"".into()),
            12,
        ),
        (
            "TOML syntax error",
            Box::new(|l: &mut Vec<String>| l[12] = "force_https = tru".into()),
            13,
        ),
        (
            "unterminated string",
            Box::new(|l: &mut Vec<String>| l[9] = "name = \"shop".into()),
            10,
        ),
    ];
    for (what, edit, line) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = base_config(dir.path());
        edit(&mut lines);
        let cfg = write_config(dir.path(), &lines);

        let o = cli(&["check", "--config", &cfg]);
        assert_eq!(o.code(), 2, "{what}: check: {}", o.describe());
        assert!(
            mentions_line(&o.err(), line),
            "{what}: check stderr should say `line {line}`:\n{}",
            o.err()
        );
        assert!(
            o.err().contains(&cfg),
            "{what}: check stderr should name {cfg}:\n{}",
            o.err()
        );

        // `run` refuses to start, with the same error (bounded: it must exit by itself).
        let o = output_timeout(
            cli_command(&["run", "--config", &cfg]).env("RUST_LOG", "info"),
            Duration::from_secs(10),
        );
        assert_eq!(o.code(), 2, "{what}: run: {}", o.describe());
        assert!(
            mentions_line(&o.err(), line),
            "{what}: run stderr should say `line {line}`:\n{}",
            o.err()
        );
        assert!(
            !dir.path().join("control.sock").exists(),
            "{what}: run created the control socket"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["frobnicate"][..], &["enable"], &["list", "--bogus"], &[]] {
        let o = cli(args);
        assert_eq!(o.code(), 2, "{args:?}: {}", o.describe());
    }
}

#[test]
fn daemon_not_running_exits_3_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sock");
    let missing = missing.to_str().unwrap();
    for args in [
        &["list", "--control", missing][..],
        &["enable", "a.example.com", "--control", missing],
        &["stats", "--json", "--control", missing],
    ] {
        let o = cli(args);
        assert_eq!(o.code(), 3, "{args:?}: {}", o.describe());
        assert!(
            o.err().contains(missing),
            "{args:?}: message should name {missing}: {}",
            o.err()
        );
    }

    // Socket path taken from --config.
    let cfg = write_config(dir.path(), &base_config(dir.path()));
    let sock = dir.path().join("control.sock");
    let o = cli(&["list", "--config", &cfg]);
    assert_eq!(o.code(), 3, "{}", o.describe());
    assert!(o.err().contains(sock.to_str().unwrap()), "{}", o.err());

    // A stale socket file nobody listens on: connection refused is "not running" too.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let o = cli(&["disable", "a.example.com", "--config", &cfg]);
    assert_eq!(o.code(), 3, "{}", o.describe());
    assert!(o.err().contains(sock.to_str().unwrap()), "{}", o.err());
}

#[test]
fn invalid_host_exits_4_without_a_daemon() {
    // Host names are validated before the daemon is contacted.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sock");
    for h in ["bad host", "a/b"] {
        let o = cli(&["enable", h, "--control", missing.to_str().unwrap()]);
        assert_eq!(o.code(), 4, "{h:?}: {}", o.describe());
    }
}
