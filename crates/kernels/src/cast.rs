//! Viewing raw file bytes as typed slices, with alignment and length checks.

use crate::quant::BlockQ8_0;

/// Views `b` as `T`s if it is aligned and its length is a whole number of `T`.
fn view<T: Pod>(b: &[u8]) -> Option<&[T]> {
    let size = core::mem::size_of::<T>();
    if !b.len().is_multiple_of(size) || !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()) {
        return None;
    }
    // SAFETY: alignment and length checked above; `T: Pod` means every bit
    // pattern is a valid T and T has no padding, so reading initialised bytes
    // as T is sound; the lifetime is tied to `b`.
    Some(unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<T>(), b.len() / size) })
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
unsafe impl Pod for i8 {}
// SAFETY: repr(C) u16 + [i8; 32] = 34 bytes, align 2, no padding (size checked at compile time).
unsafe impl Pod for BlockQ8_0 {}

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
    // SAFETY: f32 has no padding; any f32 bytes are valid u8s; u8 has align 1.
    unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), core::mem::size_of_val(v)) }
}

/// A byte view of Q8_0 blocks (for writing files).
pub fn q8_0_bytes(v: &[BlockQ8_0]) -> &[u8] {
    // SAFETY: BlockQ8_0 is Pod (no padding); u8 has align 1.
    unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), core::mem::size_of_val(v)) }
}
