//! The three request paths. Each accepts client traffic its own way and takes its answers
//! from the one policy decision (`crate::policy::decide`):
//!
//! - [`xdp`]: the XDP program and its AF_XDP responder answer a connection's first request on
//!   port 80 without a kernel socket;
//! - [`http80`]: the port-80 socket path, for everything XDP passes, and everything where XDP
//!   is off;
//! - [`tls`]: the TLS terminator on 443.
//!
//! None of them imports the daemon, the admin side or another path (`cargo xtask test` checks
//! it); they share the edge state (`crate::edge`), the proxy (`crate::proxy`) and the listener
//! plumbing (`crate::net`).

pub mod http80;
pub mod tls;
pub mod xdp;

#[cfg(test)]
mod same_answers;
