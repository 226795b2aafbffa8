//! The force-https XDP program.
//!
//! For TCP to the listen ports named in `FH_PORTS` it decides, completely, whether a
//! connection's first request can be answered by the AF_XDP responder (redirected to the
//! socket of its RX queue in `FH_XSKS`) or goes to the kernel (`XDP_PASS`), drops what the
//! kernel must not see (bare ACKs and bad cookies without a socket), and counts every decision
//! in `FH_STATS`. The decision tree is in `prog.rs`. Maps are the whole contract with userspace:
//! their names and layouts live in `force-https-common`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog;

/// On the host this crate is only a stub, so `cargo build --workspace` works on stable.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
