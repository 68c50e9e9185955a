//! Viewing raw file bytes as typed slices, with alignment and length checks.
//! A leaf: the block types implement [`Pod`] where they are defined, in `quant`.

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
/// `&[u8]` as `&[f32]` (little-endian host), if aligned to 4.
pub fn as_f32(b: &[u8]) -> Option<&[f32]> {
    view(b)
}
/// `&[u8]` as `&[u16]`, if aligned to 2.
pub fn as_u16(b: &[u8]) -> Option<&[u16]> {
    view(b)
}
/// A byte view of f32s (for writing files).
pub fn f32_bytes(v: &[f32]) -> &[u8] {
    bytes_of(v)
}
