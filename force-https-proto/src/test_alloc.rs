//! The unit tests' global allocator: forwards every call to the system allocator and keeps,
//! per thread, the number of allocations and the bytes live and their peak. Per thread, so
//! that tests running in parallel do not disturb each other's figures: the response builder's
//! "allocates nothing" and the codecs' memory estimates are proven with it.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// `size` more (or, negative, fewer) bytes live on this thread. `try_with`: the thread-locals
/// may already be gone while a thread exits.
fn note(size: isize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + size);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        note(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        note(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) this thread made so far.
pub fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Bytes this thread allocated and has not freed (memory freed by another thread than the one
/// that allocated it counts on the freeing thread).
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

/// The most bytes live on this thread since the last [`reset_peak`].
pub fn peak_bytes() -> isize {
    PEAK.with(Cell::get)
}

/// Starts a new peak at the bytes live now, and returns them.
pub fn reset_peak() -> isize {
    let live = live_bytes();
    PEAK.with(|p| p.set(live));
    live
}
