//! Memory: the global allocator, page allocations for model files, and a
//! summary of the firmware memory map.
//!
//! - Small allocations come from the firmware pool; allocations of
//!   [`LARGE`] bytes or more come straight from `allocate_pages`, which is
//!   instant where the pool writes every page (seconds per GiB).
//! - Only the bootstrap processor may call boot services. Code running on an
//!   application processor (inside a parallel-for) allocates from a small
//!   lock-free arena instead, and frees of firmware memory made there are
//!   queued and done by the bootstrap processor later.

use alloc::string::String;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;

use crate::cpu;

pub const PAGE: usize = 4096;
/// Allocations at least this large get their own pages.
pub const LARGE: usize = 256 * 1024;
/// Smallest firmware block: room for a deferred-free node.
const MIN_BLOCK: usize = 32;

/// Bytes currently allocated through the global allocator and [`Pages`].
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes in use by the app (heap + page allocations).
pub fn live_bytes() -> u64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Rounds `v` up to a multiple of `align` (a power of two); `None` on overflow.
fn round_up(v: usize, align: usize) -> Option<usize> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// How a firmware block of a given layout is obtained and released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// `allocate_pool(size)`; the pointer is the pool pointer.
    Pool { size: usize },
    /// `allocate_pool(size)`; the pointer is aligned inside it and the pool
    /// pointer is stored just below it.
    PoolAligned { size: usize },
    /// `allocate_pages(pages)`; the pointer is the page address.
    Pages { pages: usize },
    /// `allocate_pages(pages)`, pointer aligned inside, base stored below it.
    PagesAligned { pages: usize },
}

/// The plan for a layout, or `None` if the size overflows.
fn plan(layout: Layout) -> Option<Plan> {
    let size = layout.size().max(MIN_BLOCK);
    let align = layout.align();
    if size >= LARGE {
        if align <= PAGE {
            Some(Plan::Pages { pages: size.div_ceil(PAGE) })
        } else {
            let total = size.checked_add(align)?.checked_add(8)?;
            Some(Plan::PagesAligned { pages: total.div_ceil(PAGE) })
        }
    } else if align <= 8 {
        Some(Plan::Pool { size })
    } else {
        Some(Plan::PoolAligned { size: size.checked_add(align)? })
    }
}

/// Allocates a firmware block (bootstrap processor only).
fn fw_alloc(layout: Layout) -> *mut u8 {
    let Some(p) = plan(layout) else { return ptr::null_mut() };
    let align = layout.align();
    match p {
        Plan::Pool { size } => match boot::allocate_pool(MemoryType::LOADER_DATA, size) {
            Ok(b) => b.as_ptr(),
            Err(_) => ptr::null_mut(),
        },
        Plan::PoolAligned { size } => match boot::allocate_pool(MemoryType::LOADER_DATA, size) {
            Ok(b) => place_aligned(b.as_ptr(), align),
            Err(_) => ptr::null_mut(),
        },
        Plan::Pages { pages } => match boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages) {
            Ok(b) => b.as_ptr(),
            Err(_) => ptr::null_mut(),
        },
        Plan::PagesAligned { pages } => {
            match boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages) {
                Ok(b) => place_aligned(b.as_ptr(), align),
                Err(_) => ptr::null_mut(),
            }
        }
    }
}

/// Picks the first `align`-aligned address at least 8 bytes into `base` and
/// stores `base` just below it. The block was sized with `align` (+8) spare
/// bytes, so the aligned pointer and the stored word lie inside it.
fn place_aligned(base: *mut u8, align: usize) -> *mut u8 {
    let addr = base as usize;
    let Some(aligned) = round_up(addr + 8, align) else { return ptr::null_mut() };
    let offset = aligned - addr;
    // SAFETY: `offset <= align + 7` is within the spare room the plan added,
    // so the result stays inside the allocation.
    let p = unsafe { base.add(offset) };
    // SAFETY: `p - 8` lies inside the block (offset >= 8) and is 8-aligned
    // because `p` is aligned to at least 16.
    unsafe { p.cast::<usize>().sub(1).write(addr) };
    p
}

/// The base address stored below an aligned pointer by [`place_aligned`].
///
/// # Safety
/// `p` must come from [`place_aligned`].
unsafe fn stored_base(p: *mut u8) -> *mut u8 {
    // SAFETY: per the contract, the word below `p` holds the base address.
    unsafe { p.cast::<usize>().sub(1).read() as *mut u8 }
}

/// What to hand back to the firmware for a block.
#[derive(Debug, Clone, Copy)]
struct Release {
    base: *mut u8,
    /// 0 for a pool block.
    pages: usize,
}

/// # Safety
/// `p` must be a live block from [`fw_alloc`] with this `layout`.
unsafe fn release_of(p: *mut u8, layout: Layout) -> Option<Release> {
    Some(match plan(layout)? {
        Plan::Pool { .. } => Release { base: p, pages: 0 },
        // SAFETY: aligned plans store the base below the pointer.
        Plan::PoolAligned { .. } => Release { base: unsafe { stored_base(p) }, pages: 0 },
        Plan::Pages { pages } => Release { base: p, pages },
        // SAFETY: as above.
        Plan::PagesAligned { pages } => Release { base: unsafe { stored_base(p) }, pages },
    })
}

/// Gives a block back to the firmware (bootstrap processor only).
///
/// # Safety
/// `r` must describe a live firmware block that nothing uses any more.
unsafe fn fw_release(r: Release) {
    let Some(base) = NonNull::new(r.base) else { return };
    // Errors cannot be reported from a deallocation; the firmware keeps the
    // memory in that case.
    if r.pages == 0 {
        // SAFETY: per the contract, a live pool block.
        let _ = unsafe { boot::free_pool(base) };
    } else {
        // SAFETY: per the contract, a live page block of `pages` pages.
        let _ = unsafe { boot::free_pages(base, r.pages) };
    }
}

// ---------------------------------------------------------------------------
// Frees made on application processors, done later by the bootstrap processor.

#[repr(C)]
struct DeferredNode {
    next: *mut DeferredNode,
    base: *mut u8,
    pages: usize,
}

static DEFERRED: AtomicPtr<DeferredNode> = AtomicPtr::new(ptr::null_mut());

/// Queues a firmware block for release.
///
/// # Safety
/// `at` must be the user pointer of a live firmware block of at least
/// [`MIN_BLOCK`] bytes, 8-aligned, that nothing uses any more; `r` its release.
unsafe fn defer(at: *mut u8, r: Release) {
    let node = at.cast::<DeferredNode>();
    let mut head = DEFERRED.load(Ordering::Relaxed);
    loop {
        // SAFETY: the block is ours, at least MIN_BLOCK (32) bytes and
        // 8-aligned, enough for a 24-byte node.
        unsafe { node.write(DeferredNode { next: head, base: r.base, pages: r.pages }) };
        match DEFERRED.compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// Releases every queued block (bootstrap processor only).
fn drain_deferred() {
    let mut node = DEFERRED.swap(ptr::null_mut(), Ordering::Acquire);
    while !node.is_null() {
        // SAFETY: nodes were written by `defer` into blocks nobody uses, and
        // the swap above made this list ours alone.
        let n = unsafe { node.read() };
        // SAFETY: the node describes a firmware block freed by its owner.
        unsafe { fw_release(Release { base: n.base, pages: n.pages }) };
        node = n.next;
    }
}

// ---------------------------------------------------------------------------
// The arena for allocations made on application processors.

/// Arena state: high 32 bits = live blocks, low 32 bits = bump offset. One
/// word, so a reset when the last block goes cannot race an allocation.
static AP_STATE: AtomicU64 = AtomicU64::new(0);
static AP_BASE: AtomicUsize = AtomicUsize::new(0);
static AP_LEN: AtomicUsize = AtomicUsize::new(0);

/// Size of the arena for allocations on application processors.
pub const AP_ARENA: usize = 8 << 20;

/// Sets up the arena (bootstrap processor, before the cores start). Memory
/// stays allocated for the life of the app.
pub fn init_ap_arena() -> Result<(), String> {
    if AP_BASE.load(Ordering::Acquire) != 0 {
        return Ok(());
    }
    let pages = AP_ARENA / PAGE;
    let base = boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages)
        .map_err(|e| alloc::format!("cannot allocate the worker-core arena: {:?}", e.status()))?;
    AP_LEN.store(AP_ARENA, Ordering::Release);
    AP_BASE.store(base.as_ptr() as usize, Ordering::Release);
    Ok(())
}

fn ap_contains(p: *mut u8) -> bool {
    let base = AP_BASE.load(Ordering::Acquire);
    let a = p as usize;
    base != 0 && a >= base && a < base + AP_LEN.load(Ordering::Acquire)
}

fn ap_alloc(layout: Layout) -> *mut u8 {
    let base = AP_BASE.load(Ordering::Acquire);
    let len = AP_LEN.load(Ordering::Acquire);
    if base == 0 {
        return ptr::null_mut();
    }
    let size = layout.size().max(1);
    let mut state = AP_STATE.load(Ordering::Relaxed);
    loop {
        let live = state >> 32;
        let off = (state & 0xFFFF_FFFF) as usize;
        let Some(start) = round_up(base + off, layout.align()) else { return ptr::null_mut() };
        let Some(end) = start.checked_add(size) else { return ptr::null_mut() };
        if end > base + len {
            return ptr::null_mut();
        }
        let new = ((live + 1) << 32) | (end - base) as u64;
        match AP_STATE.compare_exchange_weak(state, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return start as *mut u8,
            Err(s) => state = s,
        }
    }
}

fn ap_dealloc() {
    let mut state = AP_STATE.load(Ordering::Relaxed);
    loop {
        let live = (state >> 32).saturating_sub(1);
        let new = if live == 0 { 0 } else { (live << 32) | (state & 0xFFFF_FFFF) };
        match AP_STATE.compare_exchange_weak(state, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(s) => state = s,
        }
    }
}

// ---------------------------------------------------------------------------

/// The app's global allocator.
pub struct AppAllocator;

// SAFETY: `alloc` returns blocks of at least `layout.size()` bytes aligned to
// `layout.align()` (pool blocks are 8-aligned; larger alignments are placed
// inside an over-sized block; pages are 4 KiB aligned), or null on failure.
// `dealloc` recomputes the same plan from the same layout, so each block goes
// back to where it came from. Boot services are only called on the bootstrap
// processor.
unsafe impl GlobalAlloc for AppAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !cpu::on_bsp() {
            return ap_alloc(layout);
        }
        drain_deferred();
        let p = fw_alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if ap_contains(p) {
            ap_dealloc();
            return;
        }
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: `p` is a live block from `fw_alloc` with `layout` (the
        // GlobalAlloc contract), as it is not in the arena.
        let Some(r) = (unsafe { release_of(p, layout) }) else { return };
        if cpu::on_bsp() {
            drain_deferred();
            // SAFETY: the caller gives the block up.
            unsafe { fw_release(r) };
        } else {
            // SAFETY: firmware blocks are at least MIN_BLOCK bytes and
            // 8-aligned; the caller gives the block up.
            unsafe { defer(p, r) };
        }
    }
}

// ---------------------------------------------------------------------------

/// Memory from `allocate_pages(LOADER_DATA)`, freed on drop.
///
/// Its bytes start out as whatever the RAM held: the firmware hands out
/// physical memory that never went through a Rust allocator, so it holds
/// arbitrary but definite values, and is used as plain bytes (a file read
/// then overwrites them all). Not zeroing saves a full pass over the memory,
/// which under emulation costs more than the read itself.
pub struct Pages {
    ptr: NonNull<u8>,
    pages: usize,
    len: usize,
}

// SAFETY: `Pages` owns its memory exclusively; `&Pages` only gives out
// `&[u8]`, mutation needs `&mut Pages`.
unsafe impl Send for Pages {}
// SAFETY: as above.
unsafe impl Sync for Pages {}

impl Pages {
    /// Allocates `len` bytes of pages.
    pub fn alloc(len: usize) -> Result<Self, String> {
        if len == 0 {
            return Ok(Pages { ptr: NonNull::dangling(), pages: 0, len: 0 });
        }
        let pages = len.div_ceil(PAGE);
        let ptr = boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages).map_err(|e| {
            alloc::format!("cannot allocate {} of memory: {:?}", repl::format_size(len as u64), e.status())
        })?;
        LIVE_BYTES.fetch_add((pages * PAGE) as u64, Ordering::Relaxed);
        Ok(Pages { ptr, pages, len })
    }

    /// Writes one byte in every page of `start..end` (capped at the length):
    /// reads into pages nobody has touched yet are much slower (the host
    /// maps guest memory lazily).
    pub fn touch(&mut self, start: usize, end: usize) {
        let end = end.min(self.len);
        let mut at = start - start % PAGE;
        while at < end {
            // SAFETY: `at < end <= len`, inside our allocation.
            unsafe { self.ptr.as_ptr().add(at).write_volatile(0) };
            at += PAGE;
        }
    }

    /// All `len` bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes of firmware pages that we own exclusively
        // (`&mut self`); see the type's documentation on their contents.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsMut<[u8]> for Pages {
    fn as_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for Pages {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` bytes of firmware pages that we own; shared access
        // only reads.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

// SAFETY: the page block is fixed for the value's life (moving `Pages`
// moves only the pointer), `len` never changes, and `&self` only reads.
unsafe impl kernels::store::StableBytes for Pages {
    fn bytes(&self) -> &[u8] {
        self.as_ref()
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if self.pages == 0 {
            return;
        }
        LIVE_BYTES.fetch_sub((self.pages * PAGE) as u64, Ordering::Relaxed);
        let r = Release { base: self.ptr.as_ptr(), pages: self.pages };
        if cpu::on_bsp() {
            // SAFETY: our own page block, dropped, so no longer used.
            unsafe { fw_release(r) };
        } else {
            // SAFETY: a page block (4 KiB, far above MIN_BLOCK, page-aligned)
            // that is no longer used.
            unsafe { defer(self.ptr.as_ptr(), r) };
        }
    }
}

// ---------------------------------------------------------------------------

/// Free memory according to the firmware memory map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemSummary {
    /// All conventional (free) memory in bytes.
    pub free: u64,
    /// The largest run of contiguous free memory in bytes.
    pub largest_free: u64,
}

/// Sums free runs given as (start, pages) pairs, merging adjacent ones.
pub fn summarize(mut runs: alloc::vec::Vec<(u64, u64)>) -> MemSummary {
    runs.sort_unstable();
    let mut s = MemSummary::default();
    let mut cur: Option<(u64, u64)> = None; // (start, end)
    for (start, pages) in runs {
        let bytes = pages.saturating_mul(PAGE as u64);
        let end = start.saturating_add(bytes);
        s.free = s.free.saturating_add(bytes);
        cur = match cur {
            Some((cs, ce)) if start == ce => Some((cs, end)),
            Some((cs, ce)) => {
                s.largest_free = s.largest_free.max(ce - cs);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((cs, ce)) = cur {
        s.largest_free = s.largest_free.max(ce - cs);
    }
    s
}

/// Reads the memory map and summarizes the free memory.
pub fn mem_summary() -> Result<MemSummary, String> {
    let map = boot::memory_map(MemoryType::LOADER_DATA)
        .map_err(|e| alloc::format!("cannot read the memory map: {:?}", e.status()))?;
    let runs =
        map.entries().filter(|d| d.ty == MemoryType::CONVENTIONAL).map(|d| (d.phys_start, d.page_count)).collect();
    Ok(summarize(runs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn plans() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(plan(l(1, 1)), Some(Plan::Pool { size: MIN_BLOCK }));
        assert_eq!(plan(l(100, 8)), Some(Plan::Pool { size: 100 }));
        assert_eq!(plan(l(100, 64)), Some(Plan::PoolAligned { size: 164 }));
        assert_eq!(plan(l(LARGE, 4)), Some(Plan::Pages { pages: LARGE / PAGE }));
        assert_eq!(plan(l(LARGE + 1, 4096)), Some(Plan::Pages { pages: LARGE / PAGE + 1 }));
        assert_eq!(plan(l(LARGE, 8192)), Some(Plan::PagesAligned { pages: (LARGE + 8192 + 8).div_ceil(PAGE) }));
    }

    #[test]
    fn aligned_placement_stays_inside() {
        for align in [16usize, 32, 64, 4096] {
            let mut buf = vec![0u64; (align * 3) / 8];
            let base = buf.as_mut_ptr().cast::<u8>();
            let p = place_aligned(base, align);
            assert_eq!(p as usize % align, 0);
            assert!(p as usize >= base as usize + 8);
            assert!(p as usize <= base as usize + align + 8);
            // SAFETY: `p` came from place_aligned.
            assert_eq!(unsafe { stored_base(p) }, base);
        }
    }

    #[test]
    fn summary_merges_adjacent_runs() {
        let s = summarize(vec![(0x10_0000, 16), (0x1000, 1), (0x11_0000, 16), (0x2000, 2)]);
        assert_eq!(s.free, (16 + 1 + 16 + 2) * 4096);
        assert_eq!(s.largest_free, 32 * 4096);
        assert_eq!(summarize(vec![]), MemSummary::default());
    }
}
