//! The one decision of every request path: redirect, proxy, or answer locally.
//!
//! The XDP fast path (its AF_XDP responder), the port-80 socket path and the proxy service of
//! both listeners call [`decide`] with the same [`RequestFacts`], and count the result with
//! [`Decision::count`]; nothing else decides or counts. A table-driven test
//! (`paths::same_answers`) feeds identical requests to all three and requires identical
//! answers.

use std::sync::Arc;

use force_https_proto::response::{self, RedirectStatus, for_method};

use super::table::{HostEntry, PolicyTable};
use crate::metrics::Metrics;

/// The scheme of the listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (port 80).
    Http,
    /// HTTP over TLS (port 443).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`, as in a URI or `X-Forwarded-Proto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Which request path answered, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The AF_XDP responder (XDP fast path).
    Xdp,
    /// The port-80 socket path, or the proxy service on a port-80 connection.
    Socket,
    /// The TLS path.
    Tls,
}

/// What a request path knows about a request when it decides.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The listener's scheme.
    pub scheme: Scheme,
    /// The request's host, normalized (`force_https_proto::host::normalize`): lowercase, no
    /// port, no trailing dot, IPv6 literals in brackets.
    pub host: &'a str,
    /// The method token (RFC 9110 §9), as received.
    pub method: &'a [u8],
    /// The path and query of the request-target (RFC 9112 §3.2), byte for byte as received;
    /// `*` for asterisk-form.
    pub path_and_query: &'a [u8],
    /// Whether the request-target is asterisk-form (`OPTIONS *`, RFC 9112 §3.2.4).
    pub asterisk: bool,
    /// Whether the request came over a TLS connection whose certificate is not the one for
    /// its host (RFC 9110 §7.4): it must not be served on this connection.
    pub misdirected: bool,
    /// Whether the request already carries this edge's `CDN-Loop` token (RFC 8586): it went
    /// through force-https before, and forwarding it again would loop.
    pub looped: bool,
}

/// What force-https answers itself, without a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalAnswer {
    /// `404 Not Found`: no site serves this host over this scheme.
    NotFound,
    /// `200 OK` with `Allow`: `OPTIONS *` to an enforced host on port 80, which has no
    /// resource to redirect to (RFC 9110 §9.3.7).
    Options,
    /// `421 Misdirected Request` (RFC 9110 §15.5.20): the TLS connection's certificate is not
    /// the one for the request's host; nothing reaches a backend.
    Misdirected,
    /// `508 Loop Detected`: the request already went through this edge (`CDN-Loop`).
    LoopDetected,
}

impl LocalAnswer {
    /// The complete answer on a connection that closes after it (the port-80 socket path),
    /// from the one response builder.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            LocalAnswer::Options => response::options_asterisk(),
            _ => response::error_response(self.status()),
        }
    }

    /// The status code of the answer.
    pub fn status(self) -> u16 {
        match self {
            LocalAnswer::NotFound => 404,
            LocalAnswer::Options => 200,
            LocalAnswer::Misdirected => 421,
            LocalAnswer::LoopDetected => 508,
        }
    }
}

/// The decision for one request.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'t> {
    /// A permanent redirect to the same URL over HTTPS (port 80 only).
    Redirect {
        /// The host entry that matched.
        entry: &'t Arc<HostEntry>,
        /// 301 or 308.
        status: RedirectStatus,
    },
    /// Reverse-proxied to the site's backend.
    Proxy {
        /// The host entry that matched (it has a site with a backend).
        entry: &'t Arc<HostEntry>,
    },
    /// Answered by force-https itself.
    Local {
        /// The host entry that matched, if any.
        entry: Option<&'t Arc<HostEntry>>,
        /// Which answer.
        answer: LocalAnswer,
    },
}

impl<'t> Decision<'t> {
    /// The host entry the request matched, if any.
    pub fn entry(&self) -> Option<&'t Arc<HostEntry>> {
        match *self {
            Decision::Redirect { entry, .. } | Decision::Proxy { entry } => Some(entry),
            Decision::Local { entry, .. } => entry,
        }
    }

    /// Counts the decision: the host's own counters and the global ones of the path `via`.
    /// Every path calls this once per decided request, and nothing else counts decisions.
    pub fn count(&self, via: Via, m: &Metrics) {
        match *self {
            Decision::Redirect { entry, status } => {
                Metrics::inc(&entry.stats.redirects);
                Metrics::inc(match (via, status) {
                    (Via::Xdp, RedirectStatus::Moved301) => &m.afxdp_redirects_301,
                    (Via::Xdp, RedirectStatus::Permanent308) => &m.afxdp_redirects_308,
                    (_, RedirectStatus::Moved301) => &m.redirects_301,
                    (_, RedirectStatus::Permanent308) => &m.redirects_308,
                });
            }
            Decision::Proxy { entry } => {
                Metrics::inc(&entry.stats.proxied);
                Metrics::inc(match via {
                    Via::Tls => &m.proxied_https,
                    Via::Xdp | Via::Socket => &m.proxied_http,
                });
            }
            Decision::Local {
                answer:
                    answer @ (LocalAnswer::NotFound
                    | LocalAnswer::Misdirected
                    | LocalAnswer::LoopDetected),
                ..
            } => m.count_status(answer.status()),
            Decision::Local {
                answer: LocalAnswer::Options,
                ..
            } => Metrics::inc(&m.responses_options),
        }
    }
}

/// Decides what to do with a request, from the policy table alone:
///
/// - misdirected (TLS, the certificate is not the host's): 421;
/// - no entry for the host: 404;
/// - port 80, enforced host: `OPTIONS *` is answered locally; a path under an exempt prefix
///   (ACME challenges, `exempt_paths`) is proxied, and so is a path outside the site's
///   `force_paths` when it has some; anything else is redirected, 301 for
///   GET/HEAD and 308 otherwise unless the site sets `redirect_code` (RFC 9110 §15.4.2,
///   §15.4.9);
/// - otherwise proxied when the site has a backend, else 404; but a request that already went
///   through this edge (`CDN-Loop` carries its token) is answered 508 instead of forwarded
///   again (a redirect or a local answer is no loop).
pub fn decide<'t>(table: &'t PolicyTable, req: &RequestFacts<'_>) -> Decision<'t> {
    if req.misdirected {
        return Decision::Local {
            entry: table.lookup(req.host),
            answer: LocalAnswer::Misdirected,
        };
    }
    let Some(entry) = table.lookup(req.host) else {
        return Decision::Local {
            entry: None,
            answer: LocalAnswer::NotFound,
        };
    };
    if req.scheme == Scheme::Http && entry.enforced {
        if req.asterisk {
            return Decision::Local {
                entry: Some(entry),
                answer: LocalAnswer::Options,
            };
        }
        if !entry.is_exempt(req.path_and_query) && entry.is_forced(req.path_and_query) {
            return Decision::Redirect {
                entry,
                status: for_method(req.method, entry.redirect_code()),
            };
        }
    }
    if entry.has_backend() && req.looped {
        Decision::Local {
            entry: Some(entry),
            answer: LocalAnswer::LoopDetected,
        }
    } else if entry.has_backend() {
        Decision::Proxy { entry }
    } else {
        Decision::Local {
            entry: Some(entry),
            answer: LocalAnswer::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use std::path::Path;

    fn policy(dir: &Path) -> Policy {
        Policy::load(&crate::policy::tests::config(dir)).unwrap()
    }

    #[derive(Debug, PartialEq, Eq)]
    enum D {
        R(u16),
        P,
        L(u16),
    }

    fn d(t: &PolicyTable, scheme: Scheme, host: &str, method: &str, pq: &str) -> D {
        let facts = RequestFacts {
            scheme,
            host,
            method: method.as_bytes(),
            path_and_query: pq.as_bytes(),
            asterisk: pq == "*",
            misdirected: false,
            looped: false,
        };
        match decide(t, &facts) {
            Decision::Redirect { status, .. } => D::R(status.code()),
            Decision::Proxy { .. } => D::P,
            Decision::Local { answer, .. } => D::L(answer.status()),
        }
    }

    #[test]
    fn decisions() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path());
        let t = p.table();
        use Scheme::{Http, Https};
        let cases: &[(Scheme, &str, &str, &str, D)] = &[
            (Http, "shop.example.com", "GET", "/", D::R(301)),
            (Http, "shop.example.com", "HEAD", "/", D::R(301)),
            (Http, "shop.example.com", "POST", "/", D::R(308)),
            (Http, "x.shop.example.com", "GET", "/", D::R(308)),
            (Http, "a.shop.example.com", "GET", "/", D::R(301)),
            (
                Http,
                "shop.example.com",
                "GET",
                "/.well-known/acme-challenge/t",
                D::P,
            ),
            (Http, "shop.example.com", "GET", "/healthz?x", D::P),
            (Http, "shop.example.com", "OPTIONS", "*", D::L(200)),
            (Http, "blog.example.com", "OPTIONS", "*", D::P),
            (Http, "blog.example.com", "GET", "/", D::P),
            (Http, "nope.example.com", "GET", "/", D::L(404)),
            // Exempt on a site without backend: nothing to proxy to.
            (
                Http,
                "x.shop.example.com",
                "GET",
                "/.well-known/acme-challenge/t",
                D::L(404),
            ),
            (Https, "shop.example.com", "GET", "/", D::P),
            (Https, "shop.example.com", "OPTIONS", "*", D::P),
            (Https, "x.shop.example.com", "GET", "/", D::L(404)),
            (Https, "nope.example.com", "GET", "/", D::L(404)),
        ];
        for (scheme, host, method, pq, want) in cases {
            assert_eq!(
                &d(&t, *scheme, host, method, pq),
                want,
                "{scheme:?} {method} {host}{pq}"
            );
        }
    }

    #[test]
    fn counted_once_where_it_belongs() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path());
        let t = p.table();
        let m = Metrics::default();
        let facts = RequestFacts {
            scheme: Scheme::Http,
            host: "shop.example.com",
            method: b"GET",
            path_and_query: b"/",
            asterisk: false,
            misdirected: false,
            looped: false,
        };
        decide(&t, &facts).count(Via::Xdp, &m);
        decide(&t, &facts).count(Via::Socket, &m);
        let get = |n: &str| m.snapshot().iter().find(|c| c.0 == n).map(|c| c.2);
        assert_eq!(get("afxdp_redirects_301"), Some(1));
        assert_eq!(get("redirects_301"), Some(1));
        let e = t.lookup("shop.example.com").unwrap();
        assert_eq!(
            e.stats.redirects.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        let https = RequestFacts {
            scheme: Scheme::Https,
            ..facts
        };
        decide(&t, &https).count(Via::Tls, &m);
        assert_eq!(get("proxied_https"), Some(1));
        let misdirected = RequestFacts {
            misdirected: true,
            ..https
        };
        let d = decide(&t, &misdirected);
        assert!(matches!(
            d,
            Decision::Local {
                entry: Some(_),
                answer: LocalAnswer::Misdirected
            }
        ));
        d.count(Via::Tls, &m);
        assert_eq!(get("responses_421"), Some(1));
        assert_eq!(get("proxied_https"), Some(1));
    }
}
