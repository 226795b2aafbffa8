//! The fleet's key layout in etcd, as pure functions: `<prefix>hosts/<host>` with the value
//! `{"force_https": true}` or `{"force_https": false}` (docs/design.md, "Fleet (etcd)").
//!
//! `<host>` is a pattern exactly as [`force_https_proto::host::parse_domain_pattern`] writes
//! it (lowercase A-labels, no trailing dot, `*.suffix` for a one-label wildcard): a key in
//! another spelling is refused rather than normalized, so two keys never name one host. The
//! value is a JSON object with exactly the field `force_https`.

use force_https_proto::host::{DomainPattern, parse_domain_pattern};
use serde::{Deserialize, Serialize};

/// The folder of host keys under the prefix.
pub const HOSTS: &str = "hosts/";

/// A value as stored in etcd.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostValue {
    /// Whether the host is enforced.
    pub force_https: bool,
}

/// The key range of every host key: `<prefix>hosts/` and the first key after all of them
/// (etcd's `range_end` of a prefix: the prefix with its last byte incremented; the prefix ends
/// with `/`, so no carry is needed).
pub fn hosts_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let start = format!("{prefix}{HOSTS}").into_bytes();
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    (start, end)
}

/// The key of a pattern (already normalized).
pub fn host_key(prefix: &str, pattern: &str) -> String {
    format!("{prefix}{HOSTS}{pattern}")
}

/// The value that enforces (`true`) or releases (`false`) a host.
pub fn host_value(enforce: bool) -> String {
    format!("{{\"force_https\":{enforce}}}")
}

/// The pattern a host key names, with its normalized text.
///
/// # Errors
/// A key outside `<prefix>hosts/`, not UTF-8, an invalid host, or a host not written in its
/// normalized form; the text says which.
pub fn parse_key(prefix: &str, key: &[u8]) -> Result<(DomainPattern, String), String> {
    let key = std::str::from_utf8(key).map_err(|_| "the key is not UTF-8".to_string())?;
    let host = key
        .strip_prefix(prefix)
        .and_then(|k| k.strip_prefix(HOSTS))
        .ok_or_else(|| format!("not under {prefix}{HOSTS}"))?;
    let pattern = parse_domain_pattern(host).map_err(|e| format!("invalid host {host:?}: {e}"))?;
    let normalized = pattern.to_string();
    if normalized != host {
        return Err(format!(
            "host {host:?} is not in its normalized form: write the key as {prefix}{HOSTS}{normalized}"
        ));
    }
    Ok((pattern, normalized))
}

/// Whether a value enforces its host.
///
/// # Errors
/// Anything but `{"force_https": true|false}` (JSON, no other field).
pub fn parse_value(value: &[u8]) -> Result<bool, String> {
    serde_json::from_slice::<HostValue>(value)
        .map(|v| v.force_https)
        .map_err(|e| {
            let shown = String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned();
            format!("invalid value {shown:?} (expected {{\"force_https\": true}} or false): {e}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let (p, k) = parse_key("/fh/", b"/fh/hosts/shop.example.com").unwrap();
        assert_eq!(k, "shop.example.com");
        assert_eq!(p.to_string(), k);
        let (_, k) = parse_key("/fh/", b"/fh/hosts/*.shop.example.com").unwrap();
        assert_eq!(k, "*.shop.example.com");
        assert_eq!(host_key("/fh/", &k), "/fh/hosts/*.shop.example.com");
        for bad in [
            &b"/fh/hosts/Shop.example.com"[..],
            b"/fh/hosts/shop.example.com.",
            b"/fh/hosts/bad host",
            b"/fh/hosts/",
            b"/fh/other/x.example",
            b"/fh/hosts/\xff",
            b"/fh/hosts/a.*.example",
        ] {
            assert!(parse_key("/fh/", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            hosts_range("/fh/"),
            (b"/fh/hosts/".to_vec(), b"/fh/hosts0".to_vec())
        );
    }

    #[test]
    fn values() {
        assert_eq!(parse_value(br#"{"force_https": true}"#), Ok(true));
        assert_eq!(parse_value(host_value(false).as_bytes()), Ok(false));
        assert_eq!(parse_value(host_value(true).as_bytes()), Ok(true));
        for bad in [
            &b""[..],
            b"true",
            br#"{"force_https": "yes"}"#,
            br#"{"force_https": true, "x": 1}"#,
            br#"{"force_http": true}"#,
            b"\xff",
        ] {
            assert!(parse_value(bad).is_err(), "{bad:?}");
        }
    }
}
