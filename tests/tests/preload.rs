//! `force-https preload-check`: against the real daemon in namespaces with a test CA, a
//! preloadable domain passes every check (text and JSON, exit 0), and each rule the daemon and
//! fh-backend can break fails with the hstspreload issue code and exit 1. Usage errors exit 2.
//!
//! Every domain is under `.test` (RFC 6761), which the Public Suffix List's default rule treats
//! as a TLD: `good.test` is a registrable domain. `--connect` sends the requests to the edge.

use std::{
    process::{Command, Output},
    time::Duration,
};

use fh_tests::*;

/// Bound for one `preload-check` run (its own requests have `--timeout 5`).
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

const PRELOADABLE: &str = "max-age=31536000; includeSubDomains; preload";

/// The shared test CA and one ECDSA certificate (leaf + CA chain) for `sans`.
struct Pki {
    ca: fh_tests::pki::Pki,
    cert: String,
    key: String,
}

impl Pki {
    fn new(sans: &[&str]) -> Pki {
        let ca = fh_tests::pki::Pki::new();
        let (cert, key) = ca.issue("edge", sans[0], sans, false);
        Pki { ca, cert, key }
    }

    fn ca(&self) -> String {
        self.ca.ca()
    }

    /// `tls = { cert = .., key = .. }` for a site.
    fn tls_line(&self) -> String {
        format!(
            "tls = {{ cert = {}, key = {} }}",
            toml_str(&self.cert),
            toml_str(&self.key)
        )
    }
}

/// One `[[site]]` named after the first label of `domain`, with `www.` unless `no_www`.
fn site(pki: &Pki, domain: &str, no_www: bool, enforced: bool, extra: &str) -> String {
    let name = domain.split('.').next().unwrap_or(domain);
    let domains = if no_www {
        format!("[\"{domain}\"]")
    } else {
        format!("[\"{domain}\", \"www.{domain}\"]")
    };
    format!(
        "\n[[site]]\nname = \"{name}\"\ndomains = {domains}\nforce_https = {enforced}\n{}\n{extra}\n",
        pki.tls_line()
    )
}

fn sans(domains: &[&str]) -> Vec<String> {
    domains
        .iter()
        .flat_map(|d| [d.to_string(), format!("www.{d}")])
        .collect()
}

/// `force-https preload-check ARGS` in the client namespace.
fn preload_check(ns: &Netns, args: &[&str]) -> Output {
    let bin = force_https_bin();
    let mut all: Vec<&str> = vec![
        bin.to_str().expect("utf-8"),
        "preload-check",
        "--timeout",
        "5",
    ];
    all.extend_from_slice(args);
    output_timeout(&mut ns.cli_cmd(&all), CHECK_TIMEOUT)
}

/// The check names, in output order.
const CHECKS: [&str; 6] = [
    "domain",
    "tls",
    "header",
    "http-redirects",
    "https-redirects",
    "www",
];

/// Asserts exit 1, a `FAIL` line with `code` and a "not preloadable" verdict.
fn assert_fails_with(o: &Output, code: &str) {
    assert_eq!(o.code(), 1, "expected {code}: {}", o.describe());
    let out = o.out();
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains(&format!(" {code}: "))),
        "no FAIL line with {code}: {}",
        o.describe()
    );
    let verdict = out.lines().last().unwrap_or("");
    assert!(
        verdict.starts_with("verdict: not preloadable") && verdict.contains(code),
        "{}",
        o.describe()
    );
}

/// The edge of the main tests: every site on one certificate, `[hsts]` preloadable.
struct Edge {
    _d: Daemon,
    _dup: Backend,
    _unknown: Backend,
    pki: Pki,
    ns: Netns,
}

const DOMAINS: [&str; 9] = [
    "good.test",
    "lowage.test",
    "nosub.test",
    "noload.test",
    "nohsts.test",
    "plain.test",
    "dup.test",
    "unknown.test",
    "nowww.test",
];

impl Edge {
    fn start() -> Edge {
        let ns = Netns::new();
        let names = sans(&DOMAINS);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let pki = Pki::new(&names);
        let dup = Backend::start_with(
            &ns,
            "dup",
            0,
            &["--hsts", &format!("{PRELOADABLE}; preload")],
        );
        let unknown = Backend::start_with(
            &ns,
            "unknown",
            0,
            &["--hsts", &format!("{PRELOADABLE}; report-uri=\"/r\"")],
        );
        let mut cfg = String::from(
            "[listen]\nhttp = [\"0.0.0.0:80\", \"[::]:80\"]\nhttps = [\"0.0.0.0:443\", \"[::]:443\"]\n\
             [state]\ndir = \"{STATE_DIR}\"\ncontrol_socket = \"{CONTROL_SOCKET}\"\n\
             [hsts]\nmax_age = 31536000\ninclude_subdomains = true\npreload = true\n",
        );
        cfg += &site(&pki, "good.test", false, true, "");
        cfg += &site(&pki, "lowage.test", false, true, "hsts = { max_age = 600 }");
        cfg += &site(
            &pki,
            "nosub.test",
            false,
            true,
            "hsts = { include_subdomains = false }",
        );
        cfg += &site(
            &pki,
            "noload.test",
            false,
            true,
            "hsts = { preload = false }",
        );
        cfg += &site(&pki, "nohsts.test", false, true, "hsts = false");
        cfg += &site(&pki, "plain.test", false, false, "");
        cfg += &site(
            &pki,
            "dup.test",
            false,
            true,
            &format!("backend = \"{}\"", dup.url()),
        );
        cfg += &site(
            &pki,
            "unknown.test",
            false,
            true,
            &format!("backend = \"{}\"", unknown.url()),
        );
        cfg += &site(&pki, "nowww.test", true, true, "");
        let d = Daemon::start(&ns, &Config::raw(&cfg));
        Edge {
            _d: d,
            _dup: dup,
            _unknown: unknown,
            pki,
            ns,
        }
    }

    /// `preload-check DOMAIN --connect EDGE --cacert CA ARGS`.
    fn check(&self, domain: &str, args: &[&str]) -> Output {
        let ca = self.pki.ca();
        let mut all = vec![domain, "--connect", EDGE_V4, "--cacert", &ca];
        all.extend_from_slice(args);
        preload_check(&self.ns, &all)
    }
}

#[test]
fn preloadable_edge_passes_every_check_text_and_json() {
    if !require_root() {
        return;
    }
    let e = Edge::start();
    let o = e.check("good.test", &[]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let out = o.out();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), CHECKS.len() + 1, "{}", o.describe());
    for (line, name) in lines.iter().zip(CHECKS) {
        assert!(
            line.starts_with(&format!("ok    {name} ")),
            "{name}: {}",
            o.describe()
        );
    }
    assert!(
        out.contains(&format!("Strict-Transport-Security: {PRELOADABLE}")),
        "{out}"
    );
    assert!(
        out.contains("http://good.test/ -> https://good.test/ (1 redirect(s))"),
        "{out}"
    );
    assert!(
        lines[CHECKS.len()].starts_with("verdict: preloadable"),
        "{out}"
    );

    // The same over IPv6, and the same as JSON.
    let o = preload_check(
        &e.ns,
        &[
            "good.test",
            "--connect",
            EDGE_V6,
            "--cacert",
            &e.pki.ca(),
            "--json",
        ],
    );
    assert_eq!(o.code(), 0, "{}", o.describe());
    let v = json(&o.out());
    assert_eq!(v["domain"], "good.test", "{v}");
    assert_eq!(v["preloadable"], true, "{v}");
    assert_eq!(v["header"], PRELOADABLE, "{v}");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v}");
    let checks = v["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), CHECKS.len(), "{v}");
    for (c, name) in checks.iter().zip(CHECKS) {
        assert_eq!(c["name"], name, "{v}");
        assert_eq!(c["status"], "ok", "{v}");
        assert_eq!(c["issues"].as_array().map(Vec::len), Some(0), "{v}");
    }
}

#[test]
fn each_rule_fails_with_its_issue_code() {
    if !require_root() {
        return;
    }
    let e = Edge::start();
    let cases: [(&str, &str); 8] = [
        ("lowage.test", "header.preloadable.max_age.too_low"),
        (
            "nosub.test",
            "header.preloadable.include_sub_domains.missing",
        ),
        ("noload.test", "header.preloadable.preload.missing"),
        ("nohsts.test", "response.no_header"),
        ("plain.test", "redirects.http.no_redirect"),
        ("dup.test", "header.parse.repeated.preload"),
        ("unknown.test", "header.parse.unknown_directive"),
        ("nowww.test", "domain.www.no_tls"),
    ];
    for (domain, code) in cases {
        let o = e.check(domain, &[]);
        assert_fails_with(&o, code);
        // JSON names the same code, and exits 1 too.
        let o = e.check(domain, &["--json"]);
        assert_eq!(o.code(), 1, "{domain}: {}", o.describe());
        let v = json(&o.out());
        assert_eq!(v["preloadable"], false, "{v}");
        assert!(
            v["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|c| c == code),
            "{domain}: {v}"
        );
    }
    // The backend's header is the one checked: exactly what it sent.
    let o = e.check("dup.test", &["--json"]);
    let v = json(&o.out());
    assert_eq!(v["header"], format!("{PRELOADABLE}; preload"), "{v}");

    // A subdomain is not preloadable by itself; www is not checked for it.
    let o = e.check("www.good.test", &[]);
    assert_fails_with(&o, "domain.is_subdomain");
    assert!(o.out().contains("`good.test`"), "{}", o.describe());
    assert!(
        o.out().lines().any(|l| l.starts_with("skip  www")),
        "{}",
        o.describe()
    );

    // Without the test CA the chain is not trusted.
    let o = preload_check(&e.ns, &["good.test", "--connect", EDGE_V4]);
    assert_fails_with(&o, "domain.tls.invalid_cert_chain");
    for name in ["header", "http-redirects", "https-redirects", "www"] {
        assert!(
            o.out()
                .lines()
                .any(|l| l.starts_with(&format!("skip  {name} "))),
            "{name}: {}",
            o.describe()
        );
    }

    // Nothing listening there (the client's own address).
    let o = preload_check(
        &e.ns,
        &["good.test", "--connect", CLIENT_V4, "--cacert", &e.pki.ca()],
    );
    assert_fails_with(&o, "domain.tls.cannot_connect");

    // Domain shapes: no request is made.
    for (domain, code) in [
        ("198.51.100.1", "domain.format.ip_address"),
        ("2001:db8:1::1", "domain.format.ip_address"),
        ("co.uk", "domain.format.public_suffix"),
        ("test", "domain.format.public_suffix"),
        ("good..test", "domain.format.contains_double_dot"),
        ("exa_mple.test", "domain.format.invalid_characters"),
    ] {
        let o = e.check(domain, &[]);
        assert_fails_with(&o, code);
    }
}

/// A second edge: `[redirect] https_port = 8443` (so the first redirect leaves
/// https://DOMAIN/), and a plain-HTTP server at a second address that sends HSTS on port 80.
#[test]
fn first_redirect_elsewhere_and_hsts_on_plain_http() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let pki = Pki::new(
        &sans(&["port.test", "onhttp.test"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let o = output_timeout(
        Command::new("ip").args([
            "-n",
            &ns.edge,
            "addr",
            "add",
            "198.51.100.3/24",
            "dev",
            &ns.veth_edge,
        ]),
        CMD_TIMEOUT,
    );
    assert!(o.status.success(), "{}", o.describe());
    let plain = Backend::start_with(
        &ns,
        "plain80",
        0,
        &["--listen", "198.51.100.3:80", "--hsts", PRELOADABLE],
    );
    let mut cfg = String::from(
        "[listen]\nhttp = [\"198.51.100.1:80\"]\nhttps = [\"0.0.0.0:443\", \"0.0.0.0:8443\"]\n\
         [state]\ndir = \"{STATE_DIR}\"\ncontrol_socket = \"{CONTROL_SOCKET}\"\n\
         [redirect]\nhttps_port = 8443\n\
         [hsts]\nmax_age = 31536000\ninclude_subdomains = true\npreload = true\n",
    );
    cfg += &site(&pki, "port.test", false, true, "");
    cfg += &site(&pki, "onhttp.test", false, true, "");
    let _d = Daemon::start(&ns, &Config::raw(&cfg));
    let ca = pki.ca();

    let o = preload_check(&ns, &["port.test", "--connect", EDGE_V4, "--cacert", &ca]);
    assert_fails_with(&o, "redirects.http.first_redirect.insecure");
    assert!(
        o.out().contains("https://port.test:8443/"),
        "{}",
        o.describe()
    );

    // TLS and the header are fine at .3 (the edge listens on every address), port 80 is not.
    let o = preload_check(
        &ns,
        &["onhttp.test", "--connect", "198.51.100.3", "--cacert", &ca],
    );
    assert_fails_with(&o, "redirects.http.no_redirect");
    assert_fails_with(&o, "redirects.http.hsts_on_http");
    assert!(
        o.out().lines().any(|l| l.starts_with("ok    header ")),
        "{}",
        o.describe()
    );
    drop(plain);
}

#[test]
fn usage_errors_exit_2_and_shapes_need_no_network() {
    for args in [
        vec!["preload-check"],
        vec!["preload-check", "example.com", "--connect", "not-an-ip"],
        vec![
            "preload-check",
            "example.com",
            "--connect",
            "198.51.100.1:443",
        ],
        vec!["preload-check", "example.com", "--timeout", "0"],
        vec![
            "preload-check",
            "example.com",
            "--cacert",
            "/nonexistent/ca.pem",
        ],
        vec!["preload-check", ""],
    ] {
        let o = cli(&args);
        assert_eq!(o.code(), 2, "{args:?}: {}", o.describe());
    }
    // Shape errors stop before any request: fine without namespaces or root.
    let o = cli(&["preload-check", "198.51.100.1"]);
    assert_fails_with(&o, "domain.format.ip_address");
    let o = cli(&["preload-check", "github.io", "--json"]);
    assert_eq!(o.code(), 1, "{}", o.describe());
    let v = json(&o.out());
    assert_eq!(v["errors"][0], "domain.format.public_suffix", "{v}");
    assert_eq!(v["checks"][1]["status"], "skipped", "{v}");

    // --help documents every check's codes, the exit status and an example.
    let o = cli(&["preload-check", "--help"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let help = o.out();
    for needle in [
        "domain.format.public_suffix",
        "domain.tls.invalid_cert_chain",
        "header.preloadable.max_age.too_low",
        "redirects.http.first_redirect.insecure",
        "redirects.http.hsts_on_http",
        "domain.www.no_tls",
        "EXIT STATUS",
        "EXAMPLES",
        "--connect",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
}
