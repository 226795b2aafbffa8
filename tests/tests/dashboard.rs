//! The dashboard in a real browser (Debian's headless Chromium, over the DevTools protocol):
//! the page loads from the admin listener, a click on a host's Force HTTPS switch changes
//! that host's port-80 answer within 1 s, the live counters and chart fill in, the page fits
//! 360 px, and screenshots are written to target/dashboard.png and target/dashboard-360.png.
//! Fails (never skips) under CI=true when Chromium or root is missing.

use std::time::{Duration, Instant};

use fh_tests::admin::*;
use fh_tests::browser::{Browser, require_chromium};
use fh_tests::serde_json::Value;
use fh_tests::*;

fn status80_here(host: &str) -> u16 {
    status_of(
        &raw_exchange_here(
            edge80(),
            format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .bytes,
    )
}

#[test]
fn dashboard_toggle_changes_port_80_within_a_second() {
    if !require_root() {
        return;
    }
    let Some(chromium) = require_chromium() else {
        return;
    };
    let ns = Netns::new();
    let token = TokenFile::new(0o600);
    let cfg = Config::new()
        .site(
            Site::new("shop", &["shop.example.com", "*.shop.example.com"])
                .backend("http://127.0.0.1:9")
                .enforced(),
        )
        .site(
            Site::new("blog", &["blog.example.com", "www.blog.example.com"])
                .backend("http://127.0.0.1:9"),
        )
        .extra(&admin_section(Some(&token)));
    let _d = Daemon::start(&ns, &cfg);
    assert_eq!(ns.run_in_client(|| status80_here("blog.example.com")), 502);

    let mut b = Browser::launch(
        &ns.edge,
        &chromium,
        &format!("http://{ADMIN_LISTEN}/"),
        1280,
        1000,
    );
    let blog = r#"document.querySelector('button[data-host="blog.example.com"]')"#;
    assert!(
        b.wait_for(
            &format!("document.body.dataset.ready === 'true' && !!{blog}"),
            Duration::from_secs(15)
        ),
        "the dashboard did not render the hosts; chromium stderr:\n{}",
        b.stderr.lock().unwrap()
    );
    // Every host and site is listed, with its site and source.
    let rows = b.eval(
        "Array.from(document.querySelectorAll('#hosts tbody tr')).map(tr => \
         Array.from(tr.children).slice(0, 3).map(td => td.textContent))",
    );
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    assert_eq!(
        rows[1],
        Value::from(vec!["blog.example.com", "blog", "config"])
    );
    assert_eq!(
        b.eval(&format!("{blog}.getAttribute('aria-checked')")),
        "false"
    );
    assert_eq!(
        b.eval(&format!("{blog}.getAttribute('aria-label')")),
        "Force HTTPS for blog.example.com"
    );
    // Mutations need a token here: the field is shown.
    assert_eq!(b.eval("document.querySelector('#auth').hidden"), false);
    assert_eq!(
        b.eval("document.querySelector('#counters').getAttribute('aria-live')"),
        "polite"
    );

    // Traffic for the counters and the chart while the test goes on (bounded: 8 s, 20000
    // requests), from a thread in the client namespace.
    let client_ns = ns.client.clone();
    let traffic = std::thread::spawn(move || {
        enter_netns(&client_ns);
        let end = Instant::now() + Duration::from_secs(8);
        let mut n = 0;
        while Instant::now() < end && n < 20_000 {
            status80_here(if n % 4 == 0 {
                "www.blog.example.com"
            } else {
                "shop.example.com"
            });
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    std::thread::sleep(Duration::from_millis(2500));

    // Type the token as a person would, then click the switch.
    b.eval(&format!(
        "(() => {{ const t = document.querySelector('#token'); t.focus(); t.value = '{}'; \
         t.dispatchEvent(new Event('input')); document.querySelector('#token-save').click(); }})()",
        token.token
    ));
    b.eval(&format!("{blog}.click()"));
    let clicked = Instant::now();
    let changed = ns.run_in_client(|| {
        for _ in 0..100 {
            if status80_here("blog.example.com") == 301 {
                return Some(clicked.elapsed());
            }
            if clicked.elapsed() > Duration::from_secs(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    });
    let took = changed.unwrap_or_else(|| {
        panic!(
            "port 80 still does not redirect blog.example.com 1 s after the click; status: {}",
            b.eval("document.querySelector('#status').textContent")
        )
    });
    eprintln!("click to port-80 redirect: {took:?}");
    assert!(
        b.wait_for(
            &format!("{blog}.getAttribute('aria-checked') === 'true'"),
            Duration::from_secs(5)
        ),
        "the switch did not turn on; status: {}",
        b.eval("document.querySelector('#status').textContent")
    );
    let status = b.eval("document.querySelector('#status').textContent");
    assert!(
        status
            .as_str()
            .unwrap()
            .contains("blog.example.com: Force HTTPS on"),
        "{status}"
    );
    // The site summary follows.
    assert!(b.wait_for(
        "document.querySelector('#sites tbody tr').textContent.includes('mixed')",
        Duration::from_secs(7)
    ));
    // The counters ran: the chart has points and the redirect rate was non-zero at some point.
    assert!(b.wait_for(
        "document.querySelector('#line-redirects').getAttribute('points').split(' ').length >= 3",
        Duration::from_secs(5)
    ));
    assert!(b.wait_for(
        "parseFloat(document.querySelector('#c-redirects').textContent) > 0",
        Duration::from_secs(5)
    ));
    assert_eq!(
        b.eval("document.querySelector('#c-fast').textContent"),
        "no XDP"
    );
    let target = bin_dir().parent().unwrap().to_path_buf();
    b.screenshot(&target.join("dashboard.png"));

    // 360 px wide: nothing overflows sideways.
    b.viewport(360, 800, true);
    std::thread::sleep(Duration::from_millis(300));
    let overflow = b.eval("document.documentElement.scrollWidth");
    assert!(
        overflow.as_u64().unwrap() <= 360,
        "the page is {overflow} px wide at 360 px"
    );
    b.screenshot(&target.join("dashboard-360.png"));
    traffic.join().unwrap();
    eprintln!(
        "screenshots: {} and {}",
        target.join("dashboard.png").display(),
        target.join("dashboard-360.png").display()
    );
}
