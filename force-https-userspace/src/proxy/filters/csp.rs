//! `Content-Security-Policy: upgrade-insecure-requests` (per site
//! `csp_upgrade_insecure_requests`, default off), on HTTPS responses of enforced hosts: the
//! browser then loads a page's `http://` subresources over HTTPS (W3C Upgrade Insecure
//! Requests). A backend's own CSP gets the directive appended, never a second header.

use hyper::{
    header::{self, HeaderValue},
    http::response::Parts,
};

use super::{FilterCtx, ResponseFilter, Verdict};
use crate::{metrics::Metrics, policy::Scheme};

/// The directive.
const DIRECTIVE: &str = "upgrade-insecure-requests";

/// The CSP upgrade filter.
pub struct CspUpgrade;

/// Whether a policy already has the directive (directive names are case-insensitive).
fn has_directive(policy: &str) -> bool {
    policy.split(';').any(|d| {
        d.trim()
            .split_ascii_whitespace()
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case(DIRECTIVE))
    })
}

impl ResponseFilter for CspUpgrade {
    fn response_head(&self, ctx: &FilterCtx<'_>, head: &mut Parts) -> Verdict {
        if ctx.conn.scheme != Scheme::Https {
            return Verdict::Continue;
        }
        let Some(entry) = ctx.entry.filter(|e| e.enforced) else {
            return Verdict::Continue;
        };
        if !entry
            .site
            .as_ref()
            .is_some_and(|s| s.csp_upgrade_insecure_requests)
        {
            return Verdict::Continue;
        }
        let policies: Vec<String> = head
            .headers
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        if policies.iter().any(|p| has_directive(p)) {
            return Verdict::Continue;
        }
        let value = match policies.first() {
            None => DIRECTIVE.to_string(),
            Some(first) => {
                let first = first.trim_end().trim_end_matches(';').trim_end();
                if first.is_empty() {
                    DIRECTIVE.to_string()
                } else {
                    format!("{first}; {DIRECTIVE}")
                }
            }
        };
        let Ok(value) = HeaderValue::from_str(&value) else {
            return Verdict::Continue;
        };
        // Replace the first field, keep any others as they were.
        let rest: Vec<HeaderValue> = head
            .headers
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .skip(1)
            .cloned()
            .collect();
        head.headers.insert(header::CONTENT_SECURITY_POLICY, value);
        for v in rest {
            head.headers.append(header::CONTENT_SECURITY_POLICY, v);
        }
        Metrics::inc(&ctx.metrics.csp_upgrade_added);
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_detection() {
        assert!(has_directive(
            "default-src 'self'; Upgrade-Insecure-Requests"
        ));
        assert!(has_directive("upgrade-insecure-requests"));
        assert!(!has_directive("default-src https:"));
        assert!(!has_directive("report-uri /upgrade-insecure-requests"));
    }
}
