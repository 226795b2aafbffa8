//! Upgrading `http://` URLs to `https://` inside the places HTML puts them: one URL
//! (`src`, `href`, …), a `srcset` candidate list, CSS (`url(…)`, `@import "…"`) and a
//! `<meta http-equiv="refresh">` content. Pure string functions; each returns `None` when it
//! changed nothing, so the caller leaves the original bytes alone.
//!
//! Only URLs whose host the caller's [`KnownHost`] says serves HTTPS are upgraded: a link to
//! a host without HTTPS would break the page worse than mixed content does. The scheme and
//! host compare case-insensitively; the host keeps its spelling in the output; an explicit
//! `:80` (or an empty port) is dropped, any other port kept; user-info is kept as it was.
//! URLs spelled with character references (`http&#58;//…`) or percent-encoded hosts are left
//! alone.

use crate::host::{DomainPattern, parse_domain_pattern};

/// Whether a host (lowercase, no trailing dot, A-labels) is known to serve HTTPS.
pub trait KnownHost {
    /// `host` is lowercase ASCII without a trailing dot.
    fn serves_https(&self, host: &str) -> bool;
}

impl<F: Fn(&str) -> bool> KnownHost for F {
    fn serves_https(&self, host: &str) -> bool {
        self(host)
    }
}

/// HTML's ASCII whitespace (tab, LF, FF, CR, space).
fn is_html_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// The upgraded form of one URL (surrounding whitespace kept), or `None` when it is not an
/// `http://` URL on a known host.
pub fn upgrade_url(url: &str, known: &dyn KnownHost) -> Option<String> {
    let start = url.bytes().position(|b| !is_html_space(b))?;
    let (lead, rest) = url.split_at(start);
    let after = strip_http_scheme(rest)?;
    let end = after
        .find(|c: char| {
            matches!(c, '/' | '\\' | '?' | '#') || (c.is_ascii() && is_html_space(c as u8))
        })
        .unwrap_or(after.len());
    let (authority, tail) = after.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    if hostport.starts_with('[') {
        // An IP literal: never a name in the policy table.
        return None;
    }
    let (host, port) = match hostport.rfind(':') {
        Some(i) => (&hostport[..i], &hostport[i + 1..]),
        None => (hostport, ""),
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let Ok(DomainPattern::Exact(name)) = parse_domain_pattern(host) else {
        return None;
    };
    if !known.serves_https(&name) {
        return None;
    }
    // http's port (`:80`, `:080`) goes; any other stays as written (an empty one means the
    // scheme's default on either side).
    let keep_port = port.is_empty() || port.trim_start_matches('0') != "80";
    let mut out = String::with_capacity(url.len() + 1);
    out.push_str(lead);
    out.push_str("https://");
    out.push_str(userinfo);
    out.push_str(host);
    if keep_port && hostport.len() > host.len() {
        out.push(':');
        out.push_str(port);
    }
    out.push_str(tail);
    Some(out)
}

/// What follows `http://` (any case), or `None`.
fn strip_http_scheme(s: &str) -> Option<&str> {
    let head = s.get(..7)?;
    head.eq_ignore_ascii_case("http://").then(|| &s[7..])
}

/// Upgrades every candidate of a `srcset`/`imagesrcset` value (HTML §4.8.4.3.11: a URL, then
/// optional descriptors, candidates separated by commas). `None` when nothing changed.
pub fn upgrade_srcset(value: &str, known: &dyn KnownHost) -> Option<String> {
    let b = value.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        // Separators before the URL.
        while i < b.len() && (is_html_space(b[i]) || b[i] == b',') {
            i += 1;
        }
        let url_start = i;
        while i < b.len() && !is_html_space(b[i]) {
            i += 1;
        }
        // A URL's trailing commas end the candidate.
        let mut url_end = i;
        while url_end > url_start && b[url_end - 1] == b',' {
            url_end -= 1;
        }
        if url_end > url_start
            && let Some(up) = upgrade_url(&value[url_start..url_end], known)
        {
            out.push_str(&value[copied..url_start]);
            out.push_str(&up);
            copied = url_end;
            changed = true;
        }
        if url_end < i {
            // The URL ended in commas: the next candidate starts after them.
            continue;
        }
        // Descriptors, up to a comma outside parentheses.
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
    }
    changed.then(|| {
        out.push_str(&value[copied..]);
        out
    })
}

/// Upgrades the URLs of a CSS text: every `url(…)` (quoted or not) and every
/// `@import "…"`. With `in_attribute`, `&quot;` and `&#39;` also count as quotes (a `style`
/// attribute's value as written in the markup). `None` when nothing changed.
pub fn upgrade_css(css: &str, known: &dyn KnownHost, in_attribute: bool) -> Option<String> {
    let b = css.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        let (open_len, is_import) = if b.len() - i >= 4 && b[i..i + 4].eq_ignore_ascii_case(b"url(")
        {
            (4, false)
        } else if b.len() - i >= 7 && b[i..i + 7].eq_ignore_ascii_case(b"@import") {
            (7, true)
        } else {
            i += 1;
            continue;
        };
        let mut j = i + open_len;
        while j < b.len() && is_css_space(b[j]) {
            j += 1;
        }
        let Some((quote, qlen)) = opening_quote(&css[j..], in_attribute) else {
            if is_import {
                // `@import url(…)` is found by the `url(` branch.
                i = j;
                continue;
            }
            // Unquoted url(…): up to `)` or whitespace.
            let end = css[j..]
                .find(|c: char| c == ')' || c.is_ascii_whitespace())
                .map_or(b.len(), |k| j + k);
            if let Some(up) = upgrade_url(&css[j..end], known) {
                out.push_str(&css[copied..j]);
                out.push_str(&up);
                copied = end;
                changed = true;
            }
            i = end.max(i + 1);
            continue;
        };
        let url_start = j + qlen;
        let Some(len) = css[url_start..].find(quote) else {
            break;
        };
        let url_end = url_start + len;
        if let Some(up) = upgrade_url(&css[url_start..url_end], known) {
            out.push_str(&css[copied..url_start]);
            out.push_str(&up);
            copied = url_end;
            changed = true;
        }
        i = url_end + quote.len();
    }
    changed.then(|| {
        out.push_str(&css[copied..]);
        out
    })
}

/// CSS whitespace.
fn is_css_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// The quote that opens `s` (and its length), if any.
fn opening_quote(s: &str, in_attribute: bool) -> Option<(&'static str, usize)> {
    if s.starts_with('"') {
        Some(("\"", 1))
    } else if s.starts_with('\'') {
        Some(("'", 1))
    } else if in_attribute && s.starts_with("&quot;") {
        Some(("&quot;", 6))
    } else if in_attribute && s.starts_with("&#39;") {
        Some(("&#39;", 5))
    } else {
        None
    }
}

/// Upgrades the URL of a `<meta http-equiv="refresh">` content (HTML §4.2.5.3: a delay, then
/// `;` or `,`, then optionally `url=`, then the URL, optionally quoted). `None` when nothing
/// changed.
pub fn upgrade_meta_refresh(content: &str, known: &dyn KnownHost) -> Option<String> {
    let b = content.as_bytes();
    let mut i = 0;
    while i < b.len() && (is_html_space(b[i]) || b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i >= b.len() || !(b[i] == b';' || b[i] == b',') {
        return None;
    }
    i += 1;
    while i < b.len() && is_html_space(b[i]) {
        i += 1;
    }
    if b.len() - i >= 3 && b[i..i + 3].eq_ignore_ascii_case(b"url") {
        let mut j = i + 3;
        while j < b.len() && is_html_space(b[j]) {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            i = j + 1;
            while i < b.len() && is_html_space(b[i]) {
                i += 1;
            }
        }
    }
    let (start, end) = match b.get(i) {
        Some(q @ (b'"' | b'\'')) => {
            let start = i + 1;
            let end = b[start..]
                .iter()
                .position(|c| c == q)
                .map_or(b.len(), |k| start + k);
            (start, end)
        }
        _ => (i, b.len()),
    };
    let up = upgrade_url(&content[start..end], known)?;
    Some(format!("{}{}{}", &content[..start], up, &content[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(h: &str) -> bool {
        matches!(h, "a.example" | "b.example" | "xn--bcher-kva.example")
    }

    #[test]
    fn one_url() {
        let k = &known;
        assert_eq!(
            upgrade_url("http://a.example/x?y#z", k).as_deref(),
            Some("https://a.example/x?y#z")
        );
        assert_eq!(
            upgrade_url("HTTP://A.Example.", k).as_deref(),
            Some("https://A.Example.")
        );
        assert_eq!(
            upgrade_url("http://a.example:80/p", k).as_deref(),
            Some("https://a.example/p")
        );
        assert_eq!(
            upgrade_url("http://a.example:/p", k).as_deref(),
            Some("https://a.example:/p")
        );
        assert_eq!(
            upgrade_url("http://a.example:8080/p", k).as_deref(),
            Some("https://a.example:8080/p")
        );
        assert_eq!(
            upgrade_url("http://u:p@a.example/", k).as_deref(),
            Some("https://u:p@a.example/")
        );
        assert_eq!(
            upgrade_url("  http://a.example ", k).as_deref(),
            Some("  https://a.example ")
        );
        assert_eq!(
            upgrade_url("http://bücher.example/", k).as_deref(),
            Some("https://bücher.example/")
        );
        assert_eq!(
            upgrade_url("http://a.example?q", k).as_deref(),
            Some("https://a.example?q")
        );
        // Left alone.
        for s in [
            "http://c.example/",
            "https://a.example/",
            "//a.example/",
            "/a.example",
            "http://[2001:db8::1]/",
            "http://198.51.100.1/",
            "http://a.example:8x/",
            "http://a%2eexample/",
            "http&#58;//a.example/",
            "ftp://a.example/",
            "http:",
            "",
        ] {
            assert_eq!(upgrade_url(s, k), None, "{s}");
        }
    }

    #[test]
    fn srcset_candidates() {
        let k = &known;
        assert_eq!(
            upgrade_srcset(
                "http://a.example/1.png 1x, http://c.example/2.png 2x,http://b.example/3.png 3x",
                k
            )
            .as_deref(),
            Some(
                "https://a.example/1.png 1x, http://c.example/2.png 2x,https://b.example/3.png 3x"
            )
        );
        assert_eq!(
            upgrade_srcset("http://a.example/a,b.png 100w", k).as_deref(),
            Some("https://a.example/a,b.png 100w")
        );
        assert_eq!(
            upgrade_srcset("http://a.example/x.png,, http://b.example/y.png", k).as_deref(),
            Some("https://a.example/x.png,, https://b.example/y.png")
        );
        assert_eq!(upgrade_srcset("x.png 1x, http://c.example/y 2x", k), None);
        assert_eq!(upgrade_srcset("", k), None);
    }

    #[test]
    fn css_urls() {
        let k = &known;
        assert_eq!(
            upgrade_css("a{background:url(http://a.example/x.png)} b{background:URL( 'http://b.example/y' )}", k, false).as_deref(),
            Some("a{background:url(https://a.example/x.png)} b{background:URL( 'https://b.example/y' )}")
        );
        assert_eq!(
            upgrade_css(
                "@import \"http://a.example/s.css\"; @import url(http://c.example/t.css);",
                k,
                false
            )
            .as_deref(),
            Some("@import \"https://a.example/s.css\"; @import url(http://c.example/t.css);")
        );
        assert_eq!(
            upgrade_css(
                "background:url(&quot;http://a.example/i.png&quot;)",
                k,
                true
            )
            .as_deref(),
            Some("background:url(&quot;https://a.example/i.png&quot;)")
        );
        assert_eq!(
            upgrade_css("background:url(\"http://a.example/unterminated", k, false),
            None
        );
        assert_eq!(upgrade_css("color: red; url(", k, false), None);
    }

    #[test]
    fn meta_refresh() {
        let k = &known;
        assert_eq!(
            upgrade_meta_refresh("5; url=http://a.example/next", k).as_deref(),
            Some("5; url=https://a.example/next")
        );
        assert_eq!(
            upgrade_meta_refresh("0;URL='http://a.example/n' ", k).as_deref(),
            Some("0;URL='https://a.example/n' ")
        );
        assert_eq!(
            upgrade_meta_refresh("0, http://a.example/", k).as_deref(),
            Some("0, https://a.example/")
        );
        assert_eq!(upgrade_meta_refresh("5", k), None);
        assert_eq!(upgrade_meta_refresh("5; url=http://c.example/", k), None);
    }
}
