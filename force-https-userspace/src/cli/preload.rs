//! `force-https preload-check DOMAIN`: the checks of hstspreload.org, run from here.
//!
//! The rules and issue codes are those of the hstspreload tool (github.com/chromium/hstspreload:
//! domain.go, header.go, redirects.go, response.go), with a one-year minimum `max-age`, and
//! with malformed headers (repeated, unknown or invalid directives) counted as errors rather
//! than warnings. Two codes are force-https's own: `domain.format.ip_address` and
//! `redirects.http.hsts_on_http`.
//!
//! The pure parts (domain shape, header parsing, redirect-chain analysis) are separate from
//! the small HTTP/1.1 client that fetches the answers, so they are unit-tested without a
//! network.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use clap::Args;
use http_body_util::Empty;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use serde::Serialize;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use super::{Failure, fail};

/// The smallest `max-age` hstspreload.org accepts: one year.
pub(crate) const MIN_MAX_AGE: u64 = 31_536_000;
/// `max-age` above this gets a warning (hstspreload: ten years).
const TEN_YEARS: u64 = 86_400 * 365 * 10;
/// Redirects followed from `http://DOMAIN/` or `https://DOMAIN/`, at most.
const MAX_REDIRECTS: usize = 3;
/// Bytes of a `Location` or header value quoted in a message, at most.
const QUOTE_MAX: usize = 200;

/// Where the system's trusted CA certificates are looked for (the first that exists), after
/// `$SSL_CERT_FILE`: Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine/others.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

pub(super) const LONG_HELP: &str = "\
CHECKS (one output line per check; a failing check prints one line per issue code):
  domain           DOMAIN is a registrable domain: exactly one label above a public suffix
                   (built-in Public Suffix List), not an IP address, only a-z 0-9 - and dots.
                     domain.format.begins_with_dot       domain.format.ends_with_dot
                     domain.format.contains_double_dot   domain.format.invalid_characters
                     domain.format.ip_address            domain.format.public_suffix
                     domain.is_subdomain   (the other checks still run; www is skipped)
  tls              https://DOMAIN/ accepts a TLS connection with a valid certificate chain
                   (system CAs plus --cacert). When it fails, the checks below are skipped.
                     domain.tls.cannot_connect           domain.tls.invalid_cert_chain
  header           the answer to https://DOMAIN/ (a redirect too) has exactly one
                   Strict-Transport-Security header with max-age >= 31536000 (one year),
                   includeSubDomains and preload, each once, and no unknown directive.
                     response.no_header                  response.multiple_headers
                     header.preloadable.max_age.missing  header.preloadable.max_age.zero
                     header.preloadable.max_age.too_low
                     header.preloadable.include_sub_domains.missing
                     header.preloadable.preload.missing
                     header.parse.repeated.max_age       header.parse.repeated.preload
                     header.parse.repeated.include_sub_domains
                     header.parse.unknown_directive      header.parse.invalid.max_age.no_value
                     header.parse.invalid.preload        header.parse.invalid.include_sub_domains
                     header.parse.max_age.non_digit_characters
                     header.parse.max_age.parse_int_error
                   warnings only: header.parse.empty, header.parse.empty_directive,
                     header.parse.max_age.leading_zero, header.parse.spelling.include_sub_domains,
                     header.preloadable.max_age.over_10_years
  http-redirects   http://DOMAIN/ redirects, and its first redirect is to https://DOMAIN/...;
                   at most 3 redirects, all to https:// after the first; no
                   Strict-Transport-Security on any plain-HTTP answer; the first HTTPS
                   answer carries a preloadable header too.
                     redirects.http.no_redirect          redirects.http.first_redirect.insecure
                     redirects.http.www_first            redirects.too_many
                     redirects.insecure.subsequent       redirects.follow_error
                     redirects.http.hsts_on_http         redirects.http.first_redirect.no_hsts
                     redirects.http.first_redirect.invalid
  https-redirects  the redirects from https://DOMAIN/, if any, stay on https:// (at most 3).
                     redirects.insecure.initial          redirects.insecure.subsequent
                     redirects.too_many                  redirects.follow_error
  www              when www.DOMAIN accepts a TCP connection on port 443, it completes a TLS
                   handshake with a valid certificate.
                     domain.www.no_tls

Issue codes are those of the hstspreload tool behind hstspreload.org, except
domain.format.ip_address and redirects.http.hsts_on_http (force-https's own). Unlike that
tool, repeated, invalid and unknown directives are errors here, not warnings.

Requests are HTTP/1.1 GET with no body, on ports 80 and 443; each has --timeout seconds to
connect, complete TLS and answer. --connect sends every request for DOMAIN and www.DOMAIN to
one address (like curl --resolve); other hosts met in redirects are resolved through DNS.

OUTPUT:
  One line per check: `ok`, `FAIL`, `warn` or `skip`, the check's name, then its detail or
  `ISSUE.CODE: message`; then `verdict: preloadable` or `verdict: not preloadable (N errors)`.
  --json prints one object: {\"domain\", \"preloadable\", \"header\", \"errors\": [codes],
  \"checks\": [{\"name\", \"status\", \"detail\", \"issues\": [{\"code\", \"severity\", \"message\"}]}]}.

EXIT STATUS:
  0  DOMAIN is preloadable
  1  DOMAIN is not preloadable (at least one error above)
  2  usage error (bad option, unreadable --cacert)

EXAMPLES:
  force-https preload-check example.com
  force-https preload-check example.com --connect 198.51.100.1 --cacert /etc/force-https/ca.pem
  force-https preload-check example.com --json | jq -r .errors[]

Preloading is opt-in and hard to undo: removal from the browsers' lists takes months. Check
that every subdomain serves HTTPS before setting `preload = true` in [hsts].";

/// `force-https preload-check` options.
#[derive(Debug, Args)]
pub(super) struct PreloadArgs {
    /// The domain to check, e.g. example.com (a registrable domain, not a subdomain).
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// Send the requests for DOMAIN and www.DOMAIN to this IP address (ports 80 and 443)
    /// instead of the address DNS gives, e.g. the edge before the DNS points at it.
    #[arg(long, value_name = "IP")]
    connect: Option<IpAddr>,
    /// Also trust the CA certificates of this PEM file (a private or test CA).
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds each request may take: connect, TLS handshake and the answer's head.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    timeout: u64,
}

// ---------------------------------------------------------------------------------------------
// Issues and checks
// ---------------------------------------------------------------------------------------------

/// How much an issue matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Severity {
    /// The domain is not preloadable.
    Error,
    /// Worth fixing; does not block preloading.
    Warning,
}

/// One finding, with its hstspreload issue code.
#[derive(Debug, Clone, Serialize)]
struct Issue {
    code: &'static str,
    severity: Severity,
    message: String,
}

fn error(code: &'static str, message: impl Into<String>) -> Issue {
    Issue {
        code,
        severity: Severity::Error,
        message: message.into(),
    }
}

fn warning(code: &'static str, message: impl Into<String>) -> Issue {
    Issue {
        code,
        severity: Severity::Warning,
        message: message.into(),
    }
}

fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(|i| i.severity == Severity::Error)
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Fail,
    Skipped,
}

/// One line (or more) of the report.
#[derive(Debug, Clone, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    issues: Vec<Issue>,
}

impl Check {
    fn new(name: &'static str, detail: impl Into<String>, issues: Vec<Issue>) -> Check {
        let status = if has_errors(&issues) {
            Status::Fail
        } else {
            Status::Ok
        };
        Check {
            name,
            status,
            detail: detail.into(),
            issues,
        }
    }

    fn skipped(name: &'static str, why: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Skipped,
            detail: why.into(),
            issues: Vec::new(),
        }
    }
}

/// The whole result.
#[derive(Debug, Serialize)]
struct Report {
    domain: String,
    preloadable: bool,
    /// The Strict-Transport-Security value of https://DOMAIN/, when there was exactly one.
    header: Option<String>,
    /// The error codes, in check order.
    errors: Vec<&'static str>,
    checks: Vec<Check>,
}

impl Report {
    fn new(domain: String, checks: Vec<Check>, header: Option<String>) -> Report {
        let errors: Vec<&'static str> = checks
            .iter()
            .flat_map(|c| c.issues.iter())
            .filter(|i| i.severity == Severity::Error)
            .map(|i| i.code)
            .collect();
        Report {
            domain,
            preloadable: errors.is_empty(),
            header,
            errors,
            checks,
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let name = c.name;
            match c.status {
                Status::Ok => out.push_str(&format!("ok    {name:<16} {}\n", c.detail)),
                Status::Skipped => out.push_str(&format!("skip  {name:<16} {}\n", c.detail)),
                Status::Fail => {}
            }
            for i in &c.issues {
                let tag = match i.severity {
                    Severity::Error => "FAIL",
                    Severity::Warning => "warn",
                };
                out.push_str(&format!("{tag:<5} {name:<16} {}: {}\n", i.code, i.message));
            }
        }
        if self.preloadable {
            out.push_str(&format!(
                "verdict: preloadable: {} meets every hstspreload.org requirement checked here\n",
                self.domain
            ));
        } else {
            out.push_str(&format!(
                "verdict: not preloadable ({} error(s): {})\n",
                self.errors.len(),
                self.errors.join(", ")
            ));
        }
        out
    }
}

/// `s` cut to [`QUOTE_MAX`] bytes (at a character boundary) for a message.
fn quote(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return s.to_string();
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

// ---------------------------------------------------------------------------------------------
// Domain shape
// ---------------------------------------------------------------------------------------------

/// The domain as checked: trimmed, lowercased, internationalized names as A-labels.
fn normalize(input: &str) -> String {
    let t = input.trim();
    if t.is_ascii() {
        return t.to_ascii_lowercase();
    }
    idna::domain_to_ascii(t).unwrap_or_else(|_| t.to_lowercase())
}

/// The format checks: an error stops every other check. `Ok` carries the public suffix.
fn domain_format(domain: &str) -> Result<String, Issue> {
    if domain.starts_with('.') {
        return Err(error(
            "domain.format.begins_with_dot",
            "the domain must not begin with `.`",
        ));
    }
    if domain.ends_with('.') {
        return Err(error(
            "domain.format.ends_with_dot",
            "the domain must not end with `.`",
        ));
    }
    if domain.contains("..") {
        return Err(error(
            "domain.format.contains_double_dot",
            "the domain must not contain `..`",
        ));
    }
    let bare = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .unwrap_or(domain);
    if bare.parse::<IpAddr>().is_ok() {
        return Err(error(
            "domain.format.ip_address",
            format!("`{domain}` is an IP address: only domain names can be preloaded"),
        ));
    }
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(error(
            "domain.format.invalid_characters",
            format!(
                "`{}` has characters other than letters, digits, dashes and dots",
                quote(domain)
            ),
        ));
    }
    let suffix = psl::suffix(domain.as_bytes())
        .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
        .unwrap_or_else(|| domain.to_string());
    if suffix == domain {
        return Err(error(
            "domain.format.public_suffix",
            format!(
                "`{domain}` is a TLD or public suffix (publicsuffix.org): give the whole name, e.g. `example.{domain}`"
            ),
        ));
    }
    Ok(suffix)
}

/// `domain.is_subdomain` unless `domain` is exactly one label above its public suffix.
fn domain_level(domain: &str) -> Option<Issue> {
    let registrable = psl::domain(domain.as_bytes())
        .map(|d| String::from_utf8_lossy(d.as_bytes()).into_owned())?;
    (registrable != domain).then(|| {
        error(
            "domain.is_subdomain",
            format!(
                "`{domain}` is a subdomain: preload `{registrable}` instead (only whole registered domains are accepted)"
            ),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The Strict-Transport-Security header
// ---------------------------------------------------------------------------------------------

/// What a header says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Hsts {
    max_age: Option<u64>,
    include_subdomains: bool,
    preload: bool,
}

/// Parses a header value as hstspreload's `ParseHeaderString` does: `;`-separated
/// directives, case-insensitive names.
fn parse_header(value: &str) -> (Hsts, Vec<Issue>) {
    let mut h = Hsts::default();
    let mut issues = Vec::new();
    let push_unique = |issues: &mut Vec<Issue>, i: Issue| {
        if !issues.iter().any(|x: &Issue| x.code == i.code) {
            issues.push(i);
        }
    };
    let directives: Vec<&str> = value.split(';').map(str::trim).collect();
    if directives.len() == 1 && directives[0].is_empty() {
        issues.push(warning("header.parse.empty", "the header is empty"));
        return (h, issues);
    }
    for d in directives {
        let lower = d.to_ascii_lowercase();
        if lower == "preload" {
            if h.preload {
                push_unique(
                    &mut issues,
                    error(
                        "header.parse.repeated.preload",
                        "repeated directive `preload`",
                    ),
                );
            }
            h.preload = true;
        } else if lower.starts_with("preload") {
            push_unique(
                &mut issues,
                error(
                    "header.parse.invalid.preload",
                    format!("invalid `preload` directive `{}`", quote(d)),
                ),
            );
        } else if lower == "includesubdomains" {
            if h.include_subdomains {
                push_unique(
                    &mut issues,
                    error(
                        "header.parse.repeated.include_sub_domains",
                        "repeated directive `includeSubDomains`",
                    ),
                );
            } else if d != "includeSubDomains" {
                push_unique(
                    &mut issues,
                    warning(
                        "header.parse.spelling.include_sub_domains",
                        format!("`{d}`: the usual spelling is `includeSubDomains`"),
                    ),
                );
            }
            h.include_subdomains = true;
        } else if lower.starts_with("includesubdomains") {
            push_unique(
                &mut issues,
                error(
                    "header.parse.invalid.include_sub_domains",
                    format!("invalid `includeSubDomains` directive `{}`", quote(d)),
                ),
            );
        } else if let Some(v) = lower.strip_prefix("max-age=") {
            match parse_max_age(v, d, &mut issues) {
                Some(_) if h.max_age.is_some() => push_unique(
                    &mut issues,
                    error(
                        "header.parse.repeated.max_age",
                        "repeated directive `max-age`",
                    ),
                ),
                Some(n) => h.max_age = Some(n),
                None => {}
            }
        } else if lower.starts_with("max-age") {
            push_unique(
                &mut issues,
                error(
                    "header.parse.invalid.max_age.no_value",
                    "a `max-age` directive without a value",
                ),
            );
        } else if d.is_empty() {
            push_unique(
                &mut issues,
                warning(
                    "header.parse.empty_directive",
                    "an empty directive or an extra `;`",
                ),
            );
        } else {
            issues.push(error(
                "header.parse.unknown_directive",
                format!("unknown directive `{}`", quote(d)),
            ));
        }
    }
    (h, issues)
}

fn parse_max_age(v: &str, directive: &str, issues: &mut Vec<Issue>) -> Option<u64> {
    if v.len() > 1 && v.starts_with('0') {
        issues.push(warning(
            "header.parse.max_age.leading_zero",
            format!("max-age with a leading 0: `{}`", quote(directive)),
        ));
    }
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        issues.push(error(
            "header.parse.max_age.non_digit_characters",
            format!("max-age must be digits only: `{}`", quote(directive)),
        ));
        return None;
    }
    match v.parse::<u64>() {
        Ok(n) if i64::try_from(n).is_ok() => Some(n),
        _ => {
            issues.push(error(
                "header.parse.max_age.parse_int_error",
                format!("max-age `{}` is too large", quote(v)),
            ));
            None
        }
    }
}

/// hstspreload's `PreloadableHeader`: the directives preloading needs.
fn preloadable_header(h: &Hsts) -> Vec<Issue> {
    let mut issues = Vec::new();
    if !h.include_subdomains {
        issues.push(error(
            "header.preloadable.include_sub_domains.missing",
            "the header must contain `includeSubDomains`",
        ));
    }
    if !h.preload {
        issues.push(error(
            "header.preloadable.preload.missing",
            "the header must contain `preload`",
        ));
    }
    match h.max_age {
        None => issues.push(error(
            "header.preloadable.max_age.missing",
            "the header must contain a valid `max-age`",
        )),
        Some(0) => issues.push(error(
            "header.preloadable.max_age.zero",
            format!("max-age=0 removes HSTS; preloading needs at least {MIN_MAX_AGE} (one year)"),
        )),
        Some(n) if n < MIN_MAX_AGE => issues.push(error(
            "header.preloadable.max_age.too_low",
            format!("max-age={n} is below {MIN_MAX_AGE} (one year)"),
        )),
        Some(n) if n > TEN_YEARS => issues.push(warning(
            "header.preloadable.max_age.over_10_years",
            format!("max-age={n} is over ten years, an unusually long value"),
        )),
        Some(_) => {}
    }
    issues
}

/// hstspreload's `PreloadableResponse`: exactly one header, well-formed and preloadable.
fn preloadable_response(values: &[String]) -> Vec<Issue> {
    match values {
        [] => vec![error(
            "response.no_header",
            "no Strict-Transport-Security header in the answer",
        )],
        [v] => {
            let (h, mut issues) = parse_header(v);
            issues.extend(preloadable_header(&h));
            issues
        }
        many => vec![error(
            "response.multiple_headers",
            format!(
                "{} Strict-Transport-Security headers in the answer: send exactly one",
                many.len()
            ),
        )],
    }
}

// ---------------------------------------------------------------------------------------------
// URLs and redirect chains
// ---------------------------------------------------------------------------------------------

/// An absolute http(s) URL, as far as this check needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    /// Lowercase; IPv6 without brackets.
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

impl Url {
    fn new(https: bool, host: &str) -> Url {
        Url {
            https,
            host: host.to_string(),
            port: if https { 443 } else { 80 },
            path: "/".into(),
        }
    }

    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// `host[:port]` for the Host header and messages.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Whether this is `https://DOMAIN/...` on the default port.
    fn is_https_on(&self, domain: &str) -> bool {
        self.https && self.host == domain && self.port == 443
    }

    /// Resolves a `Location` value against this URL (RFC 3986 §5.2, simplified: no dot
    /// segment removal). `None` when it is not an http(s) URL.
    fn join(&self, location: &str) -> Option<Url> {
        let loc = location.trim();
        let lower = loc.to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("https://") {
            (true, &loc[8..])
        } else if lower.starts_with("http://") {
            (false, &loc[7..])
        } else if let Some(rest) = loc.strip_prefix("//") {
            (self.https, rest)
        } else if loc.contains(':') && loc.find(':') < loc.find(['/', '?', '#']).or(Some(loc.len()))
        {
            // Another scheme (ftp:, javascript:, ...).
            return None;
        } else {
            let path = loc.split('#').next().unwrap_or("");
            let path = if path.starts_with('/') {
                path.to_string()
            } else if path.is_empty() {
                self.path.clone()
            } else if path.starts_with('?') {
                let base = self.path.split('?').next().unwrap_or("/");
                format!("{base}{path}")
            } else {
                let base = self.path.split('?').next().unwrap_or("/");
                let dir = base.rsplit_once('/').map_or("", |(d, _)| d);
                format!("{dir}/{path}")
            };
            return Some(Url {
                path,
                ..self.clone()
            });
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = split_host_port(authority, if https { 443 } else { 80 })?;
        let tail = tail.split('#').next().unwrap_or("");
        let path = if tail.starts_with('/') {
            tail.to_string()
        } else {
            format!("/{tail}")
        };
        Some(Url {
            https,
            host,
            port,
            path,
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// `host[:port]` → lowercase host (IPv6 without brackets) and port.
fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" | ":" => default,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host.to_ascii_lowercase(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, "")) => (h, default),
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some((host, port))
}

/// One request made while following redirects, and what came back.
#[derive(Debug, Clone)]
struct Step {
    url: Url,
    status: u16,
    sts: Vec<String>,
}

/// The redirects followed from one URL.
#[derive(Debug, Clone, Default)]
struct Followed {
    /// Every request made, in order (the first is the start URL).
    steps: Vec<Step>,
    /// The redirect targets, in order (hstspreload's "chain").
    chain: Vec<Url>,
    /// More than [`MAX_REDIRECTS`] redirects.
    too_many: bool,
    /// A request that failed, or a Location that could not be followed.
    error: Option<String>,
}

/// hstspreload's `preloadableRedirectChain`: every redirect target is https.
fn chain_issues(start: &Url, f: &Followed) -> Vec<Issue> {
    let mut issues = Vec::new();
    if f.too_many {
        issues.push(error(
            "redirects.too_many",
            format!("more than {MAX_REDIRECTS} redirects from {start}"),
        ));
    }
    if let Some((i, u)) = f.chain.iter().enumerate().find(|(_, u)| !u.https) {
        issues.push(if i == 0 {
            error(
                "redirects.insecure.initial",
                format!(
                    "{start} redirects to an insecure page: {}",
                    quote(&u.to_string())
                ),
            )
        } else {
            error(
                "redirects.insecure.subsequent",
                format!(
                    "{start} redirects to an insecure page on redirect #{}: {}",
                    i + 1,
                    quote(&u.to_string())
                ),
            )
        });
    }
    if let Some(e) = &f.error {
        issues.push(error(
            "redirects.follow_error",
            format!("following the redirects from {start}: {e}"),
        ));
    }
    issues
}

/// The http-redirects check from what was fetched (hstspreload's
/// `preloadableHTTPRedirectsURL`, plus no HSTS on plain HTTP). `main_header_ok`: the
/// HTTPS answer's own header passed, so the first redirect's header is worth reporting.
fn http_redirect_issues(domain: &str, f: &Followed, main_header_ok: bool) -> Vec<Issue> {
    let start = Url::new(false, domain);
    let mut issues = Vec::new();
    match f.chain.first() {
        None => {
            let answer = f
                .steps
                .first()
                .map_or_else(String::new, |s| format!(" (it answered {})", s.status));
            issues.push(error(
                "redirects.http.no_redirect",
                format!("{start} does not redirect to https://{domain}/{answer}"),
            ));
            if let Some(e) = &f.error {
                issues.push(error(
                    "redirects.follow_error",
                    format!("requesting {start}: {e}"),
                ));
            }
        }
        Some(first) if first.is_https_on(domain) => {
            issues.extend(chain_issues(&start, f));
            if main_header_ok {
                match f.steps.iter().find(|s| &s.url == first) {
                    Some(step) => {
                        let hsts = preloadable_response(&step.sts);
                        if let Some(e) = hsts.iter().find(|i| i.severity == Severity::Error) {
                            issues.push(error(
                                "redirects.http.first_redirect.no_hsts",
                                format!(
                                    "{start} redirects to {first}, which has no preloadable Strict-Transport-Security header: {}",
                                    e.message
                                ),
                            ));
                        }
                    }
                    None if f.error.is_some() => issues.push(error(
                        "redirects.http.first_redirect.invalid",
                        format!("{start} redirects to {first}, which could not be fetched"),
                    )),
                    None => {}
                }
            }
        }
        Some(first) if first.host == format!("www.{domain}") => issues.push(error(
            "redirects.http.www_first",
            format!(
                "{start} should redirect to https://{domain}/ before adding www; its first redirect is to {}",
                quote(&first.to_string())
            ),
        )),
        Some(first) => issues.push(error(
            "redirects.http.first_redirect.insecure",
            format!(
                "{start} redirects to {}: the first redirect must be to https://{domain}/ (same host, HTTPS)",
                quote(&first.to_string())
            ),
        )),
    }
    if let Some(s) = f.steps.iter().find(|s| !s.url.https && !s.sts.is_empty()) {
        issues.push(error(
            "redirects.http.hsts_on_http",
            format!(
                "the plain-HTTP answer of {} carries Strict-Transport-Security (RFC 6797 §7.2: send it over HTTPS only)",
                s.url
            ),
        ));
    }
    issues
}

/// A one-line description of a chain for the `ok` line.
fn describe_chain(start: &Url, f: &Followed) -> String {
    if f.chain.is_empty() {
        return format!("{start} does not redirect");
    }
    let mut s = start.to_string();
    for u in &f.chain {
        s.push_str(" -> ");
        s.push_str(&quote(&u.to_string()));
    }
    format!("{s} ({} redirect(s))", f.chain.len())
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// Why a request failed.
#[derive(Debug)]
enum FetchError {
    /// No address, or no TCP connection.
    Connect(String),
    /// The server's certificate chain was refused.
    Certificate(String),
    /// Another TLS failure (an alert, no common protocol, ...).
    Tls(String),
    /// The HTTP exchange failed.
    Http(String),
    /// Nothing within --timeout.
    Timeout(Duration),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect(e) => write!(f, "cannot connect: {e}"),
            FetchError::Certificate(e) => write!(f, "invalid certificate: {e}"),
            FetchError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            FetchError::Http(e) => write!(f, "HTTP error: {e}"),
            FetchError::Timeout(t) => write!(f, "no answer within {}s", t.as_secs()),
        }
    }
}

/// The head of an answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    location: Option<String>,
    sts: Vec<String>,
}

impl Answer {
    fn redirect(&self) -> Option<&str> {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
            .then_some(self.location.as_deref())
            .flatten()
    }
}

struct Client {
    domain: String,
    www: String,
    connect: Option<IpAddr>,
    tls: Arc<ClientConfig>,
    timeout: Duration,
}

impl Client {
    /// Where `host:port` is: --connect for DOMAIN and www.DOMAIN, an IP literal as is, else DNS.
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
        if let Some(ip) = self.connect
            && (host == self.domain || host == self.www)
        {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
            .map_err(|e| FetchError::Connect(format!("cannot resolve {host}: {e}")))?;
        let v: Vec<SocketAddr> = found.collect();
        if v.is_empty() {
            return Err(FetchError::Connect(format!("{host} has no address")));
        }
        Ok(v)
    }

    async fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, FetchError> {
        let mut last = String::from("no address");
        for a in self.addresses(host, port).await? {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        Err(FetchError::Connect(last))
    }

    async fn tls(
        &self,
        host: &str,
        port: u16,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, FetchError> {
        let tcp = self.tcp(host, port).await?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| FetchError::Tls(format!("{host} is not a valid TLS server name: {e}")))?;
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                let rustls_error = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>());
                match rustls_error {
                    Some(rustls::Error::InvalidCertificate(c)) => {
                        FetchError::Certificate(format!("{c:?}"))
                    }
                    Some(other) => FetchError::Tls(other.to_string()),
                    None => FetchError::Tls(e.to_string()),
                }
            })
    }

    /// `GET url` without following redirects, bounded by the timeout.
    async fn get(&self, url: &Url) -> Result<Answer, FetchError> {
        tokio::time::timeout(self.timeout, async {
            if url.https {
                let s = self.tls(&url.host, url.port).await?;
                exchange(s, url).await
            } else {
                let s = self.tcp(&url.host, url.port).await?;
                exchange(s, url).await
            }
        })
        .await
        .map_err(|_| FetchError::Timeout(self.timeout))?
    }

    /// Follows redirects from `start`, at most [`MAX_REDIRECTS`].
    async fn follow(&self, start: Url, first: Option<Answer>) -> Followed {
        let mut f = Followed::default();
        let mut url = start;
        let mut pending = first;
        loop {
            let answer = match pending.take() {
                Some(a) => a,
                None => match self.get(&url).await {
                    Ok(a) => a,
                    Err(e) => {
                        f.error = Some(format!("{url}: {e}"));
                        return f;
                    }
                },
            };
            let next = answer.redirect().map(|l| (l.to_string(), url.join(l)));
            f.steps.push(Step {
                url: url.clone(),
                status: answer.status,
                sts: answer.sts,
            });
            let Some((location, next)) = next else {
                return f;
            };
            let Some(next) = next else {
                f.error = Some(format!("cannot follow Location {:?}", quote(&location)));
                return f;
            };
            f.chain.push(next.clone());
            if f.chain.len() > MAX_REDIRECTS {
                f.too_many = true;
                return f;
            }
            url = next;
        }
    }

    /// The www check: when www.DOMAIN takes a TCP connection on 443, TLS must work too.
    async fn www(&self) -> Check {
        let www = &self.www;
        let tcp = tokio::time::timeout(self.timeout, self.tcp(www, 443)).await;
        match tcp {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Check::new(
                    "www",
                    format!("{www} does not take connections on port 443 ({e}): nothing to check"),
                    Vec::new(),
                );
            }
            Err(_) => {
                return Check::new(
                    "www",
                    format!(
                        "{www}:443 did not answer within {}s: nothing to check",
                        self.timeout.as_secs()
                    ),
                    Vec::new(),
                );
            }
        }
        match tokio::time::timeout(self.timeout, self.tls(www, 443)).await {
            Ok(Ok(_)) => Check::new(
                "www",
                format!("{www} answers TLS with a valid certificate"),
                Vec::new(),
            ),
            Ok(Err(e)) => Check::new(
                "www",
                "",
                vec![error(
                    "domain.www.no_tls",
                    format!(
                        "{www} exists but does not answer HTTPS ({e}); people type it by habit, so preloading would break it"
                    ),
                )],
            ),
            Err(_) => Check::new(
                "www",
                "",
                vec![error(
                    "domain.www.no_tls",
                    format!(
                        "{www} takes TCP connections on 443 but no TLS handshake within {}s",
                        self.timeout.as_secs()
                    ),
                )],
            ),
        }
    }
}

/// One HTTP/1.1 GET on an open connection: the head of the answer.
async fn exchange<S>(stream: S, url: &Url) -> Result<Answer, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let req = Request::get(url.path.as_str())
        .header(header::HOST, url.authority())
        .header(header::USER_AGENT, "force-https-preload-check")
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Http(e.to_string()));
    driver.abort();
    let resp = resp?;
    let sts = resp
        .headers()
        .get_all(header::STRICT_TRANSPORT_SECURITY)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    Ok(Answer {
        status: resp.status().as_u16(),
        location,
        sts,
    })
}

/// The trusted roots: the system's CA bundle and --cacert. Errors are usage errors (exit 2).
fn roots(cacert: Option<&Path>) -> Result<(RootCertStore, Vec<String>), Failure> {
    let mut store = RootCertStore::empty();
    let mut notes = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_CA_FILES.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    match system {
        Some(p) => {
            if let Ok(iter) = CertificateDer::pem_file_iter(&p) {
                let certs: Vec<CertificateDer<'static>> = iter.filter_map(Result::ok).collect();
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    notes.push(format!("no usable CA certificate in {}", p.display()));
                }
            }
        }
        None => notes.push("no system CA bundle found (set SSL_CERT_FILE)".into()),
    }
    if let Some(p) = cacert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| fail(2, format!("cannot read --cacert {}: {e}", p.display())))?;
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(fail(
                2,
                format!("--cacert {}: no CA certificate in it", p.display()),
            ));
        }
    }
    Ok((store, notes))
}

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

/// Runs the checks and prints the report. `Ok(true)`: preloadable.
pub(super) fn run(args: &PreloadArgs) -> Result<bool, Failure> {
    let domain = normalize(&args.domain);
    if domain.is_empty() {
        return Err(fail(2, "DOMAIN is empty"));
    }
    let (store, notes) = roots(args.cacert.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(1, format!("cannot start the runtime: {e}")))?;
    let mut tls = ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = Client {
        www: format!("www.{domain}"),
        domain: domain.clone(),
        connect: args.connect,
        tls: Arc::new(tls),
        timeout: Duration::from_secs(args.timeout),
    };
    let report = rt.block_on(check(&client));
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| fail(1, e.to_string()))?;
        println!("{text}");
    } else {
        if !report
            .checks
            .iter()
            .any(|c| c.name == "tls" && c.status == Status::Ok)
        {
            for n in &notes {
                eprintln!("force-https: note: {n}");
            }
        }
        print!("{}", report.text());
    }
    Ok(report.preloadable)
}

/// Every check, in hstspreload's order.
async fn check(client: &Client) -> Report {
    let domain = client.domain.clone();
    let mut checks = Vec::new();
    let suffix = match domain_format(&domain) {
        Ok(s) => s,
        Err(issue) => {
            checks.push(Check::new("domain", "", vec![issue]));
            for name in ["tls", "header", "http-redirects", "https-redirects", "www"] {
                checks.push(Check::skipped(name, "the domain name is not valid"));
            }
            return Report::new(domain, checks, None);
        }
    };
    let level = domain_level(&domain);
    let subdomain = level.is_some();
    checks.push(Check::new(
        "domain",
        format!("{domain} is a registrable domain (public suffix `{suffix}`)"),
        level.into_iter().collect(),
    ));

    let https = Url::new(true, &domain);
    let first = match client.get(&https).await {
        Ok(a) => a,
        Err(e) => {
            let issue = match &e {
                FetchError::Certificate(_) => error(
                    "domain.tls.invalid_cert_chain",
                    format!("{https} uses an incomplete or invalid certificate chain ({e})"),
                ),
                _ => error(
                    "domain.tls.cannot_connect",
                    format!("cannot fetch {https} over TLS ({e})"),
                ),
            };
            checks.push(Check::new("tls", "", vec![issue]));
            for name in ["header", "http-redirects", "https-redirects", "www"] {
                checks.push(Check::skipped(
                    name,
                    format!("no HTTPS answer from {https}"),
                ));
            }
            return Report::new(domain, checks, None);
        }
    };
    checks.push(Check::new(
        "tls",
        format!(
            "{https} answered {} over TLS with a valid certificate chain",
            first.status
        ),
        Vec::new(),
    ));

    let header_issues = preloadable_response(&first.sts);
    let header = match first.sts.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    let header_ok = !has_errors(&header_issues);
    checks.push(Check::new(
        "header",
        format!(
            "Strict-Transport-Security: {}",
            header.as_deref().map_or_else(String::new, quote)
        ),
        header_issues,
    ));

    let http = Url::new(false, &domain);
    let followed = client.follow(http.clone(), None).await;
    checks.push(Check::new(
        "http-redirects",
        describe_chain(&http, &followed),
        http_redirect_issues(&domain, &followed, header_ok),
    ));

    let followed = client.follow(https.clone(), Some(first)).await;
    checks.push(Check::new(
        "https-redirects",
        describe_chain(&https, &followed),
        chain_issues(&https, &followed),
    ));

    if subdomain {
        checks.push(Check::skipped(
            "www",
            format!("{domain} is not a registrable domain"),
        ));
    } else {
        checks.push(client.www().await);
    }
    Report::new(domain, checks, header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(issues: &[Issue]) -> Vec<&'static str> {
        issues.iter().map(|i| i.code).collect()
    }

    fn errors(issues: &[Issue]) -> Vec<&'static str> {
        issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .map(|i| i.code)
            .collect()
    }

    #[test]
    fn domain_shapes() {
        let code = |d: &str| domain_format(&normalize(d)).err().map(|i| i.code);
        assert_eq!(code("example.com"), None);
        assert_eq!(code("Example.COM"), None);
        assert_eq!(code("example.co.uk"), None);
        assert_eq!(code(".example.com"), Some("domain.format.begins_with_dot"));
        assert_eq!(code("example.com."), Some("domain.format.ends_with_dot"));
        assert_eq!(
            code("example..com"),
            Some("domain.format.contains_double_dot")
        );
        assert_eq!(code("198.51.100.1"), Some("domain.format.ip_address"));
        assert_eq!(code("2001:db8::1"), Some("domain.format.ip_address"));
        assert_eq!(code("[2001:db8::1]"), Some("domain.format.ip_address"));
        assert_eq!(
            code("exa&mple.com"),
            Some("domain.format.invalid_characters")
        );
        assert_eq!(
            code("exa_mple.com"),
            Some("domain.format.invalid_characters")
        );
        for ps in ["com", "co.uk", "github.io", "example"] {
            assert_eq!(code(ps), Some("domain.format.public_suffix"), "{ps}");
        }
        assert_eq!(normalize("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(code("bücher.example"), None);
    }

    #[test]
    fn subdomains() {
        assert!(domain_level("example.com").is_none());
        assert!(domain_level("example.co.uk").is_none());
        assert!(domain_level("me.github.io").is_none());
        let i = domain_level("shop.example.com").unwrap();
        assert_eq!(i.code, "domain.is_subdomain");
        assert!(i.message.contains("`example.com`"), "{}", i.message);
        assert_eq!(
            domain_level("a.b.example.co.uk").unwrap().code,
            "domain.is_subdomain"
        );
    }

    #[test]
    fn header_parsing_and_requirements() {
        let check = |v: &str| preloadable_response(&[v.to_string()]);
        assert!(check("max-age=31536000; includeSubDomains; preload").is_empty());
        assert!(check("max-age=63072000;includeSubDomains;preload").is_empty());
        assert!(
            check("preload; INCLUDESUBDOMAINS; MAX-AGE=31536000")
                .iter()
                .all(|i| i.severity == Severity::Warning)
        );
        assert_eq!(
            errors(&check("max-age=600; includeSubDomains; preload")),
            ["header.preloadable.max_age.too_low"]
        );
        assert_eq!(
            errors(&check("max-age=0; includeSubDomains; preload")),
            ["header.preloadable.max_age.zero"]
        );
        assert_eq!(
            errors(&check("max-age=31536000; preload")),
            ["header.preloadable.include_sub_domains.missing"]
        );
        assert_eq!(
            errors(&check("max-age=31536000; includeSubDomains")),
            ["header.preloadable.preload.missing"]
        );
        assert_eq!(
            errors(&check("includeSubDomains; preload")),
            ["header.preloadable.max_age.missing"]
        );
        assert_eq!(
            errors(&check(
                "max-age=31536000; includeSubDomains; preload; preload"
            )),
            ["header.parse.repeated.preload"]
        );
        assert_eq!(
            errors(&check(
                "max-age=31536000; max-age=31536000; includeSubDomains; preload"
            )),
            ["header.parse.repeated.max_age"]
        );
        assert_eq!(
            errors(&check(
                "max-age=31536000; includeSubDomains; includeSubDomains; preload"
            )),
            ["header.parse.repeated.include_sub_domains"]
        );
        assert_eq!(
            errors(&check(
                "max-age=31536000; includeSubDomains; preload; foo=bar"
            )),
            ["header.parse.unknown_directive"]
        );
        assert_eq!(
            errors(&check("max-age=1y; includeSubDomains; preload")),
            [
                "header.parse.max_age.non_digit_characters",
                "header.preloadable.max_age.missing"
            ]
        );
        assert_eq!(
            errors(&check("max-age; includeSubDomains; preload")),
            [
                "header.parse.invalid.max_age.no_value",
                "header.preloadable.max_age.missing"
            ]
        );
        assert_eq!(
            errors(&check(
                "max-age=99999999999999999999; includeSubDomains; preload"
            )),
            [
                "header.parse.max_age.parse_int_error",
                "header.preloadable.max_age.missing"
            ]
        );
        assert_eq!(
            codes(&check("max-age=031536000; includeSubDomains; preload;")),
            [
                "header.parse.max_age.leading_zero",
                "header.parse.empty_directive"
            ]
        );
        assert_eq!(
            codes(&check("max-age=999999999; includeSubDomains; preload")),
            ["header.preloadable.max_age.over_10_years"]
        );
        assert_eq!(codes(&preloadable_response(&[])), ["response.no_header"]);
        let two = [
            "max-age=31536000; includeSubDomains; preload".to_string(),
            "max-age=1".into(),
        ];
        assert_eq!(
            codes(&preloadable_response(&two)),
            ["response.multiple_headers"]
        );
    }

    #[test]
    fn location_resolution() {
        let base = Url {
            https: false,
            host: "example.com".into(),
            port: 80,
            path: "/a/b?q=1".into(),
        };
        let j = |l: &str| base.join(l).map(|u| u.to_string());
        assert_eq!(
            j("https://example.com/").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(
            j("HTTPS://Example.COM").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(
            j("https://example.com:8443/x").as_deref(),
            Some("https://example.com:8443/x")
        );
        assert_eq!(
            j("https://example.com:443/x").as_deref(),
            Some("https://example.com/x")
        );
        assert_eq!(
            j("//www.example.com/x").as_deref(),
            Some("http://www.example.com/x")
        );
        assert_eq!(j("/c").as_deref(), Some("http://example.com/c"));
        assert_eq!(j("c#frag").as_deref(), Some("http://example.com/a/c"));
        assert_eq!(j("?z").as_deref(), Some("http://example.com/a/b?z"));
        assert_eq!(
            j("https://[2001:db8::1]/").as_deref(),
            Some("https://[2001:db8::1]/")
        );
        assert_eq!(j("ftp://example.com/"), None);
        assert_eq!(j("https://example.com:99999/"), None);
    }

    fn url(s: &str) -> Url {
        Url::new(false, "x").join(s).unwrap()
    }

    fn step(s: &str, sts: &[&str]) -> Step {
        Step {
            url: url(s),
            status: 301,
            sts: sts.iter().map(|s| s.to_string()).collect(),
        }
    }

    const GOOD: &str = "max-age=31536000; includeSubDomains; preload";

    #[test]
    fn http_redirect_rules() {
        let d = "example.com";
        let f = |chain: &[&str], steps: Vec<Step>| Followed {
            steps,
            chain: chain.iter().map(|s| url(s)).collect(),
            ..Followed::default()
        };
        let ok = f(
            &["https://example.com/"],
            vec![
                step("http://example.com/", &[]),
                step("https://example.com/", &[GOOD]),
            ],
        );
        assert!(http_redirect_issues(d, &ok, true).is_empty());

        let none = f(&[], vec![step("http://example.com/", &[])]);
        assert_eq!(
            codes(&http_redirect_issues(d, &none, true)),
            ["redirects.http.no_redirect"]
        );

        let hsts80 = f(&[], vec![step("http://example.com/", &[GOOD])]);
        assert_eq!(
            codes(&http_redirect_issues(d, &hsts80, true)),
            ["redirects.http.no_redirect", "redirects.http.hsts_on_http"]
        );

        let www = f(
            &["https://www.example.com/"],
            vec![step("http://example.com/", &[])],
        );
        assert_eq!(
            codes(&http_redirect_issues(d, &www, true)),
            ["redirects.http.www_first"]
        );

        for other in [
            "https://example.com:8443/",
            "https://other.example/",
            "http://example.com/x",
        ] {
            let o = f(&[other], vec![step("http://example.com/", &[])]);
            assert_eq!(
                codes(&http_redirect_issues(d, &o, true)),
                ["redirects.http.first_redirect.insecure"],
                "{other}"
            );
        }

        let mut long = f(
            &[
                "https://example.com/",
                "https://example.com/1",
                "https://example.com/2",
                "https://example.com/3",
            ],
            vec![
                step("http://example.com/", &[]),
                step("https://example.com/", &[GOOD]),
            ],
        );
        long.too_many = true;
        assert_eq!(
            codes(&http_redirect_issues(d, &long, true)),
            ["redirects.too_many"]
        );

        let back = f(
            &["https://example.com/", "http://example.com/x"],
            vec![
                step("http://example.com/", &[]),
                step("https://example.com/", &[GOOD]),
            ],
        );
        assert_eq!(
            codes(&http_redirect_issues(d, &back, true)),
            ["redirects.insecure.subsequent"]
        );

        let weak = f(
            &["https://example.com/"],
            vec![
                step("http://example.com/", &[]),
                step("https://example.com/", &["max-age=1"]),
            ],
        );
        assert_eq!(
            codes(&http_redirect_issues(d, &weak, true)),
            ["redirects.http.first_redirect.no_hsts"]
        );
        // Not repeated when the main header already failed.
        assert!(http_redirect_issues(d, &weak, false).is_empty());
    }

    #[test]
    fn https_chain_rules() {
        let start = Url::new(true, "example.com");
        let f = Followed {
            chain: vec![url("http://example.com/")],
            ..Followed::default()
        };
        assert_eq!(
            codes(&chain_issues(&start, &f)),
            ["redirects.insecure.initial"]
        );
        let f = Followed {
            error: Some("x".into()),
            ..Followed::default()
        };
        assert_eq!(codes(&chain_issues(&start, &f)), ["redirects.follow_error"]);
    }

    #[test]
    fn report_text_and_verdict() {
        let checks = vec![
            Check::new("domain", "example.com is a registrable domain", Vec::new()),
            Check::new(
                "header",
                "",
                vec![error("header.preloadable.preload.missing", "no preload")],
            ),
            Check::skipped("www", "skipped"),
        ];
        let r = Report::new("example.com".into(), checks, None);
        assert!(!r.preloadable);
        let t = r.text();
        assert!(t.contains("ok    domain"), "{t}");
        assert!(
            t.contains("FAIL  header           header.preloadable.preload.missing: no preload"),
            "{t}"
        );
        assert!(t.contains("skip  www"), "{t}");
        assert!(
            t.ends_with(
                "verdict: not preloadable (1 error(s): header.preloadable.preload.missing)\n"
            ),
            "{t}"
        );
    }
}
