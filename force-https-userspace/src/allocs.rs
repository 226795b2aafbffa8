//! Allocation counting for the fast path: a global allocator that forwards to the system
//! allocator and counts the allocations made by threads that opted in (the AF_XDP
//! responders, [`count_this_thread`]).
//!
//! The binary installs it only when built with the `count-allocs` feature (the benchmark
//! build: `force-https stats` then shows `afxdp_allocations`); the unit tests install it to
//! prove that answering a frame allocates nothing.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// The counting allocator.
pub struct Counting;

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    static THIS_THREAD: Cell<u64> = const { Cell::new(0) };
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Counts (or stops counting) the allocations of the calling thread.
pub fn count_this_thread(on: bool) {
    COUNTED.with(|c| c.set(on));
}

/// Allocations (and reallocations) made by counted threads so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Relaxed)
}

/// Allocations (and reallocations) the calling thread made while counted: a measurement that
/// other counted threads (tests running in parallel) do not disturb.
pub fn this_thread_allocations() -> u64 {
    THIS_THREAD.try_with(Cell::get).unwrap_or(0)
}

/// Whether the binary was built with the counting allocator.
pub const INSTALLED: bool = cfg!(feature = "count-allocs");

fn note() {
    // `try_with`: the thread-local may already be gone while a thread exits.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Relaxed);
        let _ = THIS_THREAD.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
