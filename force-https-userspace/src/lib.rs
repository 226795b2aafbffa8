//! force-https: an edge daemon that makes websites reachable over HTTPS only.
//!
//! Layers, from the wire up:
//! - [`http80`], [`tls`] (and, with `[xdp]`, the XDP program loaded by [`xdp`]) accept
//!   client connections;
//! - [`proxy`] decides per request and reaches the site backends;
//! - [`policy`] is the host table every path reads, changed live through [`control`] and
//!   persisted by [`state`];
//! - [`config`] is the file it all starts from, [`metrics`] what it reports, [`daemon`] the
//!   wiring, [`cli`] the command line.
//!
//! The pure protocol logic (parsing, response bytes) is in the `force-https-proto` crate.

pub mod afxdp;
pub mod allocs;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod http80;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod state;
pub mod tls;
pub mod xdp;
