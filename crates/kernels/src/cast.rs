//! Viewing raw file bytes as typed slices, with alignment and length checks.

use crate::quant::{
    BlockQ4Kx8, BlockQ6Kx8, BlockQ4_0x8, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
    BlockQ8_1, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K,
};

/// Views `b` as `T`s if it is aligned and its length is a whole number of `T`.
pub fn view<T: Pod>(b: &[u8]) -> Option<&[T]> {
    let size = core::mem::size_of::<T>();
    if !b.len().is_multiple_of(size) || !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()) {
        return None;
    }
    // SAFETY: alignment and length checked above; `T: Pod` means every bit
    // pattern is a valid T and T has no padding, so reading initialised bytes
    // as T is sound; the lifetime is tied to `b`.
    Some(unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<T>(), b.len() / size) })
}

/// The bytes of a slice of `T`s (for writing files).
pub fn bytes_of<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so every byte is initialised; u8 has
    // align 1 and the length is the slice's size in bytes.
    unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), core::mem::size_of_val(v)) }
}

/// A `T` read from the first `size_of::<T>()` bytes of `b` (any alignment).
/// Panics if `b` is shorter.
pub fn read_pod<T: Pod>(b: &[u8]) -> T {
    assert!(b.len() >= core::mem::size_of::<T>(), "{} bytes for a {}-byte value", b.len(), core::mem::size_of::<T>());
    // SAFETY: at least size_of::<T>() readable bytes (checked); `T: Pod` accepts any bit pattern;
    // read_unaligned has no alignment requirement.
    unsafe { b.as_ptr().cast::<T>().read_unaligned() }
}

/// Plain-old-data types that any initialised bytes form validly.
///
/// # Safety
/// Implementors must have no padding and no invalid bit patterns.
pub unsafe trait Pod: Copy {}
// SAFETY: primitive numbers: no padding, every bit pattern valid.
unsafe impl Pod for f32 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for i8 {}
// SAFETY: as above.
unsafe impl Pod for u8 {}
// SAFETY: repr(C) u16 + [i8; 32] = 34 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ8_0 {}
// SAFETY: repr(C) u16 + [u8; 16] = 18 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ4_0 {}
// SAFETY: repr(C) [u16; 8] + [u8; 128] = 144 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ4_0x8 {}
// SAFETY: repr(C) 2 x u16 + [u8; 16] = 20 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ4_1 {}
// SAFETY: repr(C) 2 x u16 + [u8; 4] + [u8; 16] = 24 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ5_1 {}
// SAFETY: repr(C) u16 + [u8; 16] = 18 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockIQ4NL {}
// SAFETY: repr(C) [u8; 16] + [u8; 64] + 2 x u16 = 84 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ2K {}
// SAFETY: repr(C) [u8; 32] + [u8; 64] + [u8; 12] + u16 = 110 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ3K {}
// SAFETY: repr(C) 2 x u16 + [u8; 4] + [u8; 128] = 136 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockIQ4XS {}
// SAFETY: repr(C) 2 x u16 + [i8; 32] = 36 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ8_1 {}
// SAFETY: repr(C) u16 + [u8; 4] + [u8; 16] = 22 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ5_0 {}
// SAFETY: repr(C) 2 x u16 + [u8; 12] + [u8; 128] = 144 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ4K {}
// SAFETY: repr(C) 2 x [u16; 8] + [u8; 96] + [u8; 1024] = 1152 bytes, align 2, no padding (size checked).
unsafe impl Pod for BlockQ4Kx8 {}
// SAFETY: repr(C) 2 x u16 + [u8; 12] + [u8; 32] + [u8; 128] = 176 bytes, align 2, no padding (size checked).
unsafe impl Pod for BlockQ5K {}
// SAFETY: repr(C) [u8; 128] + [u8; 64] + [i8; 16] + u16 = 210 bytes, align 2, no padding (size checked).
unsafe impl Pod for BlockQ6K {}
// SAFETY: repr(C) [u16; 8] + [i8; 128] + [u8; 1536] = 1680 bytes, align 2, no padding (size
// checked).
unsafe impl Pod for BlockQ6Kx8 {}
// SAFETY: repr(C) f32 + [i8; 256] + [i16; 16] = 292 bytes, align 4, no padding (size checked); every
// bit pattern is a valid f32/i8/i16.
unsafe impl Pod for BlockQ8K {}

/// `&[u8]` as `&[f32]` (little-endian host), if aligned to 4.
pub fn as_f32(b: &[u8]) -> Option<&[f32]> {
    view(b)
}
/// `&[u8]` as `&[u16]`, if aligned to 2.
pub fn as_u16(b: &[u8]) -> Option<&[u16]> {
    view(b)
}
/// `&[u8]` as Q8_0 blocks, if aligned to 2 and a whole number of blocks.
pub fn as_q8_0(b: &[u8]) -> Option<&[BlockQ8_0]> {
    view(b)
}

/// A byte view of f32s (for writing files).
pub fn f32_bytes(v: &[f32]) -> &[u8] {
    bytes_of(v)
}

/// A byte view of Q8_0 blocks (for writing files).
pub fn q8_0_bytes(v: &[BlockQ8_0]) -> &[u8] {
    bytes_of(v)
}
