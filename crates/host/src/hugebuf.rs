//! Model memory for the host: a zeroed byte buffer aligned to 2 MiB and, on
//! Linux, advised to use transparent huge pages (`MADV_HUGEPAGE`), so that
//! decoding, which streams every weight once per token, walks 2 MiB pages
//! instead of 4 KiB ones (fewer TLB misses: reads measured about 18% faster
//! here, see docs/PERFORMANCE.md). Where the advice is refused, it is an
//! ordinary buffer.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

/// Alignment and advice granularity: one huge page.
const HUGE: usize = 2 << 20;

#[cfg(target_os = "linux")]
extern "C" {
    fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: i32) -> i32;
}
#[cfg(target_os = "linux")]
const MADV_HUGEPAGE: i32 = 14;

/// An owned, zero-initialised byte buffer on huge-page-aligned memory.
pub struct HugeBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: HugeBuf owns its allocation exclusively (like Vec<u8>); shared
// references only read it and `&mut` access is unique.
unsafe impl Send for HugeBuf {}
// SAFETY: as above: `&HugeBuf` gives only read access.
unsafe impl Sync for HugeBuf {}

impl HugeBuf {
    /// `len` zero bytes, or None if the memory cannot be allocated.
    pub fn zeroed(len: usize) -> Option<HugeBuf> {
        let size = len.max(1).checked_next_multiple_of(HUGE)?;
        let layout = Layout::from_size_align(size, HUGE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc(layout) })?;
        // The advice must come before the first write: pages touched before it
        // (as `alloc_zeroed`'s memset would) stay 4 KiB pages.
        #[cfg(target_os = "linux")]
        // SAFETY: [ptr, ptr + size) is our allocation, aligned to the page size; madvise only
        // changes how the kernel backs it. A failure (THP off) leaves ordinary pages.
        unsafe {
            madvise(ptr.as_ptr().cast(), size, MADV_HUGEPAGE);
        }
        // SAFETY: `size` writable bytes at ptr; zeroing initialises all of them.
        unsafe { ptr.as_ptr().write_bytes(0, size) };
        Some(HugeBuf { ptr, len, layout })
    }
}

impl AsRef<[u8]> for HugeBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len <= layout.size()` initialised (zeroed) bytes that we own.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsMut<[u8]> for HugeBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

// SAFETY: the allocation is fixed for the buffer's life (moving a HugeBuf
// moves only the pointer), `len` never changes, and `&self` only reads.
unsafe impl kernels::store::StableBytes for HugeBuf {
    fn bytes(&self) -> &[u8] {
        self.as_ref()
    }
}

impl Drop for HugeBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl core::fmt::Debug for HugeBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HugeBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::HugeBuf;

    #[test]
    fn buffers_are_zeroed_aligned_writable_and_sized() {
        for len in [0usize, 1, 4095, 3 << 20] {
            let mut b = HugeBuf::zeroed(len).unwrap();
            assert_eq!(b.as_ref().len(), len);
            assert!(b.as_ref().iter().all(|&v| v == 0));
            assert_eq!(b.as_ref().as_ptr() as usize % (2 << 20), 0);
            b.as_mut().iter_mut().enumerate().for_each(|(i, v)| *v = i as u8);
            assert!(b.as_ref().iter().enumerate().all(|(i, &v)| v == i as u8));
        }
        assert!(HugeBuf::zeroed(usize::MAX - 10).is_none());
    }
}
