//! Live configuration reload, black-box: the daemon in namespaces, its config file rewritten,
//! then `force-https reload` or SIGHUP.
//!
//! - a site's backend, HSTS, redirect code and exempt paths change, and a domain is added:
//!   each takes effect (through the CLI and through SIGHUP);
//! - a broken file: the reload exits non-zero naming line and column, the old configuration
//!   keeps serving;
//! - a runtime override (disable, enable of a standalone host) survives a reload;
//! - a changed listen address is reported as needing a restart, the rest is applied;
//! - a slow request in flight during a reload finishes on the old backend;
//! - with the XDP fast path, a domain added by a reload is answered by XDP.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use fh_tests::*;

const SHOP: &str = "shop.example.com";
const BLOG: &str = "blog.example.com";
const NEW: &str = "new.example.com";

/// The config text of the tests: shop (enforced, `code`, exempt `exempt`) and blog (not
/// enforced) on `shop_backend`/`blog_backend`, TLS with a self-signed certificate for every
/// name, `[hsts] max_age`, and `extra_domain` added to shop when given.
struct Cfg<'a> {
    shop_backend: &'a str,
    blog_backend: &'a str,
    code: u16,
    exempt: &'a str,
    max_age: u32,
    extra_domain: Option<&'a str>,
    http: &'a str,
    tls: Option<(&'a str, &'a str)>,
}

impl Cfg<'_> {
    fn render(&self, d: &Daemon) -> String {
        let domains = match self.extra_domain {
            Some(x) => format!("[\"{SHOP}\", \"{x}\"]"),
            None => format!("[\"{SHOP}\"]"),
        };
        let (https, tls) = match self.tls {
            Some((c, k)) => (
                "[\"0.0.0.0:443\"]".to_string(),
                format!(
                    "[tls]\ndefault_cert = {{ cert = {}, key = {} }}\n",
                    toml_str(c),
                    toml_str(k)
                ),
            ),
            None => ("[]".to_string(), String::new()),
        };
        format!(
            "[listen]\nhttp = {http}\nhttps = {https}\n\n[state]\ndir = {sd}\ncontrol_socket = {cs}\n\n\
             [hsts]\nmax_age = {age}\n\n{tls}\n\
             [[site]]\nname = \"shop\"\ndomains = {domains}\nbackend = \"{sb}\"\nforce_https = true\n\
             redirect_code = {code}\nexempt_paths = [\"{ex}\"]\n\n\
             [[site]]\nname = \"blog\"\ndomains = [\"{BLOG}\"]\nbackend = \"{bb}\"\n",
            http = self.http,
            sd = toml_str(d.state_dir.to_str().unwrap()),
            cs = toml_str(d.socket.to_str().unwrap()),
            age = self.max_age,
            sb = self.shop_backend,
            bb = self.blog_backend,
            code = self.code,
            ex = self.exempt,
        )
    }
}

const HTTP_DEFAULT: &str = "[\"0.0.0.0:80\", \"[::]:80\"]";

/// `stats --json --control SOCKET` (the file may be broken: the CLI must not read it).
fn stats(d: &Daemon) -> serde_json::Value {
    let o = cli(&["stats", "--json", "--control", d.socket.to_str().unwrap()]);
    assert!(o.status.success(), "stats: {}", o.describe());
    json(&o.out())
}

fn stat(d: &Daemon, name: &str) -> u64 {
    let s = stats(d);
    s[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {s}"))
}

/// `force-https reload --control SOCKET` (the file may be broken: the CLI must not read it).
fn reload_cli(d: &Daemon) -> std::process::Output {
    cli(&["reload", "--control", d.socket.to_str().unwrap()])
}

fn sighup(d: &Daemon) {
    let st = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

/// Waits (bounded) until the daemon counted `n` reloads, applied or refused.
fn wait_reloads(d: &Daemon, n: u64) {
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let s = stats(d);
        s["config_reloads"].as_u64().unwrap_or(0)
            + s["config_reload_failures"].as_u64().unwrap_or(0)
            >= n
    });
    assert!(ok, "no reload counted: {}", stats(d));
}

fn status(r: &HttpResponse) -> u16 {
    r.status
}

/// `curl https://HOST/PATH` from the client namespace, trusting `ca`; returns the head and
/// body.
fn curl_https(ns: &Netns, ca: &str, host: &str, path: &str) -> String {
    curl(
        ns,
        &[
            "--cacert",
            ca,
            "--resolve",
            &format!("{host}:443:{EDGE_V4}"),
            &format!("https://{host}{path}"),
        ],
    )
}

enum Via {
    Cli,
    Sighup,
}

fn everything_changes(via: Via) {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let a = Backend::start(&ns, "a", 9001);
    let b = Backend::start(&ns, "b", 9002);
    let mut d = Daemon::prepare(&ns, &Config::new());
    let pki = d.dir().to_path_buf();
    let (cert, key) = self_signed(&pki, &[SHOP, BLOG, NEW]);
    let mut cfg = Cfg {
        shop_backend: &a.url(),
        blog_backend: &a.url(),
        code: 301,
        exempt: "/healthz",
        max_age: 100,
        extra_domain: None,
        http: HTTP_DEFAULT,
        tls: Some((&cert, &key)),
    };
    std::fs::write(&d.config_path, cfg.render(&d)).unwrap();
    d.launch();
    d.wait_ready();

    // Before.
    let post = |host: &str, path: &str| {
        http_request(
            &ns,
            edge80(),
            format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    assert_eq!(status(&post(SHOP, "/x")), 301);
    assert!(get(&ns, SHOP, "/healthz").body_text().contains("backend=a"));
    assert_eq!(status(&get(&ns, SHOP, "/status")), 301);
    assert_eq!(status(&get(&ns, NEW, "/")), 404);
    let r = curl_https(&ns, &cert, SHOP, "/");
    assert!(r.contains("backend=a"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=100"),
        "{r}"
    );

    // Every kind of change at once.
    let b_url = b.url();
    cfg.shop_backend = &b_url;
    cfg.code = 308;
    cfg.exempt = "/status";
    cfg.max_age = 200;
    cfg.extra_domain = Some(NEW);
    std::fs::write(&d.config_path, cfg.render(&d)).unwrap();
    match via {
        Via::Cli => {
            let o = reload_cli(&d);
            assert!(o.status.success(), "reload: {}", o.describe());
            assert!(o.out().contains("reloaded"), "{}", o.describe());
            assert!(!o.out().contains("restart"), "{}", o.describe());
        }
        Via::Sighup => {
            sighup(&d);
            wait_reloads(&d, 1);
        }
    }
    assert_eq!(stat(&d, "config_reloads"), 1);

    // The redirect code: a POST (and a GET) now 308.
    assert_eq!(status(&post(SHOP, "/x")), 308);
    assert_eq!(status(&get(&ns, SHOP, "/x")), 308);
    // Exempt paths: /status proxied, to the new backend; /healthz redirected.
    let r = get(&ns, SHOP, "/status");
    assert_eq!(status(&r), 200, "{}", r.body_text());
    assert!(r.body_text().contains("backend=b"), "{}", r.body_text());
    assert_eq!(status(&get(&ns, SHOP, "/healthz")), 308);
    // The domain added to shop.
    let r = get(&ns, NEW, "/p?q=1");
    assert_eq!(status(&r), 308);
    assert_eq!(r.header("location"), Some("https://new.example.com/p?q=1"));
    // HSTS and backend over TLS.
    let r = curl_https(&ns, &cert, SHOP, "/");
    assert!(r.contains("backend=b"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=200"),
        "{r}"
    );
    let r = curl_https(&ns, &cert, NEW, "/");
    assert!(r.contains("backend=b"), "{r}");
    // blog untouched.
    assert!(get(&ns, BLOG, "/").body_text().contains("backend=a"));
    assert!(d.running());
}

#[test]
fn reload_by_cli_applies_backend_hsts_code_exempt_paths_and_domains() {
    everything_changes(Via::Cli);
}

#[test]
fn sighup_applies_backend_hsts_code_exempt_paths_and_domains() {
    everything_changes(Via::Sighup);
}

/// A started daemon with the plain (no TLS) test config on backend `a`.
fn plain(ns: &Netns, a: &Backend) -> (Daemon, String) {
    let mut d = Daemon::prepare(ns, &Config::new());
    let url = a.url();
    let text = Cfg {
        shop_backend: &url,
        blog_backend: &url,
        code: 301,
        exempt: "/healthz",
        max_age: 100,
        extra_domain: None,
        http: HTTP_DEFAULT,
        tls: None,
    }
    .render(&d);
    std::fs::write(&d.config_path, &text).unwrap();
    d.launch();
    d.wait_ready();
    (d, text)
}

#[test]
fn a_broken_file_changes_nothing_and_names_line_and_column() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let a = Backend::start(&ns, "a", 9001);
    let (d, text) = plain(&ns, &a);
    // A valid change (shop no longer enforced) plus an error on line 17.
    let broken = text.replace("force_https = true", "force_https = false")
        + "[[site]]\nname = \"bad\"\ndomains = [\"bad host\"]\n";
    let line = broken.lines().position(|l| l.contains("bad host")).unwrap() + 1;
    std::fs::write(&d.config_path, &broken).unwrap();
    let o = reload_cli(&d);
    assert!(!o.status.success(), "{}", o.describe());
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains(&format!("config.toml: line {line}, column 12")),
        "{err}"
    );
    assert!(err.contains("bad host"), "{err}");
    // Nothing applied: shop still redirected.
    assert_eq!(status(&get(&ns, SHOP, "/")), 301);
    assert_eq!(stat(&d, "config_reload_failures"), 1);
    assert_eq!(stat(&d, "config_reloads"), 0);
    // SIGHUP with the same file: refused and logged, the daemon keeps serving.
    sighup(&d);
    wait_reloads(&d, 2);
    assert_eq!(stat(&d, "config_reload_failures"), 2);
    assert!(
        d.log().contains(&format!("line {line}, column 12")),
        "{}",
        d.log()
    );
    assert_eq!(status(&get(&ns, SHOP, "/")), 301);
    // Fixed: applied.
    std::fs::write(
        &d.config_path,
        text.replace("force_https = true", "force_https = false"),
    )
    .unwrap();
    let o = reload_cli(&d);
    assert!(o.status.success(), "{}", o.describe());
    assert!(get(&ns, SHOP, "/").body_text().contains("backend=a"));
}

#[test]
fn runtime_overrides_survive_a_reload() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let a = Backend::start(&ns, "a", 9001);
    let b = Backend::start(&ns, "b", 9002);
    let (d, text) = plain(&ns, &a);
    for args in [
        ["disable", SHOP].as_slice(),
        ["enable", BLOG].as_slice(),
        ["enable", "solo.example.org"].as_slice(),
    ] {
        let o = d.cli(args);
        assert!(o.status.success(), "{args:?}: {}", o.describe());
    }
    // The reload moves both sites to backend b and makes shop's config default "enforced"
    // again (unchanged) and blog's "not enforced" (unchanged): the overrides must win.
    std::fs::write(&d.config_path, text.replace(&a.url(), &b.url())).unwrap();
    let o = reload_cli(&d);
    assert!(o.status.success(), "{}", o.describe());
    let r = get(&ns, SHOP, "/");
    assert_eq!(status(&r), 200);
    assert!(r.body_text().contains("backend=b"), "{}", r.body_text());
    assert_eq!(status(&get(&ns, BLOG, "/")), 301);
    assert_eq!(status(&get(&ns, "solo.example.org", "/")), 301);
    let list = json(&d.cli(&["list", "--json"]).out());
    let find = |h: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["host"] == h)
            .cloned()
            .unwrap_or_else(|| panic!("{h} not in {list}"))
    };
    assert_eq!(find(SHOP)["overridden"], true);
    assert_eq!(find(SHOP)["enforced"], false);
    assert_eq!(find(BLOG)["overridden"], true);
    assert_eq!(find("solo.example.org")["source"], "runtime");
}

#[test]
fn a_changed_listen_address_needs_a_restart_and_the_rest_is_applied() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let a = Backend::start(&ns, "a", 9001);
    let (d, text) = plain(&ns, &a);
    let next = text
        .replace(
            HTTP_DEFAULT,
            "[\"0.0.0.0:80\", \"[::]:80\", \"0.0.0.0:8080\"]",
        )
        .replace("redirect_code = 301", "redirect_code = 308");
    std::fs::write(&d.config_path, next).unwrap();
    let o = reload_cli(&d);
    assert!(o.status.success(), "{}", o.describe());
    let out = o.out();
    assert!(
        out.contains("needs a restart") && out.contains("[listen] http"),
        "{out}"
    );
    assert!(d.log().contains("needs a restart"), "{}", d.log());
    // Applied: the redirect code. Not applied: the new listener.
    assert_eq!(status(&get(&ns, SHOP, "/")), 308);
    let addr: std::net::SocketAddr = format!("{EDGE_V4}:8080").parse().unwrap();
    let refused = ns.run_in_client(|| {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
    });
    assert!(refused, "port 8080 must not be bound before a restart");
}

#[test]
fn a_request_in_flight_finishes_on_the_old_backend() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let slow = Backend::start_with(&ns, "slow", 9001, &["--delay-ms", "1500"]);
    let fast = Backend::start(&ns, "fast", 9002);
    let (d, text) = plain(&ns, &slow);
    let t0 = Instant::now();
    let in_flight = std::thread::scope(|s| {
        let h = s.spawn(|| get(&ns, BLOG, "/slow"));
        // The request is at the slow backend: reload to the fast one.
        std::thread::sleep(Duration::from_millis(400));
        std::fs::write(&d.config_path, text.replace(&slow.url(), &fast.url())).unwrap();
        let o = reload_cli(&d);
        assert!(o.status.success(), "{}", o.describe());
        let r = get(&ns, BLOG, "/new");
        assert!(r.body_text().contains("backend=fast"), "{}", r.body_text());
        h.join().unwrap()
    });
    assert_eq!(status(&in_flight), 200);
    assert!(
        in_flight.body_text().contains("backend=slow"),
        "{}",
        in_flight.body_text()
    );
    assert!(t0.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn a_domain_added_by_reload_is_answered_by_xdp() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let mut d = Daemon::prepare(&ns, &Config::new());
    let (state_dir, socket) = (d.state_dir.clone(), d.socket.clone());
    let base = |extra: &str| {
        format!(
            "[listen]\nhttp = {HTTP_DEFAULT}\nhttps = []\n[state]\ndir = {}\ncontrol_socket = {}\n\
             [xdp]\ninterface = {}\nmode = \"generic\"\n\
             [[site]]\nname = \"shop\"\ndomains = [\"{SHOP}\"{extra}]\nforce_https = true\n",
            toml_str(state_dir.to_str().unwrap()),
            toml_str(socket.to_str().unwrap()),
            toml_str(&ns.veth_edge),
        )
    };
    std::fs::write(&d.config_path, base("")).unwrap();
    d.launch();
    d.wait_ready();
    let fast = |d: &Daemon| stat(d, "afxdp_redirects_301") + stat(d, "afxdp_redirects_308");
    let req = |host: &str| {
        curl(
            &ns,
            &[
                &format!("http://{host}/x"),
                "--resolve",
                &format!("{host}:80:{EDGE_V4}"),
            ],
        )
    };
    // Warm up: shop is answered by XDP.
    let before = fast(&d);
    let r = req(SHOP);
    assert!(r.starts_with("HTTP/1.1 301"), "{r}");
    assert_eq!(fast(&d), before + 1, "shop not answered by XDP: {r}");
    assert!(req(NEW).starts_with("HTTP/1.1 404"));
    std::fs::write(&d.config_path, base(&format!(", \"{NEW}\""))).unwrap();
    let o = reload_cli(&d);
    assert!(o.status.success(), "{}", o.describe());
    // The host map follows within a moment; then the new domain is answered by XDP.
    let before = fast(&d);
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        last = req(NEW);
        last.starts_with("HTTP/1.1 301") && fast(&d) > before
    });
    assert!(ok, "new domain not answered by XDP: {last}\n{}", stats(&d));
    assert!(
        last.contains("location: https://new.example.com/x")
            || last.contains("Location: https://new.example.com/x"),
        "{last}"
    );
}
