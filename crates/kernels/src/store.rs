//! A model's weight bytes, owned, and kernel views into them resolved once.
//!
//! The engine reads a model file into memory, repacks some matrices in
//! place, and then hands the bytes to a [`Store`]. From then on they never
//! change: the store gives out only shared access. Each weight matrix is
//! resolved to a [`View`] once, at load (its range checked against the
//! bytes, its alignment and block count checked for its type), and every
//! matmul after that takes its [`Weights`] from the view with one identity
//! check and no slicing, as llama.cpp's tensors keep a data pointer into
//! the model buffer.

use alloc::boxed::Box;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::ops::Weights;
use crate::types::WType;

/// Bytes that stay at one address, with one length, for as long as their
/// owner lives, however the owner is moved: a heap buffer, an `mmap`, the
/// firmware's pages.
///
/// # Safety
/// `bytes` must return the same region (address and length) on every call,
/// valid for reads for as long as the value exists, and nothing may write
/// to it through `&self`.
pub unsafe trait StableBytes: Send + Sync {
    fn bytes(&self) -> &[u8];
}

// SAFETY: a Vec's heap buffer does not move when the Vec does, and without
// `&mut` access its length and buffer cannot change.
unsafe impl StableBytes for alloc::vec::Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: as for `Vec<u8>`: a boxed slice is a fixed heap buffer.
unsafe impl StableBytes for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Model weights, immutable once stored.
pub struct Store {
    bytes: Box<dyn StableBytes>,
    /// Unique among the stores of this process: a [`View`] records it, so
    /// a view is only ever read through the store it was resolved in.
    id: u64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Store {
    /// Takes ownership of the bytes; they are read-only from now on.
    pub fn new(bytes: Box<dyn StableBytes>) -> Self {
        Store { bytes, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) }
    }

    /// All the bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.bytes()
    }

    /// Resolves `range` of the bytes as weights of type `ty` (or its row
    /// octets), or `None` if the range is outside the bytes, not aligned for
    /// the block type, not whole blocks, or `ty` has no octet layout.
    pub fn view(&self, ty: WType, range: Range<usize>, octets: bool) -> Option<View> {
        let bytes: &[u8] = self.bytes.bytes().get(range)?;
        // SAFETY: `bytes` lies in the store's region, which `StableBytes`
        // guarantees stays at this address, readable and unwritten for as
        // long as `self.bytes` lives. The `'static` slices are private to the
        // `View` and only handed out by `Store::get` with the lifetime of a
        // borrow of the store whose id the view records; ids are never
        // reused, so a view of a dropped store can never be read.
        let bytes: &'static [u8] = unsafe { &*core::ptr::from_ref::<[u8]>(bytes) };
        let w = Weights::from_bytes(ty, bytes, octets)?;
        Some(View { store: self.id, w })
    }

    /// The weights a view resolved in this store holds; `None` for a view
    /// of another store.
    #[inline]
    pub fn get(&self, v: &View) -> Option<Weights<'_>> {
        (v.store == self.id).then_some(v.w)
    }
}

/// A weight matrix resolved in a [`Store`]: read it with [`Store::get`].
#[derive(Clone, Copy)]
pub struct View {
    store: u64,
    w: Weights<'static>,
}

impl View {
    /// The storage type.
    pub fn ty(&self) -> WType {
        self.w.ty()
    }

    /// Bytes the view covers.
    pub fn byte_len(&self) -> usize {
        self.w.byte_len()
    }

    /// Whether the view is of row octets.
    pub fn is_octets(&self) -> bool {
        self.w.is_octets()
    }
}

impl core::fmt::Debug for View {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "View({} {} bytes, store {})", self.w.type_name(), self.byte_len(), self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn views_check_once_and_belong_to_their_store() {
        let mut v = vec![0u8; 64];
        for (i, b) in v.iter_mut().enumerate() {
            *b = i as u8;
        }
        let s = Store::new(Box::new(v.clone()));
        let other = Store::new(Box::new(v));
        let off = s.bytes().as_ptr().align_offset(4);
        let w = s.view(WType::F32, off..off + 16, false).unwrap();
        assert_eq!(w.byte_len(), 16);
        match s.get(&w) {
            Some(Weights::F32(x)) => assert_eq!(x.len(), 4),
            other => panic!("{other:?}"),
        }
        assert!(other.get(&w).is_none(), "a view is read only through its own store");
        assert!(s.view(WType::F32, off + 1..off + 17, false).is_none(), "misaligned");
        assert!(s.view(WType::F32, off..off + 15, false).is_none(), "not whole values");
        assert!(s.view(WType::F32, 60..68, false).is_none(), "outside the bytes");
        assert!(s.view(WType::F32, off..off + 16, true).is_none(), "F32 has no octets");
    }
}
