//! Automatic HTTPS Rewrites, the pure part: which `http://` URLs of an HTML document become
//! `https://` ([`urls`]), the streaming document rewriter built on lol_html ([`html`]), and
//! the content codings a rewritten body is decoded from and encoded to ([`coding`]). The
//! proxy's body filter (`proxy/filters/https_rewrites.rs` in the daemon) decides when to use
//! them; the fuzz target and the criterion bench call them directly.

pub mod coding;
pub mod html;
pub mod urls;
