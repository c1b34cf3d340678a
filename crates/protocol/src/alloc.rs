//! A global allocator that keeps hostile array lengths from aborting the process.
//!
//! `kafka-protocol` 0.18 decodes an array by calling `Vec::with_capacity(n)` with
//! the element count read off the wire, before it decodes a single element. A
//! 12-byte request that claims two billion topics asks for hundreds of GiB; the
//! system allocator refuses, and Rust answers a refused allocation by aborting,
//! which no `catch_unwind` can stop. (Upstream has open pull requests that bound
//! the capacity by the bytes left in the buffer; none is released yet.)
//!
//! Runnel's binaries install [`GuardedAllocator`]: any allocation of 1 GiB or
//! more is served by an anonymous `mmap` with `MAP_NORESERVE`, which only reserves
//! address space. Pages cost memory when touched, so a bogus capacity costs
//! nothing: the decoder runs out of bytes after a few elements, returns an error,
//! and the mapping is unmapped. A genuine large allocation behaves as it would
//! under Linux's default overcommit. Everything smaller goes to the system
//! allocator unchanged, so the hot paths are untouched.
//!
//! [`trim_periodically`] makes glibc's allocator give back what a burst of
//! load freed, which it otherwise keeps for good; see there.
//!
//! This is the only unsafe code in Runnel; it is needed because the allocator
//! interface is unsafe by definition and because mmap and malloc_trim are
//! foreign calls.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Gives memory that glibc's allocator holds free back to the system every
/// `every`, from a thread of its own: `malloc_trim(0)` returns the free
/// pages of every arena (not only the top of each heap, which is all glibc
/// returns by itself). Without it a node that served one burst of load kept
/// what the burst freed for good (35 to 126 MB after a 1 GB
/// produce-and-consume run, from one run to the next: it depends on which
/// threads allocated where); limiting arenas or fixing the trim threshold
/// did the same but cost a quarter of produce throughput (blocks of 128 KiB
/// or more, such as request buffers, then get mapped and unmapped each
/// time). A trim walks the arenas under their locks: a few milliseconds,
/// every few seconds. No-op on other C libraries.
pub fn trim_periodically(every: std::time::Duration) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("malloc-trim".into()).spawn(move || {
            loop {
                std::thread::sleep(every);
                // SAFETY: malloc_trim only releases free memory the allocator
                // holds; it takes the arenas' own locks.
                unsafe { libc::malloc_trim(0) };
            }
        });
        if let Err(e) = spawned {
            eprintln!("runnel: could not start the memory trimming thread: {e}");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = every;
}

/// Allocations at or above this size only reserve address space.
pub const RESERVE_ONLY_BYTES: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

/// See the module documentation.
pub struct GuardedAllocator;

fn is_reserve_only(size: usize, align: usize) -> bool {
    size >= RESERVE_ONLY_BYTES && align <= PAGE_BYTES
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint touches no
    // existing memory; failure is reported as MAP_FAILED and turned into null,
    // which GlobalAlloc's contract allows.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
    };
    if ptr == libc::MAP_FAILED { std::ptr::null_mut() } else { ptr.cast() }
}

// SAFETY: every pointer handed out is either the system allocator's (and goes
// back to it) or a fresh page-aligned mapping of at least `size` bytes (and is
// unmapped with the same size); the choice depends only on the layout, which
// the caller must pass unchanged to dealloc and realloc.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_reserve_only(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_reserve_only(layout.size(), layout.align()) {
            map(layout.size()) // anonymous mappings are zero-filled
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_reserve_only(layout.size(), layout.align()) {
            // SAFETY: ptr came from `map(layout.size())` above.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: ptr came from the system allocator with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if !is_reserve_only(layout.size(), align) && !is_reserve_only(new_size, align) {
            // SAFETY: both sides belong to the system allocator.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: new_size is non-zero and, with the old alignment, a valid
        // layout: GlobalAlloc::realloc's contract guarantees both.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
        // SAFETY: a fresh allocation through this allocator.
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both regions are valid for the smaller size and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}
