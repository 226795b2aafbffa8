//! Library stub so `force-https-userspace` can name this crate as a build dependency
//! (cargo then reruns its build script when the eBPF program's dependencies change).
#![no_std]
