//! The redirect-loop guard (per site `loop_guard`, default on).
//!
//! A backend behind an HTTPS edge that does not read `X-Forwarded-Proto` often redirects every
//! request to `http://` on its own host: the browser follows, force-https redirects it back to
//! `https://`, and the two loop until the browser gives up. For a backend's 3xx whose
//! `Location` is `http://` on the request's host (any port, any case, a trailing dot), on a
//! request that came over TLS or is for an enforced host:
//!
//! - when the `https://` form of that `Location` is not the URL just requested, `Location` is
//!   rewritten to it: the user lands where the app meant, over HTTPS
//!   (`redirect_loops_rewritten`);
//! - when it is, the response becomes `508 Loop Detected` with a text body naming the cause
//!   (`redirect_loops_stopped`).
//!
//! Each host is logged at warn at most once a minute. User information, path, query and
//! fragment of the `Location` are kept byte for byte; an explicit `:80` is dropped, and the
//! edge's HTTPS port (`[redirect] https_port`) is written when it is not 443.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use hyper::{
    header::{self, HeaderValue},
    http::response::Parts,
};

use super::{FilterCtx, Origin, ResponseFilter, Verdict};
use crate::{metrics::Metrics, policy::Scheme, proxy::local};

/// How often one host is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Hosts remembered for the log limit; the map is cleared when it grows past this.
const LOG_HOSTS: usize = 4096;

/// The loop guard, with its log limiter.
#[derive(Default)]
pub struct LoopGuard {
    logged: Mutex<HashMap<String, Instant>>,
}

/// The parts of an absolute `http://` URI in a `Location`.
#[derive(Debug, PartialEq, Eq)]
struct HttpLocation<'a> {
    /// `user:pass@`, if any, with the `@`.
    userinfo: &'a str,
    /// The host as written (brackets kept for IPv6).
    host: &'a str,
    /// Everything after the authority: path, query, fragment (possibly empty).
    rest: &'a str,
}

/// Splits `http://[userinfo@]host[:port]rest`, case-insensitive scheme; `None` for anything
/// else (relative references, `https://`, other schemes, a malformed authority).
fn parse_http(location: &str) -> Option<HttpLocation<'_>> {
    let scheme = location.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let after = location.get(7..)?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let host = if hostport.starts_with('[') {
        let close = hostport.find(']')?;
        let (h, port) = hostport.split_at(close + 1);
        if !(port.is_empty() || port.starts_with(':')) {
            return None;
        }
        h
    } else {
        match hostport.rfind(':') {
            Some(i) => hostport.get(..i)?,
            None => hostport,
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(HttpLocation {
        userinfo,
        host,
        rest,
    })
}

/// A host as written, compared as force-https normalizes hosts: lowercase, no trailing dot.
fn same_host(written: &str, normalized: &str) -> bool {
    written
        .strip_suffix('.')
        .unwrap_or(written)
        .eq_ignore_ascii_case(normalized)
}

impl LoopGuard {
    fn warn(&self, host: &str, what: &str) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if logged
            .get(host)
            .is_some_and(|t| now.duration_since(*t) < LOG_EVERY)
        {
            return;
        }
        if logged.len() >= LOG_HOSTS {
            logged.clear();
        }
        logged.insert(host.to_string(), now);
        tracing::warn!(
            host,
            "{what}: the backend redirects to http:// on its own host (does it ignore \
             X-Forwarded-Proto?); at most one such message per host and minute"
        );
    }
}

impl ResponseFilter for LoopGuard {
    fn response_head(&self, ctx: &FilterCtx<'_>, head: &mut Parts) -> Verdict {
        if ctx.origin != Origin::Upstream || !head.status.is_redirection() {
            return Verdict::Continue;
        }
        let (Some(entry), Some(req)) = (ctx.entry, ctx.request) else {
            return Verdict::Continue;
        };
        if !entry.site.as_ref().is_none_or(|s| s.loop_guard) {
            return Verdict::Continue;
        }
        if ctx.conn.scheme != Scheme::Https && !entry.enforced {
            return Verdict::Continue;
        }
        let Some(location) = head
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Verdict::Continue;
        };
        let Some(loc) = parse_http(location) else {
            return Verdict::Continue;
        };
        if !same_host(loc.host, req.host) {
            return Verdict::Continue;
        }
        // The URL just requested, and the Location, without scheme and port: a Location
        // without a path means `/` (RFC 3986 §6.2.3).
        let rest = if loc.rest.is_empty() || loc.rest.starts_with(['?', '#']) {
            format!("/{}", loc.rest)
        } else {
            loc.rest.to_string()
        };
        let target = rest.split('#').next().unwrap_or("");
        if loc.userinfo.is_empty() && target == req.path_and_query {
            Metrics::inc(&ctx.metrics.redirect_loops_stopped);
            ctx.metrics.count_status(508);
            self.warn(req.host, "redirect loop stopped with 508");
            return Verdict::Replace(local::loop_detected(
                "508 Loop Detected: the backend redirects this request to the same URL over \
                 http://, and force-https redirects http:// back to https://. The backend \
                 probably ignores X-Forwarded-Proto: https.\n",
            ));
        }
        let port = match ctx.settings.https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let https = format!("https://{}{}{port}{rest}", loc.userinfo, loc.host);
        if let Ok(v) = HeaderValue::from_str(&https) {
            head.headers.insert(header::LOCATION, v);
            Metrics::inc(&ctx.metrics.redirect_loops_rewritten);
            self.warn(req.host, "redirect to http:// rewritten to https://");
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        edge::Settings,
        policy::Policy,
        proxy::{Authority, ConnInfo, TlsInfo},
    };
    use std::{path::Path, sync::Arc};

    struct Any;
    impl Authority for Any {
        fn covers(&self, _: &str) -> bool {
            true
        }
    }

    #[test]
    fn parses_http_locations() {
        let p = |s| parse_http(s).map(|l| (l.userinfo, l.host, l.rest));
        assert_eq!(p("http://a.example/x?y"), Some(("", "a.example", "/x?y")));
        assert_eq!(p("HTTP://A.Example:8080"), Some(("", "A.Example", "")));
        assert_eq!(
            p("http://u:p@a.example./"),
            Some(("u:p@", "a.example.", "/"))
        );
        assert_eq!(
            p("http://[2001:db8::1]:80/x"),
            Some(("", "[2001:db8::1]", "/x"))
        );
        assert_eq!(p("http://a.example?q#f"), Some(("", "a.example", "?q#f")));
        assert_eq!(p("https://a.example/"), None);
        assert_eq!(p("/relative"), None);
        assert_eq!(p("http:///x"), None);
        assert_eq!(p("http://[2001:db8::1/x"), None);
    }

    fn run(https: bool, host: &str, pq: &str, status: u16, location: &str) -> (u16, String) {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[state]\ndir = \"{}\"\n[[site]]\nname = \"shop\"\ndomains = [\"shop.example\"]\nforce_https = true\nbackend = \"http://127.0.0.1:9\"\n[[site]]\nname = \"blog\"\ndomains = [\"blog.example\"]\nbackend = \"http://127.0.0.1:9\"\n[[site]]\nname = \"off\"\ndomains = [\"off.example\"]\nforce_https = true\nloop_guard = false\nbackend = \"http://127.0.0.1:9\"\n",
            dir.path().display()
        );
        let cfg = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        let policy = Policy::load(&cfg).unwrap();
        let settings = Settings::from_config(&cfg);
        let metrics = Arc::new(Metrics::default());
        let table = policy.table();
        let peer = "198.51.100.2:1".parse().unwrap();
        let conn = if https {
            ConnInfo::https(
                peer,
                443,
                Arc::new(TlsInfo {
                    sni: None,
                    authority: Box::new(Any),
                }),
            )
        } else {
            ConnInfo::http(peer, 80)
        };
        let ctx = FilterCtx {
            conn,
            entry: table.lookup(host),
            settings: &settings,
            metrics: &metrics,
            origin: Origin::Upstream,
            table: None,
            request: Some(super::super::Requested {
                host,
                path_and_query: pq,
                method: &hyper::Method::GET,
                accept_encoding: None,
            }),
        };
        let (mut head, ()) = hyper::Response::builder()
            .status(status)
            .header("location", location)
            .body(())
            .unwrap()
            .into_parts();
        match LoopGuard::default().response_head(&ctx, &mut head) {
            Verdict::Continue => (
                head.status.as_u16(),
                head.headers["location"].to_str().unwrap().to_string(),
            ),
            Verdict::Replace(r) => (r.status().as_u16(), String::new()),
        }
    }

    #[test]
    fn loops_are_rewritten_or_stopped() {
        // The same URL over http://: 508, whatever the case, port or trailing dot.
        for loc in [
            "http://shop.example/a?b",
            "HTTP://Shop.Example.:80/a?b",
            "http://shop.example:8080/a?b#frag",
        ] {
            assert_eq!(run(true, "shop.example", "/a?b", 301, loc).0, 508, "{loc}");
        }
        // Another path: rewritten to https://, port dropped.
        assert_eq!(
            run(
                true,
                "shop.example",
                "/a",
                302,
                "http://shop.example:80/login?next=%2Fa"
            ),
            (302, "https://shop.example/login?next=%2Fa".to_string())
        );
        assert_eq!(
            run(true, "shop.example", "/a", 302, "http://shop.example"),
            (302, "https://shop.example/".to_string())
        );
        // Over TLS for a host that is not enforced too.
        assert_eq!(
            run(true, "blog.example", "/", 301, "http://blog.example/x"),
            (301, "https://blog.example/x".to_string())
        );
        // Left alone: another host, https already, a relative reference, not a redirect,
        // plain HTTP for a host that is not enforced, a site with loop_guard = false.
        for (https, host, status, loc) in [
            (true, "shop.example", 301, "http://other.example/a?b"),
            (true, "shop.example", 301, "https://shop.example/a?b"),
            (true, "shop.example", 301, "/a?b"),
            (true, "shop.example", 200, "http://shop.example/a?b"),
            (false, "blog.example", 301, "http://blog.example/a?b"),
            (true, "off.example", 301, "http://off.example/a?b"),
        ] {
            assert_eq!(
                run(https, host, "/a?b", status, loc),
                (status, loc.to_string()),
                "{host} {loc}"
            );
        }
        // Port 80, enforced host (an exempt path proxied): the same resource again is a loop.
        assert_eq!(
            run(
                false,
                "shop.example",
                "/.well-known/x",
                301,
                "http://shop.example/.well-known/x"
            )
            .0,
            508
        );
    }
}
