//! The force-https XDP program.
//!
//! For TCP to the listen ports named in `FH_PORTS` it answers a SYN itself with a syncookie
//! SYN-ACK, and decides, completely, whether a connection's first request can be answered by
//! the AF_XDP responder (redirected to the socket of its RX queue in `FH_XSKS`) or goes to the
//! kernel (`XDP_PASS`); it drops what the kernel must not see (bare ACKs and bad cookies
//! without a socket), and counts every decision in `FH_STATS`. Maps are the whole contract with userspace: their names and layouts live in
//! `force-https-common`.
//!
//! One module per step, called in order by the entry point in `prog.rs`: `parse`
//! (dissection), `syn` (the SYN-ACK with a syncookie), `lookup` (socket, flow and host
//! lookups), `head` (the request head), `eligibility` (cookie and the fast-path decision),
//! `answer` (FIN ACK, AF_XDP redirect); `maps` and `scratch` hold the state they share.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
#[macro_use]
mod scratch;

#[cfg(target_arch = "bpf")]
mod answer;
#[cfg(target_arch = "bpf")]
mod eligibility;
#[cfg(target_arch = "bpf")]
mod head;
#[cfg(target_arch = "bpf")]
mod lookup;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod prog;
#[cfg(target_arch = "bpf")]
mod syn;

/// On the host this crate is only a stub, so `cargo build --workspace` works on stable.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
