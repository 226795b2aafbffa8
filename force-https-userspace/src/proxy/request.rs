//! The request phase of the proxy: which host a request is for, and the request the backend
//! gets (hop-by-hop headers removed, forwarding headers set from what force-https saw).
//! Pure functions over `http` types, unit-tested below.

use hyper::{
    HeaderMap, Request, Uri, Version,
    header::{self, HeaderName, HeaderValue},
};

use force_https_proto::host::{normalize, parse_authority};

use super::ConnInfo;

/// The host a request is for (RFC 9112 §3.2, RFC 9113 §8.3.1): the absolute-form or
/// `:authority` authority, else `Host`, else, for HTTP/1.0 only, `default_host`. Normalized
/// (lowercase, no port, no trailing dot). `None` means 400: several `Host` fields, none on
/// HTTP/1.1, or an invalid one.
pub fn host<B>(req: &Request<B>, default_host: Option<&str>) -> Option<String> {
    let hosts = req.headers().get_all(header::HOST);
    let mut it = hosts.iter();
    let host_header = it.next();
    if it.next().is_some() {
        return None;
    }
    let raw: &[u8] = match (req.uri().authority(), host_header) {
        (Some(a), _) => a.as_str().as_bytes(),
        (None, Some(h)) => h.as_bytes(),
        (None, None) => {
            return match (req.version(), default_host) {
                (Version::HTTP_10 | Version::HTTP_09, Some(d)) => Some(d.to_string()),
                _ => None,
            };
        }
    };
    if req.version() == Version::HTTP_11 && host_header.is_none() {
        return None;
    }
    let a = parse_authority(raw).ok()?;
    Some(normalize(&a))
}

/// Whether a request head exceeds `limit` bytes, counted as the port-80 socket path counts
/// them (`force_https_proto::head::parse_head`): `Some(414)` when the request line
/// (`METHOD SP target SP HTTP/1.1 CRLF`) alone does not fit (RFC 9112 §3: URI Too Long),
/// `Some(431)` when the header fields make the head too large (RFC 6585 §5). Fields count
/// as their most compact form (`name:value CRLF`), so a head the socket path accepted is
/// never refused here when it is replayed.
pub fn over_limit<B>(req: &Request<B>, limit: usize) -> Option<u16> {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    if line > limit {
        return Some(414);
    }
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 3)
        .sum();
    (line + fields + 2 > limit).then_some(431)
}

/// The token force-https adds to `CDN-Loop` on every request it forwards (RFC 8586 §2).
pub const CDN_LOOP_TOKEN: &str = "force-https";

/// Whether a request's `CDN-Loop` fields (RFC 8586: a list of `cdn-id [; params]`) carry
/// [`CDN_LOOP_TOKEN`], case-insensitively: it went through force-https before.
pub fn has_cdn_loop_token(headers: &HeaderMap) -> bool {
    headers
        .get_all(&CDN_LOOP)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let id = item.split(';').next().unwrap_or("").trim();
            id.eq_ignore_ascii_case(CDN_LOOP_TOKEN)
        })
}

/// The path and query of a request-target, `/` when it has none.
pub fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1). A `static`, not
/// a `const`: a `const` array is built and dropped again at every use.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether a field is one of [`HOP_BY_HOP`] or `Proxy-Authorization`: one `match` on the
/// name's text (a comparison per name of the list costs more on every field of every
/// message).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
    )
}

/// The options of every `Connection` field (RFC 9110 §7.6.1), trimmed.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including those named in `Connection`, and
/// `Proxy-Authorization`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_options(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    // One pass over the names present instead of eight lookups: most messages carry none.
    if named.is_empty() && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
    headers.remove(header::PROXY_AUTHORIZATION);
}

/// Whether an HTTP/1.1 request asks to switch protocols (`Connection: upgrade` with
/// `Upgrade`, RFC 9110 §7.8).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_options(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The forwarding headers force-https owns: the edge is the only one to tell a backend who
/// the client is and whether, how and where it connected, so whatever the client sent under
/// any of these names is removed. The first five are then set from what force-https saw
/// ([`upstream_fields`]); the others, which frameworks also read to decide whether a request
/// was secure or where it came from (Rack, Django, Flask/Werkzeug, Spring, IIS), are never
/// sent. A `static`, not a `const`: a `const` array is built and dropped again at every use.
pub static FORWARDING_HEADERS: [HeaderName; 15] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_PORT,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-protocol"),
    HeaderName::from_static("x-url-scheme"),
    HeaderName::from_static("front-end-https"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("true-client-ip"),
];

/// Whether a field is one of [`FORWARDING_HEADERS`]: one `match` on the name's text.
fn is_forwarding(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "forwarded"
            | "x-forwarded-ssl"
            | "x-forwarded-scheme"
            | "x-forwarded-protocol"
            | "x-url-scheme"
            | "front-end-https"
            | "x-forwarded-server"
            | "x-forwarded-prefix"
            | "x-real-ip"
            | "x-client-ip"
            | "true-client-ip"
    )
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// `CDN-Loop` (RFC 8586). A `static`: a `&str` name is parsed and allocated at every use.
pub static CDN_LOOP: HeaderName = HeaderName::from_static("cdn-loop");

/// Removes every client-sent field of [`FORWARDING_HEADERS`]: the edge sets the first five
/// itself ([`upstream_fields`]) and never sends the others.
pub fn strip_forwarding(headers: &mut HeaderMap) {
    // One pass over the names present instead of fifteen lookups: most requests carry none.
    if headers.keys().any(is_forwarding) {
        for n in FORWARDING_HEADERS.iter() {
            headers.remove(n);
        }
    }
}

/// The value of a field force-https adds to a request it forwards ([`upstream_fields`]),
/// borrowed from what the connection and the request already hold: the direct path writes it
/// into the request head without building a header value ([`AddedValue::write`]).
#[derive(Debug, Clone, Copy)]
pub enum AddedValue<'a> {
    /// A value made once per connection (the client's address, the listener's port).
    Held(&'a HeaderValue),
    /// The host as the backend gets it in `Host` ([`upstream_host`]).
    Host(&'a [u8]),
    /// A fixed value.
    Static(&'static str),
    /// `Forwarded` (RFC 7239 §4): `for=` the client's address (an IPv6 address quoted, in
    /// brackets), `host=` a quoted-string of the host's visible ASCII bytes but `"` and `\`
    /// (a name never holds others; a forged `Host` on port 80 loses them), `proto=` the
    /// scheme.
    Forwarded {
        /// The client's address as text.
        client: &'a [u8],
        /// Whether `client` is an IPv6 address.
        ipv6: bool,
        /// The host as the backend gets it in `Host`.
        host: &'a [u8],
        /// `http` or `https`.
        proto: &'static str,
    },
}

impl AddedValue<'_> {
    /// Appends the value's bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match *self {
            AddedValue::Held(v) => out.extend_from_slice(v.as_bytes()),
            AddedValue::Host(h) => out.extend_from_slice(h),
            AddedValue::Static(s) => out.extend_from_slice(s.as_bytes()),
            AddedValue::Forwarded {
                client,
                ipv6,
                host,
                proto,
            } => {
                out.extend_from_slice(b"for=");
                if ipv6 {
                    out.extend_from_slice(b"\"[");
                    out.extend_from_slice(client);
                    out.extend_from_slice(b"]\"");
                } else {
                    out.extend_from_slice(client);
                }
                out.extend_from_slice(b";host=\"");
                let quotable = |b: &u8| (0x21..=0x7e).contains(b) && *b != b'"' && *b != b'\\';
                if host.iter().all(quotable) {
                    out.extend_from_slice(host);
                } else {
                    out.extend(host.iter().filter(|b| quotable(b)));
                }
                out.extend_from_slice(b"\";proto=");
                out.extend_from_slice(proto.as_bytes());
            }
        }
    }

    /// The value as a header value (hyper's client path): a held value is shared, the others
    /// are copied (one allocation each).
    pub fn to_header_value(self) -> HeaderValue {
        match self {
            AddedValue::Held(v) => v.clone(),
            AddedValue::Static(s) => HeaderValue::from_static(s),
            _ => {
                let mut v = Vec::with_capacity(64);
                self.write(&mut v);
                // Built from a valid host and an address's text: always a valid value.
                HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
                    .unwrap_or_else(|_| HeaderValue::from_static(""))
            }
        }
    }
}

/// The fields force-https adds to every request it forwards, after `Host` (which carries
/// `host`, the value of [`upstream_host`]), in the order they go: `X-Forwarded-Port` (the port
/// of the listener the client connected to), `X-Forwarded-For` (the client's address),
/// `X-Forwarded-Proto` (`http` or `https`), `X-Forwarded-Host`, `Forwarded` (RFC 7239 §4),
/// `CDN-Loop: force-https` (RFC 8586 §2: added to the client's own, the only one of these a
/// client's value is kept for; a request that comes back with it is answered 508,
/// `policy::decide`) and `TE: trailers` when `te_trailers` (the client accepts
/// trailers, RFC 9110 §10.1.4). The caller removes client-sent forwarding fields first
/// ([`strip_forwarding`]). The one list for both ways of sending a request:
/// [`set_upstream_fields`] (a header map) and [`DirectHead`] (the direct path's head).
pub fn upstream_fields<'a>(
    conn: &'a ConnInfo,
    host: &'a [u8],
    te_trailers: bool,
) -> impl Iterator<Item = (&'static HeaderName, AddedValue<'a>)> + 'a {
    let proto = conn.scheme.as_str();
    let client = conn.peer_ip_value.as_bytes();
    // The first five names of FORWARDING_HEADERS (a `static`, so they can be lent).
    let [xff, xfproto, xfhost, xfport, forwarded, ..] = &FORWARDING_HEADERS;
    [
        Some((xfport, AddedValue::Held(&conn.local_port_value))),
        Some((xff, AddedValue::Held(&conn.peer_ip_value))),
        Some((xfproto, AddedValue::Static(proto))),
        Some((xfhost, AddedValue::Host(host))),
        Some((
            forwarded,
            AddedValue::Forwarded {
                client,
                ipv6: conn.peer.ip().to_canonical().is_ipv6(),
                host,
                proto,
            },
        )),
        Some((&CDN_LOOP, AddedValue::Static(CDN_LOOP_TOKEN))),
        te_trailers.then_some((&header::TE, AddedValue::Static("trailers"))),
    ]
    .into_iter()
    .flatten()
}

/// Sets the fields of a request forwarded on hyper's client in its header map: `Host`
/// replaced by `host`, client-sent forwarding fields removed, then [`upstream_fields`]
/// (inserted, replacing any of the same name; `CDN-Loop` appended).
pub fn set_upstream_fields(
    headers: &mut HeaderMap,
    conn: &ConnInfo,
    host: &HeaderValue,
    te_trailers: bool,
) {
    strip_forwarding(headers);
    headers.insert(header::HOST, host.clone());
    for (name, value) in upstream_fields(conn, host.as_bytes(), te_trailers) {
        let value = match value {
            AddedValue::Host(_) => host.clone(),
            v => v.to_header_value(),
        };
        if *name == CDN_LOOP {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
}

/// A request without a body as the direct path sends it: the client's forwarding fields
/// removed ([`strip_forwarding`]), then [`DirectHead::encode`] writes the head for each try.
pub struct DirectHead<'a> {
    method: &'a hyper::Method,
    uri: &'a hyper::Uri,
    headers: &'a HeaderMap,
    conn: &'a ConnInfo,
    host: &'a [u8],
    te_trailers: bool,
}

impl<'a> DirectHead<'a> {
    /// Prepares `req` (the client's request, hop-by-hop fields removed; borrowed, not taken,
    /// so that the request's future does not hold it twice) for `conn`'s request to `host`
    /// (the normalized host); `te_trailers`: the client accepts trailers.
    pub fn new<B>(
        req: &'a mut Request<B>,
        conn: &'a ConnInfo,
        host: &'a str,
        te_trailers: bool,
    ) -> DirectHead<'a> {
        strip_forwarding(req.headers_mut());
        let req: &'a Request<B> = req;
        DirectHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            conn,
            host: upstream_host(req.headers(), req.uri(), conn, host),
            te_trailers,
        }
    }

    /// The request's method.
    pub fn method(&self) -> &'a hyper::Method {
        self.method
    }

    /// Appends the head to `out` (`h1::encode_request`): the origin-form target (RFC 9112
    /// §3.2.1), `Host` ([`upstream_host`]) first, the client's fields, [`upstream_fields`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        let added = upstream_fields(self.conn, self.host, self.te_trailers);
        super::h1::encode_request(
            self.method,
            path_and_query(self.uri),
            self.host,
            self.headers,
            added,
            out,
        );
    }
}

/// An IP address as a header value: IPv4-mapped IPv6 addresses as IPv4 (RFC 4291 §2.5.5.2).
pub fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    // An address's text is digits, dots, hex digits and colons: always a valid value.
    HeaderValue::from_str(&ip.to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A listener's port as a header value; the usual two without an allocation.
pub fn port_value(port: u16) -> HeaderValue {
    match port {
        80 => HeaderValue::from_static("80"),
        443 => HeaderValue::from_static("443"),
        p => HeaderValue::from(p),
    }
}

/// The `Host` the backend gets, borrowed from the request: on port 80 the client's `Host` as
/// sent; otherwise the absolute-form / `:authority` authority, else `Host`, else `host` (the
/// normalized host). Always a valid field value: each source is one.
pub fn upstream_host<'a>(
    headers: &'a HeaderMap,
    uri: &'a Uri,
    conn: &ConnInfo,
    host: &'a str,
) -> &'a [u8] {
    let sent = headers.get(header::HOST);
    match (sent, uri.authority()) {
        (Some(h), _) if conn.scheme == crate::policy::Scheme::Http => h.as_bytes(),
        (_, Some(a)) => a.as_str().as_bytes(),
        (Some(h), None) => h.as_bytes(),
        (None, None) => host.as_bytes(),
    }
}

/// [`upstream_host`] as a header value (hyper's client path): the client's `Host` shared when
/// it is the one, else a copy.
pub fn upstream_host_value(
    headers: &HeaderMap,
    uri: &Uri,
    conn: &ConnInfo,
    host: &str,
) -> HeaderValue {
    let bytes = upstream_host(headers, uri, conn, host);
    match headers.get(header::HOST) {
        Some(h) if h.as_bytes() == bytes => h.clone(),
        // Each source of `upstream_host` is a valid value.
        _ => HeaderValue::from_bytes(bytes).unwrap_or_else(|_| HeaderValue::from_static("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Authority, TlsInfo};
    use std::{net::SocketAddr, sync::Arc};

    struct Everything;
    impl Authority for Everything {
        fn covers(&self, _: &str) -> bool {
            true
        }
    }

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_selection() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        type Case<'a> = (
            Version,
            &'a str,
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (
                HTTP_11,
                "/",
                &["Shop.Example.com.:80"],
                None,
                Some("shop.example.com"),
            ),
            (
                HTTP_11,
                "http://a.example/x",
                &["b.example"],
                None,
                Some("a.example"),
            ),
            (HTTP_11, "/", &[], None, None),
            (HTTP_11, "/", &["a.example", "a.example"], None, None),
            (HTTP_11, "/", &["bad host"], None, None),
            (
                HTTP_11,
                "/",
                &["[2001:DB8::1]:80"],
                None,
                Some("[2001:db8::1]"),
            ),
            (HTTP_10, "/", &[], Some("d.example"), Some("d.example")),
            (HTTP_10, "/", &[], None, None),
            (HTTP_11, "/", &[], Some("d.example"), None),
            (HTTP_2, "https://h2.example/", &[], None, Some("h2.example")),
        ];
        for (v, uri, hosts, default, want) in cases {
            let r = req(*v, uri, hosts);
            assert_eq!(
                host(&r, *default).as_deref(),
                *want,
                "{v:?} {uri} {hosts:?}"
            );
        }
    }

    #[test]
    fn head_limits() {
        let r = |target: &str, header: usize| {
            Request::builder()
                .uri(target)
                .header("x-big", "a".repeat(header))
                .body(())
                .unwrap()
        };
        assert_eq!(over_limit(&r("/", 10), 1000), None);
        assert_eq!(
            over_limit(&r(&format!("/{}", "a".repeat(1000)), 10), 1000),
            Some(414)
        );
        assert_eq!(over_limit(&r("/", 1000), 1000), Some(431));
        // The request line alone: 414 (3 + 991 + 12 > 1000); the fields push it over: 431.
        assert_eq!(
            over_limit(&r(&format!("/{}", "a".repeat(990)), 10), 1000),
            Some(414)
        );
        assert_eq!(
            over_limit(&r(&format!("/{}", "a".repeat(970)), 10), 1000),
            Some(431)
        );
    }

    #[test]
    fn cdn_loop_token() {
        let h = |vals: &[&'static str]| {
            let mut m = HeaderMap::new();
            for v in vals {
                m.append("cdn-loop", HeaderValue::from_static(v));
            }
            has_cdn_loop_token(&m)
        };
        assert!(!h(&[]));
        assert!(!h(&["other-cdn", "foo; a=b"]));
        assert!(h(&["force-https"]));
        assert!(h(&["cdn-a, Force-HTTPS ; v=1"]));
        assert!(h(&["cdn-a", "cdn-b,force-https"]));
        assert!(!h(&["force-https-other"]));
    }

    #[test]
    fn hop_by_hop_stripping() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "close, x-secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("x-secret", "1"),
            ("x-kept", "2"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn the_name_matches_agree_with_the_lists() {
        for n in FORWARDING_HEADERS.iter() {
            assert!(is_forwarding(n), "{n}");
            assert!(!is_hop_by_hop(n), "{n}");
        }
        for n in HOP_BY_HOP.iter().chain([&header::PROXY_AUTHORIZATION]) {
            assert!(is_hop_by_hop(n), "{n}");
            assert!(!is_forwarding(n), "{n}");
        }
        let kept = [
            "host",
            "x-forwarded",
            "forwarded-for",
            "tes",
            "connection-x",
            "accept",
        ];
        for n in kept.map(HeaderName::from_static) {
            assert!(!is_hop_by_hop(&n) && !is_forwarding(&n), "{n}");
        }
    }

    #[test]
    fn forwarding_headers_replace_the_clients() {
        let mut h = HeaderMap::new();
        for n in FORWARDING_HEADERS.iter() {
            h.insert(n.clone(), HeaderValue::from_static("forged"));
        }
        let v4 = ConnInfo::https(
            "198.51.100.7:40000".parse::<SocketAddr>().unwrap(),
            8443,
            Arc::new(TlsInfo {
                sni: None,
                authority: Box::new(Everything),
            }),
        );
        set_upstream_fields(
            &mut h,
            &v4,
            &HeaderValue::from_static("shop.example"),
            false,
        );
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "x-forwarded-port",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "forwarded",
                "cdn-loop"
            ]
        );
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-forwarded-for"], "198.51.100.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.7;host=\"shop.example\";proto=https"
        );
        assert!(!h.contains_key("x-real-ip"));
        let mut h = HeaderMap::new();
        let v6 = ConnInfo::http("[2001:db8::7]:40000".parse::<SocketAddr>().unwrap(), 80);
        set_upstream_fields(&mut h, &v6, &HeaderValue::from_static("a\"b"), true);
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["x-forwarded-for"], "2001:db8::7");
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::7]\";host=\"ab\";proto=http"
        );
        // An IPv4-mapped peer is reported as IPv4.
        let mut h = HeaderMap::new();
        let mapped = ConnInfo::http("[::ffff:198.51.100.9]:1".parse::<SocketAddr>().unwrap(), 80);
        set_upstream_fields(&mut h, &mapped, &HeaderValue::from_static("h"), false);
        assert_eq!(h["x-forwarded-for"], "198.51.100.9");
    }

    /// The direct path's head ([`DirectHead`]) carries the same fields as hyper's path
    /// ([`set_upstream_fields`] with [`upstream_host_value`]), `Host` first, forged forwarding
    /// fields gone.
    #[test]
    fn both_ways_of_sending_add_the_same_fields() {
        let tls = || {
            Arc::new(TlsInfo {
                sni: None,
                authority: Box::new(Everything),
            })
        };
        let conns = [
            ConnInfo::http("198.51.100.7:40000".parse().unwrap(), 8080),
            ConnInfo::http("[2001:db8::7]:40000".parse().unwrap(), 80),
            ConnInfo::http("[::ffff:198.51.100.9]:1".parse().unwrap(), 80),
            ConnInfo::https("198.51.100.8:40000".parse().unwrap(), 443, tls()),
        ];
        for conn in &conns {
            for te in [false, true] {
                for host in ["shop.example", "shop.example:8080", "a\"b\\c"] {
                    let mut req = Request::builder()
                        .uri("/p?q")
                        .header("accept", "*/*")
                        .header(header::HOST, host)
                        .header("x-real-ip", "forged")
                        .header(&CDN_LOOP, "other-cdn")
                        .header("x-forwarded-for", "forged")
                        .header("accept", "text/html")
                        .body(())
                        .unwrap();
                    let mut map = req.headers().clone();

                    let mut head = Vec::new();
                    DirectHead::new(&mut req, conn, "shop.example", te).encode(&mut head);
                    let head = String::from_utf8(head).unwrap();
                    let mut lines: Vec<&str> = head.split("\r\n").collect();
                    assert_eq!(lines[0], "GET /p?q HTTP/1.1");
                    assert_eq!(lines[1], format!("host: {host}"));
                    lines.retain(|l| !l.is_empty() && !l.starts_with("GET "));
                    lines.sort();

                    let value = upstream_host_value(&map, req.uri(), conn, "shop.example");
                    set_upstream_fields(&mut map, conn, &value, te);
                    let mut fields: Vec<String> = map
                        .iter()
                        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                        .collect();
                    fields.sort();
                    assert_eq!(lines, fields, "{host} te={te}");
                    assert_eq!(map.get_all(&CDN_LOOP).iter().count(), 2);
                    assert_eq!(map.get_all("x-forwarded-for").iter().count(), 1);
                    assert!(!map.contains_key("x-real-ip"));
                    assert_eq!(map.contains_key(header::TE), te);
                }
            }
        }
        // The values themselves, on the direct path.
        let mut req = Request::builder().uri("/").body(()).unwrap();
        let forged = HeaderValue::from_bytes(b"a\"b\\c\xe9").unwrap();
        req.headers_mut().insert(header::HOST, forged);
        let mut head = Vec::new();
        DirectHead::new(&mut req, &conns[1], "abc", false).encode(&mut head);
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.contains("\r\nx-forwarded-port: 80\r\nx-forwarded-for: 2001:db8::7\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nforwarded: for=\"[2001:db8::7]\";host=\"abc\";proto=http\r\n"),
            "{head}"
        );
        let mut req = Request::builder()
            .uri("https://shop.example:8443/x")
            .body(())
            .unwrap();
        let mut head = Vec::new();
        DirectHead::new(&mut req, &conns[3], "shop.example", true).encode(&mut head);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /x HTTP/1.1\r\nhost: shop.example:8443\r\nx-forwarded-port: 443\r\n\
             x-forwarded-for: 198.51.100.8\r\nx-forwarded-proto: https\r\n\
             x-forwarded-host: shop.example:8443\r\n\
             forwarded: for=198.51.100.8;host=\"shop.example:8443\";proto=https\r\n\
             cdn-loop: force-https\r\nte: trailers\r\n\r\n"
        );
    }
}
