//! Helpers of the admin HTTP listener tests (admin_api.rs, dashboard.rs): a token file, a
//! config with an `[admin]` section, and requests to the listener from inside the edge
//! namespace (it is loopback there).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::{HttpResponse, Netns, http_request_here};

/// Where the tests' admin listener binds, inside the edge namespace.
pub const ADMIN_LISTEN: &str = "127.0.0.1:9180";

/// The admin listener's address.
pub fn admin_addr() -> SocketAddr {
    ADMIN_LISTEN.parse().expect("admin addr")
}

/// A token file in a temp dir, removed on drop.
pub struct TokenFile {
    _dir: tempfile::TempDir,
    /// Its path.
    pub path: PathBuf,
    /// The token it holds.
    pub token: String,
}

impl TokenFile {
    /// A token file of `mode` holding a fixed 32-character token and a final newline.
    pub fn new(mode: u32) -> TokenFile {
        let dir = tempfile::Builder::new()
            .prefix("fht-token-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("admin.token");
        let token = "t0k3n-for-the-admin-api-tests-42".to_string();
        std::fs::write(&path, format!("{token}\n")).expect("write token");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        TokenFile {
            _dir: dir,
            path,
            token,
        }
    }

    /// `Authorization: Bearer TOKEN`.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// The `[admin]` section for [`crate::Config::extra`]: listen on [`ADMIN_LISTEN`], with the
/// token file when given.
pub fn admin_section(token: Option<&TokenFile>) -> String {
    let mut s = format!("[admin]\nlisten = \"{ADMIN_LISTEN}\"\n");
    if let Some(t) = token {
        s.push_str(&format!(
            "token_file = {}\n",
            crate::toml_str(t.path.to_str().expect("utf-8 path"))
        ));
    }
    s
}

/// One request to the admin listener from the edge namespace (`Connection: close`, the
/// `Host` the listener expects unless `headers` has one), parsed.
pub fn admin_call(
    ns: &Netns,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {ADMIN_LISTEN}\r\n"));
    }
    if !headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    }) {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    ns.run_in_edge(|| http_request_here(admin_addr(), &bytes))
}

/// `GET PATH` on the admin listener; the body parsed as JSON, asserting the status.
pub fn admin_get_json(ns: &Netns, path: &str, want: u16) -> serde_json::Value {
    let r = admin_call(ns, "GET", path, &[], b"");
    assert_eq!(r.status, want, "GET {path}: {}{}", r.head, r.body_text());
    crate::json(&r.body_text())
}

/// `PUT PATH {"force_https": on}` with the token and JSON content type.
pub fn admin_put(ns: &Netns, token: &TokenFile, path: &str, on: bool) -> HttpResponse {
    admin_call(
        ns,
        "PUT",
        path,
        &[
            ("Authorization", &token.bearer()),
            ("Content-Type", "application/json"),
        ],
        format!("{{\"force_https\": {on}}}").as_bytes(),
    )
}
