//! The HSTS filter (RFC 6797), first in the chain.
//!
//! - Over TLS, a response for an enforced host gets `Strict-Transport-Security` (the site's
//!   value, or `[hsts]` for a host without a site) unless the backend set its own, or the
//!   site has `hsts = false`. This holds for force-https's own answers too.
//! - Over plain HTTP the header is removed from every response, whoever set it: a host must
//!   not send it over a non-secure transport, and a UA ignores it there (RFC 6797 §7.2, §8.1).

use hyper::{header, http::response::Parts};

use super::{FilterCtx, Origin, ResponseFilter, Verdict};
use crate::{config::SiteHsts, metrics::Metrics, policy::Scheme};

/// The HSTS filter.
pub struct Hsts;

impl ResponseFilter for Hsts {
    fn response_head(&self, ctx: &FilterCtx<'_>, head: &mut Parts) -> Verdict {
        if ctx.conn.scheme == Scheme::Http {
            head.headers.remove(header::STRICT_TRANSPORT_SECURITY);
            return Verdict::Continue;
        }
        // A host enforced only under some paths is not HTTPS-only: no HSTS.
        let Some(e) = ctx.entry.filter(|e| e.enforced && !e.has_path_rules()) else {
            return Verdict::Continue;
        };
        if head.headers.contains_key(header::STRICT_TRANSPORT_SECURITY) {
            if ctx.origin == Origin::Upstream {
                Metrics::inc(&ctx.metrics.hsts_from_backend);
            }
            return Verdict::Continue;
        }
        let value = match e.site.as_ref().map(|s| &s.hsts) {
            Some(SiteHsts::Off) => return Verdict::Continue,
            Some(SiteHsts::On(v)) => v,
            None => &ctx.settings.default_hsts,
        };
        // A clone shares the configured value's bytes: no allocation.
        head.headers
            .insert(header::STRICT_TRANSPORT_SECURITY, value.clone());
        Metrics::inc(&ctx.metrics.hsts_injected);
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        edge::Settings,
        policy::{Policy, PolicyTable},
        proxy::ConnInfo,
    };
    use std::{net::SocketAddr, path::Path};

    struct Any;
    impl crate::proxy::Authority for Any {
        fn covers(&self, _: &str) -> bool {
            true
        }
    }

    fn setup(dir: &Path) -> (Policy, Settings) {
        let text = format!(
            r#"
[state]
dir = "{}"
[hsts]
max_age = 600
[[site]]
name = "shop"
domains = ["shop.example"]
force_https = true
hsts = {{ max_age = 100, include_subdomains = true }}
[[site]]
name = "quiet"
domains = ["quiet.example"]
force_https = true
hsts = false
[[site]]
name = "blog"
domains = ["blog.example"]
[[site]]
name = "part"
domains = ["part.example"]
force_https = true
force_paths = ["/admin/"]
"#,
            dir.display()
        );
        let cfg = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        let p = Policy::load(&cfg).unwrap();
        p.set(&["solo.example".into()], true).unwrap();
        (p, Settings::from_config(&cfg))
    }

    fn run(
        t: &PolicyTable,
        s: &Settings,
        m: &std::sync::Arc<Metrics>,
        https: bool,
        host: &str,
        origin: Origin,
        backend_sts: Option<&'static str>,
    ) -> Option<String> {
        let peer: SocketAddr = "198.51.100.2:1000".parse().unwrap();
        let conn = if https {
            ConnInfo::https(
                peer,
                443,
                std::sync::Arc::new(crate::proxy::TlsInfo {
                    sni: None,
                    authority: Box::new(Any),
                }),
            )
        } else {
            ConnInfo::http(peer, 80)
        };
        let ctx = FilterCtx {
            conn,
            entry: t.lookup(host),
            settings: s,
            metrics: m,
            table: None,
            origin,
            request: None,
        };
        let mut b = hyper::Response::builder();
        if let Some(v) = backend_sts {
            b = b.header("strict-transport-security", v);
        }
        let (mut head, ()) = b.body(()).unwrap().into_parts();
        let _ = Hsts.response_head(&ctx, &mut head);
        head.headers
            .get(header::STRICT_TRANSPORT_SECURITY)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn hsts_rules() {
        let d = tempfile::tempdir().unwrap();
        let (p, s) = setup(d.path());
        let t = p.table();
        let m = std::sync::Arc::new(Metrics::default());
        let up = Origin::Upstream;
        let r = |https, host, origin, sts| run(&t, &s, &m, https, host, origin, sts);
        assert_eq!(
            r(true, "shop.example", up, None).as_deref(),
            Some("max-age=100; includeSubDomains")
        );
        // force-https's own answers too.
        assert_eq!(
            r(true, "shop.example", Origin::Local, None).as_deref(),
            Some("max-age=100; includeSubDomains")
        );
        // A runtime host without a site gets [hsts].
        assert_eq!(
            r(true, "solo.example", up, None).as_deref(),
            Some("max-age=600")
        );
        // The backend's own value wins.
        assert_eq!(
            r(true, "shop.example", up, Some("max-age=5")).as_deref(),
            Some("max-age=5")
        );
        assert_eq!(r(true, "quiet.example", up, None), None);
        // Enforced only under some paths: not HTTPS-only, no HSTS.
        assert_eq!(r(true, "part.example", up, None), None);
        assert_eq!(r(true, "blog.example", up, None), None);
        assert_eq!(r(true, "unknown.example", up, None), None);
        // Never over plain HTTP, whoever set it.
        assert_eq!(r(false, "blog.example", up, Some("max-age=600")), None);
        assert_eq!(r(false, "shop.example", up, Some("max-age=600")), None);
        let get = |n: &str| m.snapshot().iter().find(|c| c.0 == n).map(|c| c.2);
        assert_eq!(get("hsts_injected"), Some(3));
        assert_eq!(get("hsts_from_backend"), Some(1));
    }
}
