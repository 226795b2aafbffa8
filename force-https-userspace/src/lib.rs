//! force-https: an edge daemon that makes websites reachable over HTTPS only.
//!
//! The layout is the architecture (docs/design.md, "Userspace modules"):
//! - [`paths`]: the three request paths: [`paths::xdp`] (XDP + AF_XDP fast path),
//!   [`paths::http80`] (port-80 sockets) and [`paths::tls`] (the TLS terminator);
//! - [`policy`]: the one host-policy table that feeds them, and the one decision they take;
//! - [`proxy`]: the reverse proxy as phases with a response-filter chain;
//! - [`keepalive`]: the HTTP/1.1 keep-alive loop both client-facing listeners serve the
//!   proxy's common requests with (hyper's servers take the rest);
//! - [`edge`]: what every path reads per request; [`metrics`], [`net`] and [`secret`]: leaves;
//!   [`access_log`]: the access log's writer;
//! - [`reload`]: the live configuration reload;
//! - [`admin`]: the admin service and its transports (control socket, `/metrics`);
//! - [`fleet`]: `[fleet]`, etcd as the source of truth for which hosts are enforced;
//! - [`config`]: the file it all starts from; [`cli`]: the command line;
//! - [`daemon`]: the wiring, lifetimes and signals.
//!
//! Imports form a tree: `paths` never import `daemon`, `admin` or each other, `policy` imports
//! neither paths nor proxy, and only `cli` imports `daemon` (`cargo xtask test` checks it).
//! Only [`cli`] (the binary's entry point) and [`allocs`] (its optional allocator) are public
//! (and `fuzzing`, the fuzz targets' entry points, with the `fuzzing` feature); every other
//! module is crate-private, so the compiler reports what nothing uses.
//! The pure protocol logic (parsing, response bytes, frame rewriting) is in
//! `force-https-proto`.

pub(crate) mod access_log;
pub(crate) mod admin;
pub mod allocs;
pub mod cli;
pub(crate) mod config;
pub(crate) mod daemon;
pub(crate) mod edge;
pub(crate) mod fleet;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod keepalive;
pub(crate) mod metrics;
pub(crate) mod net;
pub(crate) mod paths;
pub(crate) mod policy;
pub(crate) mod proxy;
pub(crate) mod reload;
pub(crate) mod secret;
