//! Row P7: how much heap the mirror takes for a long session, against the
//! total size of its entries' JSON text.
//!
//! # Method
//!
//! The heap is read before and after a fresh [`SessionLogSink`] is filled
//! with `len` corpus entries through `publish`, as a live pod fills it; the
//! difference is what the mirror holds: every `Arc`'d entry with its
//! strings, lists and JSON values, and the persistent vector's nodes. Each
//! entry's JSON text is rendered on the way in, measured and dropped, so it
//! is not part of the difference. The generator's own state (one scripted
//! run, a few KiB) is the only other memory alive at the second reading.
//!
//! Two gauges read the heap, both in-process and without a replacement
//! allocator library:
//!
//! * [`CountingAlloc`], a global allocator that wraps the system one and
//!   counts the bytes of live allocations as requested. A binary installs it
//!   with `#[global_allocator]` (the `memory` bench does); it counts nothing
//!   anywhere else.
//! * [`Mallinfo`], glibc's `mallinfo2()`: bytes in chunks in use, across
//!   every arena, including the allocator's per-chunk overhead. Available in
//!   any binary on glibc; the `podlog-bench` program uses it.
//!
//! The process must not allocate on other threads during the measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use podlog_entry::{Committed, Seq};
use podlog_sink::SessionLogSink;

use crate::corpus::Corpus;
use crate::error::{self, Result};
use crate::mirror::session_start;

/// Reads how many heap bytes the process holds.
pub trait HeapGauge: Sync {
    /// Live heap bytes now, or `None` when this gauge cannot see the heap
    /// (not installed, or not on this platform).
    fn live_bytes(&self) -> Option<u64>;

    /// How the gauge reads the heap, for the report.
    fn method(&self) -> &'static str;
}

/// A global allocator that counts live bytes, delegating to [`System`].
///
/// Install it in a binary with
/// `#[global_allocator] static ALLOC: CountingAlloc = CountingAlloc::new();`.
#[derive(Debug, Default)]
pub struct CountingAlloc {
    live: AtomicU64,
    calls: AtomicU64,
}

impl CountingAlloc {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self {
            live: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    fn grew(&self, bytes: usize) {
        self.live.fetch_add(bytes as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn shrank(&self, bytes: usize) {
        self.live.fetch_sub(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only updates counters besides, so `System`'s guarantees hold.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from `System`, with
        // this layout.
        unsafe { System.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.shrank(layout.size());
            self.grew(new_size);
        }
        p
    }
}

impl HeapGauge for CountingAlloc {
    fn live_bytes(&self) -> Option<u64> {
        // A process that never allocated through it has not installed it.
        (self.calls.load(Ordering::Relaxed) > 0).then(|| self.live.load(Ordering::Relaxed))
    }

    fn method(&self) -> &'static str {
        "counting global allocator (bytes requested)"
    }
}

/// glibc's `mallinfo2()`: bytes in use in every arena plus mmapped chunks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo;

impl HeapGauge for Mallinfo {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn live_bytes(&self) -> Option<u64> {
        // SAFETY: `mallinfo2` takes no argument, only reads the allocator's
        // statistics under its own locks, and returns a plain struct.
        let info = unsafe { libc::mallinfo2() };
        Some(info.uordblks as u64 + info.hblkhd as u64)
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn live_bytes(&self) -> Option<u64> {
        None
    }

    fn method(&self) -> &'static str {
        "glibc mallinfo2 (bytes in chunks in use)"
    }
}

/// What the mirror of a long session costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MirrorMemory {
    /// Entries in the mirror.
    pub entries: usize,
    /// Their JSON text, in bytes.
    pub json_bytes: u64,
    /// The heap the mirror holds, in bytes.
    pub heap_bytes: u64,
}

impl MirrorMemory {
    /// Heap bytes per byte of JSON text.
    pub fn ratio(&self) -> f64 {
        self.heap_bytes as f64 / self.json_bytes as f64
    }
}

/// Fills a fresh sink with a `len`-entry session (a `SessionStart`, then
/// the corpus) and reads the heap it holds with `gauge`. `None` when the
/// gauge cannot see the heap.
pub fn measure_mirror(len: usize, gauge: &dyn HeapGauge) -> Result<Option<MirrorMemory>> {
    let mut corpus = Corpus::new(7);
    let mut json_bytes = 0u64;
    let Some(before) = gauge.live_bytes() else {
        return Ok(None);
    };
    let sink = SessionLogSink::new();
    if len > 0 {
        let start = session_start();
        json_bytes += start.to_json().len() as u64;
        sink.publish(Committed::new(Seq::FIRST, start))
            .map_err(error::sink("P7"))?;
    }
    for seq in 2..=len as u64 {
        let Some(entry) = corpus.next() else { break };
        json_bytes += entry.to_json().len() as u64;
        sink.publish(Committed::new(Seq(seq), entry))
            .map_err(error::sink("P7"))?;
    }
    let Some(after) = gauge.live_bytes() else {
        return Ok(None);
    };
    let entries = sink.len();
    drop(sink);
    Ok(Some(MirrorMemory {
        entries,
        json_bytes,
        heap_bytes: after.saturating_sub(before),
    }))
}
