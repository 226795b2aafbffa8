//! The admin HTTP listener, black-box: every route, authorization (no token file, wrong and
//! right tokens, content type, body cap, token file mode), changes persisted across a
//! restart and visible on port 80, sites changed all or nothing, the `[metrics]` alias, and
//! the CLI's `--site` and `list --sites`.

use std::time::Duration;

use fh_tests::admin::*;
use fh_tests::serde_json::Value;
use fh_tests::*;

/// Port 80 of the edge, seen from the client namespace.
fn status80(ns: &Netns, host: &str) -> u16 {
    status_of(&raw_request(
        ns,
        edge80(),
        format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    ))
}

/// Two sites: shop (enforced, a name and a wildcard) and blog (not enforced, two names).
/// Their backend refuses connections: a host that is not enforced answers 502 on port 80.
fn config(token: Option<&TokenFile>) -> Config {
    Config::new()
        .site(
            Site::new("shop", &["shop.example.com", "*.shop.example.com"])
                .backend("http://127.0.0.1:9")
                .enforced(),
        )
        .site(
            Site::new("blog", &["blog.example.com", "www.blog.example.com"])
                .backend("http://127.0.0.1:9"),
        )
        .extra(&admin_section(token))
}

fn journal_lines(d: &Daemon) -> Vec<String> {
    std::fs::read_to_string(d.state_dir.join("state.journal"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn header<'a>(r: &'a HttpResponse, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header in {}", r.head))
}

#[test]
fn read_routes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let token = TokenFile::new(0o600);
    let d = Daemon::start(&ns, &config(Some(&token)));

    // The same fields as `force-https list --json`.
    let hosts = admin_get_json(&ns, "/api/v1/hosts", 200);
    let o = d.cli(&["list", "--json"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(hosts, json(&o.out()));
    assert_eq!(hosts.as_array().unwrap().len(), 4, "{hosts}");
    let r = admin_call(&ns, "GET", "/api/v1/hosts?q=blog&limit=1", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "x-total-count"), "2");
    assert_eq!(json(&r.body_text()).as_array().unwrap().len(), 1);
    assert_eq!(
        admin_call(&ns, "GET", "/api/v1/hosts?bogus=1", &[], b"").status,
        400
    );

    let h = admin_get_json(&ns, "/api/v1/hosts/Shop.Example.com.", 200);
    assert_eq!(h["host"], "shop.example.com");
    assert_eq!(h["site"], "shop");
    assert_eq!(h["source"], "config");
    assert_eq!(h["enforced"], true);
    let w = admin_get_json(&ns, "/api/v1/hosts/%2A.shop.example.com", 200);
    assert_eq!(w["host"], "*.shop.example.com");
    let e = admin_get_json(&ns, "/api/v1/hosts/unknown.example", 404);
    assert_eq!(e["code"], "unknown_host");
    assert!(
        e["error"].as_str().unwrap().contains("unknown.example"),
        "{e}"
    );
    let e = admin_get_json(&ns, "/api/v1/hosts/bad%20host", 400);
    assert_eq!(e["code"], "invalid_host");

    let sites = admin_get_json(&ns, "/api/v1/sites", 200);
    assert_eq!(sites[0]["name"], "blog");
    assert_eq!(sites[0]["state"], "not_enforced");
    assert_eq!(sites[1]["name"], "shop");
    assert_eq!(sites[1]["state"], "enforced");
    assert_eq!(
        sites[1]["enforced"],
        json(r#"["*.shop.example.com","shop.example.com"]"#)
    );
    assert_eq!(admin_get_json(&ns, "/api/v1/sites/shop", 200), sites[1]);
    assert_eq!(
        admin_get_json(&ns, "/api/v1/sites/nope", 404)["code"],
        "unknown_site"
    );

    let stats = admin_get_json(&ns, "/api/v1/stats", 200);
    assert!(stats["admin_requests"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["hosts"].as_u64() == Some(4), "{stats}");
    let info = admin_get_json(&ns, "/api/v1/info", 200);
    assert_eq!(info["mutations"], "token");

    let r = admin_call(&ns, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.body_text()
            .contains("\nforce_https_admin_requests_total "),
        "{}",
        r.body_text()
    );
    let doc = admin_get_json(&ns, "/api/v1/openapi.json", 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/sites/{name}"]["put"].is_object());

    // The dashboard: a page, its script and style, locked down.
    let r = admin_call(&ns, "GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert!(r.body_text().contains("<script src=\"/app.js\""));
    let csp = header(&r, "content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(r.header("set-cookie").is_none());
    assert!(r.header("access-control-allow-origin").is_none());
    for (path, ty) in [("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let r = admin_call(&ns, "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}");
        assert!(header(&r, "content-type").starts_with(ty), "{}", r.head);
    }

    // Unknown path, wrong method, a Host only DNS rebinding would send.
    assert_eq!(
        admin_get_json(&ns, "/api/v2/hosts", 404)["code"],
        "not_found"
    );
    let r = admin_call(&ns, "DELETE", "/api/v1/hosts/shop.example.com", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(header(&r, "allow"), "GET, PUT");
    let r = admin_call(
        &ns,
        "GET",
        "/api/v1/hosts",
        &[("Host", "attacker.example:9180")],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert_eq!(json(&r.body_text())["code"], "forbidden_host");
}

#[test]
fn mutations_need_the_token_and_json() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let token = TokenFile::new(0o600);
    let mut d = Daemon::start(&ns, &config(Some(&token)));
    let path = "/api/v1/hosts/blog.example.com";
    let body = br#"{"force_https": true}"#;
    let json_ct = ("Content-Type", "application/json");

    // No token: 401 saying what is missing.
    let r = admin_call(&ns, "PUT", path, &[json_ct], body);
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert!(header(&r, "www-authenticate").starts_with("Bearer"));
    let e = json(&r.body_text());
    assert_eq!(e["code"], "missing_token");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    // Wrong token.
    let r = admin_call(
        &ns,
        "PUT",
        path,
        &[
            json_ct,
            ("Authorization", "Bearer not-the-token-at-all-000000"),
        ],
        body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(json(&r.body_text())["code"], "invalid_token");
    let bearer = token.bearer();
    let auth = ("Authorization", bearer.as_str());
    // Right token, wrong content type (what an HTML form sends).
    let r = admin_call(
        &ns,
        "PUT",
        path,
        &[auth, ("Content-Type", "application/x-www-form-urlencoded")],
        b"force_https=true",
    );
    assert_eq!(r.status, 415, "{}", r.body_text());
    // A cross-origin page.
    let r = admin_call(
        &ns,
        "PUT",
        path,
        &[auth, json_ct, ("Origin", "http://attacker.example")],
        body,
    );
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert_eq!(json(&r.body_text())["code"], "cross_origin");
    // Oversized body: refused from its Content-Length, before it is read.
    let r = admin_call(
        &ns,
        "PUT",
        path,
        &[auth, json_ct, ("Content-Length", "100000")],
        b"",
    );
    assert_eq!(r.status, 413, "{}", r.body_text());
    // Invalid body, invalid host: 400 with a reason, nothing changed.
    let r = admin_call(
        &ns,
        "PUT",
        path,
        &[auth, json_ct],
        br#"{"force_https": "yes"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert!(r.body_text().contains("force_https"), "{}", r.body_text());
    let r = admin_put(&ns, &token, "/api/v1/hosts/bad%20host", true);
    assert_eq!(r.status, 400);
    assert_eq!(json(&r.body_text())["code"], "invalid_host");
    assert!(journal_lines(&d).is_empty(), "{:?}", journal_lines(&d));
    assert_eq!(status80(&ns, "blog.example.com"), 502);

    // Right: persisted before the 200, in effect on port 80 at once.
    let r = admin_put(&ns, &token, path, true);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = json(&r.body_text());
    assert_eq!(v["changed"], json(r#"["blog.example.com"]"#));
    assert_eq!(v["host"]["enforced"], true);
    assert_eq!(v["host"]["overridden"], true);
    assert_eq!(journal_lines(&d).len(), 1);
    assert_eq!(status80(&ns, "blog.example.com"), 301);
    // A standalone host, and its release.
    assert_eq!(
        admin_put(&ns, &token, "/api/v1/hosts/solo.example.org", true).status,
        200
    );
    let r = admin_put(&ns, &token, "/api/v1/hosts/solo.example.org", false);
    assert_eq!(json(&r.body_text())["host"], Value::Null);

    // Reload through the API (the admin service's reload).
    let r = admin_call(&ns, "POST", "/api/v1/reload", &[auth, json_ct], b"");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(json(&r.body_text())["message"].is_string());
    let r = admin_call(&ns, "POST", "/api/v1/reload", &[auth], b"");
    assert_eq!(r.status, 415);
    let r = admin_call(&ns, "POST", "/api/v1/reload", &[json_ct], b"");
    assert_eq!(r.status, 401);

    // A restart keeps the change.
    d.restart();
    let h = admin_get_json(&ns, path, 200);
    assert_eq!(h["enforced"], true, "{h}");
    assert_eq!(status80(&ns, "blog.example.com"), 301);
    let stats = admin_get_json(&ns, "/api/v1/stats", 200);
    assert_eq!(stats["admin_auth_failures"], 0, "counters restart at 0");
}

#[test]
fn without_token_file_reads_only() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let d = Daemon::start(&ns, &config(None));
    assert_eq!(
        admin_get_json(&ns, "/api/v1/info", 200)["mutations"],
        "disabled"
    );
    admin_get_json(&ns, "/api/v1/hosts", 200);
    for (method, path, body) in [
        (
            "PUT",
            "/api/v1/hosts/blog.example.com",
            &br#"{"force_https":true}"#[..],
        ),
        ("PUT", "/api/v1/sites/blog", br#"{"force_https":true}"#),
        ("POST", "/api/v1/reload", b""),
    ] {
        let r = admin_call(
            &ns,
            method,
            path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", "Bearer anything-at-all-00000000"),
            ],
            body,
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body_text());
        let e = json(&r.body_text());
        assert_eq!(e["code"], "mutations_disabled");
        assert!(e["error"].as_str().unwrap().contains("token_file"), "{e}");
    }
    assert!(journal_lines(&d).is_empty());
    assert_eq!(status80(&ns, "blog.example.com"), 502);
}

#[test]
fn token_file_mode_is_checked_at_start() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let token = TokenFile::new(0o644);
    let mut d = Daemon::spawn(&ns, &config(Some(&token)));
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("the daemon must refuse to start");
    assert!(!st.success());
    let log = d.log();
    assert!(
        log.contains("mode 0644") && log.contains("chmod 600"),
        "{log}"
    );
    // `check` says the same (exit 2).
    let o = d.cli(&["check"]);
    assert_eq!(o.code(), 2, "{}", o.describe());
    assert!(o.err().contains("chmod 600"), "{}", o.describe());
}

#[test]
fn metrics_section_is_an_alias() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let cfg = Config::new()
        .site(Site::new("blog", &["blog.example.com"]))
        .extra(&format!("[metrics]\nlisten = \"{ADMIN_LISTEN}\"\n"));
    let d = Daemon::start(&ns, &cfg);
    let r = admin_call(&ns, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.body_text()
            .contains("\n# TYPE force_https_hosts gauge\nforce_https_hosts 1\n")
    );
    admin_get_json(&ns, "/api/v1/hosts/blog.example.com", 200);
    // Both sections with different addresses: a config error that says what to write.
    let bad = d.dir().join("bad.toml");
    std::fs::write(
        &bad,
        "[metrics]\nlisten = \"127.0.0.1:9100\"\n[admin]\nlisten = \"127.0.0.1:9180\"\n",
    )
    .unwrap();
    let o = cli(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.code(), 2, "{}", o.describe());
    assert!(
        o.err().contains("line 2") && o.err().contains("remove the [metrics] section"),
        "{}",
        o.describe()
    );
}

#[test]
fn sites_change_all_or_nothing() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let token = TokenFile::new(0o400);
    let mut d = Daemon::start(&ns, &config(Some(&token)));
    // A runtime name under the shop wildcard belongs to the site.
    let o = d.cli(&["enable", "new.shop.example.com"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let before = journal_lines(&d).len();

    // The whole site, one journal line.
    let r = admin_put(&ns, &token, "/api/v1/sites/shop", false);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = json(&r.body_text());
    assert_eq!(
        v["changed"],
        json(r#"["*.shop.example.com","new.shop.example.com","shop.example.com"]"#)
    );
    assert_eq!(v["site"]["state"], "not_enforced");
    let lines = journal_lines(&d);
    assert_eq!(lines.len(), before + 1, "{lines:?}");
    let last = json(lines.last().unwrap());
    for h in [
        "shop.example.com",
        "*.shop.example.com",
        "new.shop.example.com",
    ] {
        assert!(last["hosts"].get(h).is_some(), "{h} not in {last}");
    }
    for h in [
        "shop.example.com",
        "a.shop.example.com",
        "new.shop.example.com",
    ] {
        assert_eq!(status80(&ns, h), 502, "{h}");
    }
    // Unknown site: 404 / exit 4, nothing changed.
    let r = admin_put(&ns, &token, "/api/v1/sites/nope", true);
    assert_eq!(r.status, 404);
    assert_eq!(json(&r.body_text())["code"], "unknown_site");
    let o = d.cli(&["enable", "--site", "nope"]);
    assert_eq!(o.code(), 4, "{}", o.describe());
    assert!(
        o.err().contains("unknown site \"nope\""),
        "{}",
        o.describe()
    );
    assert_eq!(journal_lines(&d).len(), before + 1);

    // A host-level exception stays possible and is visible.
    assert_eq!(
        admin_put(&ns, &token, "/api/v1/hosts/shop.example.com", true).status,
        200
    );
    let s = admin_get_json(&ns, "/api/v1/sites/shop", 200);
    assert_eq!(s["state"], "mixed");
    assert_eq!(s["force_https"], Value::Null);
    assert_eq!(s["enforced"], json(r#"["shop.example.com"]"#));
    let o = d.cli(&["list", "--sites"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let line = o
        .out()
        .lines()
        .find(|l| l.starts_with("shop "))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("mixed")
            && line.contains("1/2")
            && line.contains("enforced: shop.example.com"),
        "{}",
        o.out()
    );
    let o = d.cli(&["list", "--sites", "--json"]);
    assert_eq!(json(&o.out())[1], s);

    // The CLI's --site: the same operation.
    let o = d.cli(&["enable", "--site", "shop"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert!(
        o.out().contains("site shop: enforced (1 host(s) changed)"),
        "{}",
        o.out()
    );
    assert_eq!(
        admin_get_json(&ns, "/api/v1/sites/shop", 200)["state"],
        "enforced"
    );
    assert_eq!(status80(&ns, "a.shop.example.com"), 301);
    let o = d.cli(&["disable", "--site", "blog"]);
    assert!(o.out().contains("no change"), "{}", o.describe());
    let o = d.cli(&["enable", "--site", "blog", "blog.example.com"]);
    assert_eq!(o.code(), 2, "--site and hosts conflict: {}", o.describe());

    // Persisted: a restart keeps every state.
    assert_eq!(
        admin_put(&ns, &token, "/api/v1/sites/blog", true).status,
        200
    );
    d.restart();
    let sites = admin_get_json(&ns, "/api/v1/sites", 200);
    assert_eq!(sites[0]["state"], "enforced", "{sites}");
    assert_eq!(sites[1]["state"], "enforced", "{sites}");
    assert_eq!(status80(&ns, "www.blog.example.com"), 301);
}

#[test]
fn slow_clients_are_cut_off() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let token = TokenFile::new(0o600);
    let _d = Daemon::start(&ns, &config(Some(&token)));
    let edge = ns.edge.clone();
    let bearer = token.bearer();
    // Both at once: a head that never ends, and a body that stops midway.
    let (head, body) = std::thread::scope(|s| {
        let head = s.spawn(|| {
            run_in_netns(&edge, || {
                raw_exchange_here(
                    admin_addr(),
                    b"GET /api/v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
                    Duration::from_secs(20),
                )
            })
        });
        let body = s.spawn(|| {
            let req = format!(
                "PUT /api/v1/hosts/blog.example.com HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Authorization: {bearer}\r\nContent-Type: application/json\r\n\
                 Content-Length: 40\r\n\r\n{{\"force_https\""
            );
            run_in_netns(&edge, || {
                raw_exchange_here(admin_addr(), req.as_bytes(), Duration::from_secs(20))
            })
        });
        (head.join().unwrap(), body.join().unwrap())
    });
    assert!(
        head.closed,
        "an unfinished head kept the connection open 20 s"
    );
    assert!(
        head.elapsed >= Duration::from_secs(9) && head.elapsed < Duration::from_secs(15),
        "{:?}",
        head.elapsed
    );
    assert_eq!(status_of(&body.bytes), 408, "{}", body.text());
    assert!(body.elapsed < Duration::from_secs(15), "{:?}", body.elapsed);
    assert!(
        body.text().contains("did not arrive within"),
        "{}",
        body.text()
    );
}
