//! The force-https XDP program.
//!
//! Today it watches TCP to the listen ports named in `FH_PORTS` and counts what it sees in
//! `FH_STATS`; every packet goes on to the kernel (`XDP_PASS`). Maps are the whole contract
//! with userspace: their names and layouts live in `force-https-common`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog;

/// On the host this crate is only a stub, so `cargo build --workspace` works on stable.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
