//! Quant blocks, bit-compatible with GGUF/ggml, and their reference
//! (de)quantizers.
//!
//! The quantizers follow ggml's reference algorithms (`quantize_row_*_ref`)
//! operation for operation, in f32 and without fused multiply-adds, so that
//! files are byte-identical to what `llama-quantize` writes without an
//! importance matrix (up to the floating-point contraction a C compiler may
//! apply). Layouts:
//!
//! - Q8_0: 32 int8 values and an f16 scale (34 bytes).
//! - Q4_0: 32 4-bit values (value = d * (q - 8)); byte j holds element j in
//!   its low nibble and element j + 16 in its high nibble (18 bytes).
//! - Q4_1: 32 4-bit values with an f16 scale and an f16 min (value = d * q +
//!   m), nibbles laid out as in Q4_0 (20 bytes).
//! - Q5_1: as Q4_1 plus a fifth bit per element in a little-endian u32, as
//!   in Q5_0; value = d * q + m (24 bytes).
//! - Q8_1: activations for Q4_1 and Q5_1 dot products: Q8_0 plus s = d * sum(qs) as f16
//!   (36 bytes).
//! - Q5_0: as Q4_0 plus a fifth bit per element in a little-endian u32
//!   (bit j = element j), value = d * (q - 16) (22 bytes).
//! - IQ4_NL: as Q4_0, but the nibble indexes a non-linear table of 16
//!   int8 values ([`KVALUES_IQ4NL`]), value = d * table[q] (18 bytes).
//! - Q2_K: super-blocks of 256 = 16 groups of 16 with a 4-bit scale and a
//!   4-bit min each, value = d * sc * q - dmin * m, q of 2 bits; the 2-bit
//!   values of two halves of 128, each 32 bytes holding four 32-element
//!   groups at shifts 0, 2, 4, 6 (84 bytes).
//! - Q3_K: 16 groups of 16 with 6-bit signed scales (offset 32), value = d *
//!   (sc - 32) * (q - 4 * !h): 2 low bits laid out as in Q2_K, and a high bit
//!   `hmask[l]` bit 4n + j for half n, group j (110 bytes).
//! - IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (offset 32) and the IQ4_NL
//!   table, value = d * (ls - 32) * table[q] (136 bytes).
//! - Q4_K: super-blocks of 256 = 8 sub-blocks of 32, each with a 6-bit scale
//!   and a 6-bit min packed in 12 bytes, value = d * sc * q - dmin * m; the
//!   4-bit values come in 4 chunks of 64: 32 bytes whose low nibbles are
//!   sub-block 2c and high nibbles sub-block 2c + 1 (144 bytes).
//! - Q5_K: Q4_K plus a fifth bit: `qh[l]` bit 2c is element 64c + l's, bit
//!   2c + 1 element 64c + 32 + l's (176 bytes).
//! - Q6_K: 16 sub-blocks of 16 with int8 scales, value = d * sc * (q - 32);
//!   low 4 bits in `ql`, high 2 bits in `qh` (210 bytes).
//! - Q8_K: activations for K-quant dot products: f32 scale, 256 int8 values
//!   and the sums of each group of 16 (292 bytes).

use crate::cast::{bytes_of, read_pod, view, Pod};
use crate::half::{f16_to_f32, f32_to_f16};

/// Elements per Q8_0 block.
pub const QK8_0: usize = 32;
/// Elements per Q4_0 block.
pub const QK4_0: usize = 32;
/// Elements per Q4_1 block.
pub const QK4_1: usize = 32;
/// Elements per Q5_0 block.
pub const QK5_0: usize = 32;
/// Elements per Q5_1 block.
pub const QK5_1: usize = 32;
/// Elements per Q8_1 block.
pub const QK8_1: usize = 32;
/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

/// ggml `block_q8_0`: 32 int8 values sharing one f16 scale.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ8_0 {
    /// Scale, f16 bits.
    pub d: u16,
    /// Quantized values: x[i] = d * qs[i].
    pub qs: [i8; QK8_0],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(core::mem::align_of::<BlockQ8_0>() == 2);

/// ggml `block_q4_0`: 32 4-bit values, x = d * (q - 8).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ4_0 {
    /// Scale, f16 bits.
    pub d: u16,
    /// Byte j: element j (low nibble) and element j + 16 (high nibble).
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(core::mem::align_of::<BlockQ4_0>() == 2);

/// ggml `block_q4_1`: 32 4-bit values, x = d * q + m.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ4_1 {
    /// Scale, f16 bits.
    pub d: u16,
    /// Minimum (the value of q = 0), f16 bits.
    pub m: u16,
    /// Byte j: element j (low nibble) and element j + 16 (high nibble).
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(core::mem::align_of::<BlockQ4_1>() == 2);

/// ggml `block_q5_1`: 32 5-bit values, x = d * q + m.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ5_1 {
    /// Scale, f16 bits.
    pub d: u16,
    /// Minimum (the value of q = 0), f16 bits.
    pub m: u16,
    /// Fifth bits, a little-endian u32: bit j belongs to element j.
    pub qh: [u8; 4],
    /// Low 4 bits, laid out as in Q4_0.
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(core::mem::align_of::<BlockQ5_1>() == 2);

/// ggml `block_q8_1`: quantized activations for Q4_1 (and Q5_1) dot
/// products: Q8_0 plus the scaled sum of the values.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ8_1 {
    /// Scale, f16 bits.
    pub d: u16,
    /// d * sum(qs), f16 bits.
    pub s: u16,
    /// Quantized values: x[i] = d * qs[i].
    pub qs: [i8; QK8_1],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_1>() == 36);
const _: () = assert!(core::mem::align_of::<BlockQ8_1>() == 2);

/// ggml `block_q5_0`: 32 5-bit values, x = d * (q - 16).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ5_0 {
    /// Scale, f16 bits.
    pub d: u16,
    /// Fifth bits, a little-endian u32: bit j belongs to element j.
    pub qh: [u8; 4],
    /// Low 4 bits, laid out as in Q4_0.
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(core::mem::align_of::<BlockQ5_0>() == 2);

/// ggml's `kvalues_iq4nl`: the 16 values of the non-linear 4-bit types.
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Elements per IQ4_NL block.
pub const QK4_NL: usize = 32;

/// ggml `block_iq4_nl`: 32 4-bit indexes into [`KVALUES_IQ4NL`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockIQ4NL {
    /// Scale, f16 bits.
    pub d: u16,
    /// Byte j: element j (low nibble) and element j + 16 (high nibble).
    pub qs: [u8; QK4_NL / 2],
}
const _: () = assert!(core::mem::size_of::<BlockIQ4NL>() == 18);
const _: () = assert!(core::mem::align_of::<BlockIQ4NL>() == 2);

/// ggml `block_q2_K`: a super-block of 256 2-bit values in 16 groups of 16.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ2K {
    /// Group g: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// The 2-bit values (see the module docs).
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales, f16 bits.
    pub d: u16,
    /// Super-block scale of the mins, f16 bits.
    pub dmin: u16,
}
const _: () = assert!(core::mem::size_of::<BlockQ2K>() == 84);
const _: () = assert!(core::mem::align_of::<BlockQ2K>() == 2);

/// ggml `block_q3_K`: a super-block of 256 3-bit values in 16 groups of 16.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ3K {
    /// High bits: `hmask[l]` bit 4n + j for element 128n + 32j + l.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits, laid out as in Q2_K.
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales (see [`q3_k_scale`]).
    pub scales: [u8; 12],
    /// Super-block scale, f16 bits.
    pub d: u16,
}
const _: () = assert!(core::mem::size_of::<BlockQ3K>() == 110);
const _: () = assert!(core::mem::align_of::<BlockQ3K>() == 2);

/// ggml `block_iq4_xs`: a super-block of 256 IQ4_NL indexes in 8 sub-blocks.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockIQ4XS {
    /// Super-block scale, f16 bits.
    pub d: u16,
    /// High 2 bits of the sub-block scales: bits 2i..2i+2 for sub-block i.
    pub scales_h: u16,
    /// Low 4 bits of the sub-block scales: byte i / 2, nibble i % 2.
    pub scales_l: [u8; QK_K / 64],
    /// Sub-block i: bytes 16i..16i+16, laid out as in IQ4_NL.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockIQ4XS>() == 136);
const _: () = assert!(core::mem::align_of::<BlockIQ4XS>() == 2);

/// ggml `block_q4_K`: a super-block of 256 4-bit values in 8 sub-blocks.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4K {
    /// Super-block scale of the sub-block scales, f16 bits.
    pub d: u16,
    /// Super-block scale of the sub-block mins, f16 bits.
    pub dmin: u16,
    /// Eight 6-bit scales and eight 6-bit mins (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    /// Four chunks of 32 bytes: low nibbles sub-block 2c, high nibbles 2c + 1.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(core::mem::align_of::<BlockQ4K>() == 2);

/// ggml `block_q5_K`: a super-block of 256 5-bit values in 8 sub-blocks.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5K {
    /// Super-block scale of the sub-block scales, f16 bits.
    pub d: u16,
    /// Super-block scale of the sub-block mins, f16 bits.
    pub dmin: u16,
    /// Eight 6-bit scales and eight 6-bit mins, as in Q4_K.
    pub scales: [u8; 12],
    /// Fifth bits: `qh[l]` bit 2c is element 64c + l's, bit 2c + 1 element 64c + 32 + l's.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, laid out as in Q4_K.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(core::mem::align_of::<BlockQ5K>() == 2);

/// ggml `block_q6_K`: a super-block of 256 6-bit values in 16 sub-blocks of 16.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale, f16 bits.
    pub d: u16,
}
const _: () = assert!(core::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(core::mem::align_of::<BlockQ6K>() == 2);

/// ggml `block_q8_K`: quantized activations for K-quant dot products.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    /// Scale (f32).
    pub d: f32,
    /// Values: x[i] = d * qs[i].
    pub qs: [i8; QK_K],
    /// Sum of each group of 16 values.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(core::mem::size_of::<BlockQ8K>() == 292);
const _: () = assert!(core::mem::align_of::<BlockQ8K>() == 4);

macro_rules! zeroed_default {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // Every field is a number or an array of numbers.
                Self::zeroed()
            }
        }
    )*};
}
impl BlockQ4K {
    const fn zeroed() -> Self {
        BlockQ4K { d: 0, dmin: 0, scales: [0; 12], qs: [0; QK_K / 2] }
    }
}
impl BlockQ5K {
    const fn zeroed() -> Self {
        BlockQ5K { d: 0, dmin: 0, scales: [0; 12], qh: [0; QK_K / 8], qs: [0; QK_K / 2] }
    }
}
impl BlockQ6K {
    const fn zeroed() -> Self {
        BlockQ6K { ql: [0; QK_K / 2], qh: [0; QK_K / 4], scales: [0; QK_K / 16], d: 0 }
    }
}
impl BlockQ8K {
    const fn zeroed() -> Self {
        BlockQ8K { d: 0.0, qs: [0; QK_K], bsums: [0; QK_K / 16] }
    }
}
impl BlockQ2K {
    const fn zeroed() -> Self {
        BlockQ2K { scales: [0; QK_K / 16], qs: [0; QK_K / 4], d: 0, dmin: 0 }
    }
}
impl BlockQ3K {
    const fn zeroed() -> Self {
        BlockQ3K { hmask: [0; QK_K / 8], qs: [0; QK_K / 4], scales: [0; 12], d: 0 }
    }
}
impl BlockIQ4XS {
    const fn zeroed() -> Self {
        BlockIQ4XS { d: 0, scales_h: 0, scales_l: [0; QK_K / 64], qs: [0; QK_K / 2] }
    }
}
zeroed_default!(BlockQ2K, BlockQ3K, BlockIQ4XS, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K);

// ---------------------------------------------------------------- helpers

/// C's `roundf`: rounds half away from zero (no libm in `core`).
#[inline]
pub fn round_away(v: f32) -> f32 {
    if v.is_nan() || v.abs() >= 8_388_608.0 {
        return v; // already an integer (or NaN)
    }
    let t = v as i32 as f32; // truncates toward zero
    if (v - t).abs() >= 0.5 {
        t + v.signum()
    } else {
        t
    }
}

/// ggml's `nearest_int`: rounds to the nearest integer, ties to even, by
/// adding 1.5 * 2^23 and reading the mantissa. Valid for |v| <= 4194303.
#[inline]
pub fn nearest_int(v: f32) -> i32 {
    debug_assert!(v.abs() <= 4_194_303.0 || v.is_nan());
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// The scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block, as ggml's
/// `get_scale_min_k4`: sub-blocks 0..4 keep 6 bits in bytes j and j + 4;
/// sub-blocks 4..8 keep their low 4 bits in byte j + 4 and their top 2 bits
/// in the top bits of bytes j - 4 (scale) and j (min).
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Packs eight 6-bit scales and mins the way [`scale_min_k4`] reads them.
pub fn pack_scale_min_k4(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (scales[j].min(63), mins[j].min(63));
        if j < 4 {
            q[j] = ls;
            q[j + 4] = lm;
        } else {
            q[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            q[j - 4] |= (ls >> 4) << 6;
            q[j] |= (lm >> 4) << 6;
        }
    }
    q
}

#[inline]
fn sqrt(x: f32) -> f32 {
    crate::math::libm_sqrt(x)
}

/// The value with the largest magnitude (the first one on ties) and that
/// magnitude, as ggml's quantizers find it.
#[inline]
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

// ---------------------------------------------------------------- Q8_0

/// Quantizes `x` (length a multiple of 32) into `out` exactly as ggml's
/// reference `quantize_row_q8_0_ref` does, so files are byte-identical.
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), out.len() * QK8_0);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK8_0)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.d = f32_to_f16(d);
        for (q, &v) in blk.qs.iter_mut().zip(xs) {
            // roundf: half away from zero, as in C.
            *q = round_away(v * id) as i8;
        }
    }
}

/// Dequantizes Q8_0 blocks into `out`.
pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK8_0)) {
        let d = f16_to_f32(blk.d);
        for (y, &q) in o.iter_mut().zip(&blk.qs) {
            *y = d * f32::from(q);
        }
    }
}

// ---------------------------------------------------------------- Q4_0

/// Quantizes `x` (length a multiple of 32) as ggml's `quantize_row_q4_0_ref`:
/// d = (signed value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5)).
pub fn quantize_row_q4_0(x: &[f32], out: &mut [BlockQ4_0]) {
    debug_assert_eq!(x.len(), out.len() * QK4_0);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK4_0)) {
        let (_, max) = signed_absmax(xs);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.d = f32_to_f16(d);
        for j in 0..QK4_0 / 2 {
            // C converts to int8_t (truncation toward zero), then takes MIN(15, .).
            let q0 = ((xs[j] * id + 8.5) as i32 as i8).min(15) as u8;
            let q1 = ((xs[j + 16] * id + 8.5) as i32 as i8).min(15) as u8;
            blk.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Dequantizes Q4_0 blocks into `out`.
pub fn dequantize_row_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK4_0)) {
        let d = f16_to_f32(blk.d);
        for j in 0..16 {
            o[j] = (i32::from(blk.qs[j] & 0xF) - 8) as f32 * d;
            o[j + 16] = (i32::from(blk.qs[j] >> 4) - 8) as f32 * d;
        }
    }
}

// ---------------------------------------------------------------- Q4_1

/// Quantizes `x` (length a multiple of 32) as ggml's `quantize_row_q4_1_ref`:
/// m = min, d = (max - min) / 15, q = min(15, trunc((x - m) / d + 0.5)).
pub fn quantize_row_q4_1(x: &[f32], out: &mut [BlockQ4_1]) {
    debug_assert_eq!(x.len(), out.len() * QK4_1);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK4_1)) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in xs {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.d = f32_to_f16(d);
        blk.m = f32_to_f16(min);
        for j in 0..QK4_1 / 2 {
            // C converts to int8_t (truncation toward zero), then takes MIN(15, .).
            let q0 = (((xs[j] - min) * id + 0.5) as i32 as i8).min(15) as u8;
            let q1 = (((xs[j + 16] - min) * id + 0.5) as i32 as i8).min(15) as u8;
            blk.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Dequantizes Q4_1 blocks into `out` (`q * d + m`, as ggml).
pub fn dequantize_row_q4_1(blocks: &[BlockQ4_1], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK4_1)) {
        let (d, m) = (f16_to_f32(blk.d), f16_to_f32(blk.m));
        for j in 0..16 {
            o[j] = f32::from(blk.qs[j] & 0xF) * d + m;
            o[j + 16] = f32::from(blk.qs[j] >> 4) * d + m;
        }
    }
}

// ---------------------------------------------------------------- Q5_1

/// Quantizes `x` (length a multiple of 32) as ggml's `quantize_row_q5_1_ref`:
/// m = min, d = (max - min) / 31, q = trunc((x - m) / d + 0.5) (no clamp:
/// the maximum gives 31.5 at most).
pub fn quantize_row_q5_1(x: &[f32], out: &mut [BlockQ5_1]) {
    debug_assert_eq!(x.len(), out.len() * QK5_1);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK5_1)) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in xs {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.d = f32_to_f16(d);
        blk.m = f32_to_f16(min);
        let mut qh = 0u32;
        for j in 0..QK5_1 / 2 {
            // C converts to uint8_t (truncation toward zero).
            let q0 = ((xs[j] - min) * id + 0.5) as u8;
            let q1 = ((xs[j + 16] - min) * id + 0.5) as u8;
            blk.qs[j] = (q0 & 0xF) | ((q1 & 0xF) << 4);
            qh |= u32::from((q0 & 0x10) >> 4) << j;
            qh |= u32::from((q1 & 0x10) >> 4) << (j + 16);
        }
        blk.qh = qh.to_le_bytes();
    }
}

/// The 5-bit value (0..32) of element `j` (0..32) of a Q5_1 block.
#[inline]
pub fn q5_1_value(blk: &BlockQ5_1, j: usize) -> u8 {
    let lo = if j < 16 { blk.qs[j] & 0xF } else { blk.qs[j - 16] >> 4 };
    lo | ((((u32::from_le_bytes(blk.qh) >> j) & 1) as u8) << 4)
}

/// Dequantizes Q5_1 blocks into `out` (`q * d + m`, as ggml).
pub fn dequantize_row_q5_1(blocks: &[BlockQ5_1], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK5_1)) {
        let (d, m) = (f16_to_f32(blk.d), f16_to_f32(blk.m));
        for (j, y) in o.iter_mut().enumerate() {
            *y = f32::from(q5_1_value(blk, j)) * d + m;
        }
    }
}

// ---------------------------------------------------------------- IQ4_NL

/// ggml's `best_index_int8` for the 16 sorted table values: the index of
/// the nearest value, the upper one on a tie (compared at twice the scale,
/// where the midpoints are exact).
#[inline]
fn best_index_iq4nl(x: f32) -> u8 {
    let v = &KVALUES_IQ4NL;
    let x2 = x + x;
    let mut idx = 0;
    let mut step = 8;
    while step > 0 {
        let j = idx + step;
        if x2 >= (i32::from(v[j - 1]) + i32::from(v[j])) as f32 {
            idx = j;
        }
        step >>= 1;
    }
    idx as u8
}

/// Quantizes `x` (length a multiple of 32) to IQ4_NL as llama-quantize does
/// without an importance matrix (ggml's `quantize_iq4_nl`, weights x^2,
/// `ntry` = 7): d from the value of largest magnitude, then the best of 15
/// scales around it by weighted least squares, then every element to its
/// nearest table value at the stored scale.
pub fn quantize_row_iq4_nl(x: &[f32], out: &mut [BlockIQ4NL]) {
    debug_assert_eq!(x.len(), out.len() * QK4_NL);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK4_NL)) {
        let d = iq4_nl_scale(xs);
        blk.d = f32_to_f16(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for j in 0..16 {
            blk.qs[j] = best_index_iq4nl(id * xs[j]) | (best_index_iq4nl(id * xs[j + 16]) << 4);
        }
    }
}

/// The scale ggml's `quantize_row_iq4_nl_impl` finds for 32 values without
/// importance weights (weights x^2, `ntry` = 7): from the value of largest
/// magnitude, then the best of 15 scales around it by weighted least
/// squares; 0 for an all-zero block.
fn iq4_nl_scale(xs: &[f32]) -> f32 {
    const GROUP_MAX_EPS: f32 = 1e-15;
    const NTRY: i32 = 7;
    let v0 = f32::from(KVALUES_IQ4NL[0]);
    let (amax, max) = signed_absmax(xs);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    // Weighted sums for the inverse scale id: (sum w q x, sum w q^2).
    let sums = |id: f32| {
        let (mut sqx, mut sq2) = (0.0f32, 0.0f32);
        for &v in xs {
            let q = f32::from(KVALUES_IQ4NL[usize::from(best_index_iq4nl(id * v))]);
            let w = v * v;
            sqx += w * q * v;
            sq2 += w * q * q;
        }
        (sqx, sq2)
    };
    let (sqx, sq2) = sums(1.0 / (-max / v0));
    let mut d = if sq2 > 0.0 { sqx / sq2 } else { 0.0 };
    let mut best = d * sqx;
    for itry in -NTRY..=NTRY {
        let (sqx, sq2) = sums((itry as f32 + v0) / max);
        if sq2 > 0.0 && sqx * sqx > best * sq2 {
            d = sqx / sq2;
            best = d * sqx;
        }
    }
    d
}

/// Dequantizes IQ4_NL blocks into `out` (ggml's `dequantize_row_iq4_nl`).
pub fn dequantize_row_iq4_nl(blocks: &[BlockIQ4NL], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK4_NL)) {
        let d = f16_to_f32(blk.d);
        for j in 0..16 {
            o[j] = d * f32::from(KVALUES_IQ4NL[usize::from(blk.qs[j] & 0xF)]);
            o[j + 16] = d * f32::from(KVALUES_IQ4NL[usize::from(blk.qs[j] >> 4)]);
        }
    }
}

// ---------------------------------------------------------------- Q2_K, Q3_K, IQ4_XS

/// The 2-bit value of element `i` (0..256) of a Q2_K or Q3_K `qs`: half n =
/// i / 128, group j = (i % 128) / 32, byte 32n + i % 32, shift 2j.
#[inline]
pub fn k2_value(qs: &[u8; QK_K / 4], i: usize) -> u8 {
    let (n, r) = (i / 128, i % 128);
    (qs[32 * n + r % 32] >> (2 * (r / 32))) & 3
}

/// Packs 256 2-bit values into a Q2_K/Q3_K `qs` (element 128n + 32j + l at
/// byte 32n + l, shift 2j).
fn pack_k2(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for n in 0..2 {
        for i in 0..32 {
            let b = 128 * n + i;
            qs[32 * n + i] = l[b] | (l[b + 32] << 2) | (l[b + 64] << 4) | (l[b + 96] << 6);
        }
    }
}

/// Quantizes `x` (length a multiple of 256) as ggml's `quantize_row_q2_K_ref`:
/// per group of 16, a scale and a min by [`make_qkx2_quants`] (weights |x|,
/// absolute error), both quantized to 4 bits against their maxima, then the
/// values re-quantized against the stored scales.
pub fn quantize_row_q2_k(x: &[f32], out: &mut [BlockQ2K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let (mut mins, mut scales) = ([0f32; 16], [0f32; 16]);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..16 {
            let xg = &xs[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xg) {
                *w = v.abs();
            }
            scales[j] = make_qkx2_quants(
                3,
                xg,
                &weights,
                &mut l[16 * j..16 * j + 16],
                &mut mins[j],
                &mut laux,
                -0.5,
                0.1,
                15,
                true,
            );
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (q, &sc) in blk.scales.iter_mut().zip(&scales) {
                // C stores the int in a uint8_t (wrapping).
                *q = nearest_int(iscale * sc) as u8;
            }
            blk.d = f32_to_f16(max_scale / Q4SCALE);
        } else {
            blk.scales = [0; 16];
            blk.d = f32_to_f16(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (q, &m) in blk.scales.iter_mut().zip(&mins) {
                *q |= (nearest_int(iscale * m) << 4) as u8;
            }
            blk.dmin = f32_to_f16(max_min / Q4SCALE);
        } else {
            blk.dmin = f32_to_f16(0.0);
        }
        for j in 0..16 {
            let d = f16_to_f32(blk.d) * f32::from(blk.scales[j] & 0xF);
            if d == 0.0 {
                continue;
            }
            let dm = f16_to_f32(blk.dmin) * f32::from(blk.scales[j] >> 4);
            for ii in 0..16 {
                l[16 * j + ii] = nearest_int((xs[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
            }
        }
        pack_k2(&l, &mut blk.qs);
    }
}

/// ggml's `make_q3_quants` with `do_rmse`: symmetric quantization to
/// -nmax..nmax-1 from the value of largest magnitude, then up to five rounds
/// of moving single values where that improves the weighted (x^2) fit.
/// Writes L + nmax and returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    const GROUP_MAX_EPS: f32 = 1e-15;
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l_out[..x.len()].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (q, &v) in l_out.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *q = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (q, &v) in l_out.iter_mut().zip(x) {
            let w = v * v;
            let li = f32::from(*q);
            let mut slx = sumlx - w * v * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != i32::from(*q) {
                    let nl = new_l as f32;
                    slx += w * v * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *q = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for q in l_out[..x.len()].iter_mut() {
        *q += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Quantizes `x` (length a multiple of 256) as ggml's `quantize_row_q3_K_ref`:
/// per group of 16 a scale by [`make_q3_quants`], the scales quantized to 6
/// signed bits against the one of largest magnitude, then the values
/// re-quantized against the stored scales.
pub fn quantize_row_q3_k(x: &[f32], out: &mut [BlockQ3K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &xs[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        blk.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &sc) in scales.iter().enumerate() {
                // C keeps the int in an int8_t before clamping.
                let q = (i32::from(nearest_int(iscale * sc) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    blk.scales[j] = q & 0xF;
                } else {
                    blk.scales[j - 8] |= (q & 0xF) << 4;
                }
                blk.scales[j % 4 + 8] |= (q >> 4) << (2 * (j / 4));
            }
            blk.d = f32_to_f16(1.0 / iscale);
        } else {
            blk.d = f32_to_f16(0.0);
        }
        for j in 0..16 {
            let sc = i32::from(q3_k_scale(&blk.scales, j)) - 32;
            let d = f16_to_f32(blk.d) * sc as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(xs[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        blk.hmask = [0; QK_K / 8];
        let mut lo = [0u8; QK_K];
        for (i, (&q, o)) in l.iter().zip(lo.iter_mut()).enumerate() {
            let mut q = q as u8;
            if q > 3 {
                blk.hmask[i % 32] |= 1 << (i / 32);
                q -= 4;
            }
            *o = q;
        }
        pack_k2(&lo, &mut blk.qs);
    }
}

/// Quantizes `x` (length a multiple of 256) to IQ4_XS as llama-quantize does
/// without an importance matrix (ggml's `quantize_iq4_xs`: weights x^2,
/// `ntry` = 7): per sub-block of 32 the IQ4_NL scale search, the scales
/// quantized to 6 signed bits against the one of largest magnitude, then
/// every element to its nearest table value at its sub-block's scale.
pub fn quantize_row_iq4_xs(x: &[f32], out: &mut [BlockIQ4XS]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    let mut scales = [0f32; 8];
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
        for (ib, sc) in scales.iter_mut().enumerate() {
            *sc = iq4_nl_scale(&xs[32 * ib..32 * ib + 32]);
            if sc.abs() > amax_scale {
                amax_scale = sc.abs();
                max_scale = *sc;
            }
        }
        let d = -max_scale / 32.0;
        blk.d = f32_to_f16(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.scales_h = 0;
        blk.scales_l = [0; 4];
        for (ib, &sc) in scales.iter().enumerate() {
            let l = nearest_int(id * sc).clamp(-32, 31);
            // The f32 d, not its f16 rounding, as ggml.
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let xb = &xs[32 * ib..32 * ib + 32];
            let q = &mut blk.qs[16 * ib..16 * ib + 16];
            for j in 0..16 {
                q[j] = best_index_iq4nl(idl * xb[j]) | (best_index_iq4nl(idl * xb[j + 16]) << 4);
            }
            let l = (l + 32) as u8;
            blk.scales_l[ib / 2] |= (l & 0xF) << (4 * (ib % 2));
            blk.scales_h |= u16::from(l >> 4) << (2 * ib);
        }
    }
}

/// Dequantizes Q2_K blocks into `out` (ggml's `dequantize_row_q2_K`):
/// group g of 16 has scale d * (sc & 15) and min dmin * (sc >> 4).
pub fn dequantize_row_q2_k(blocks: &[BlockQ2K], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_to_f32(blk.d), f16_to_f32(blk.dmin));
        for (i, y) in o.iter_mut().enumerate() {
            let sc = blk.scales[i / 16];
            let (dl, ml) = (d * f32::from(sc & 0xF), min * f32::from(sc >> 4));
            *y = dl * f32::from(k2_value(&blk.qs, i)) - ml;
        }
    }
}

/// Scale `k` (0..16) of a Q3_K block, 0..64 (the value is it minus 32): the
/// low 4 bits in nibble k / 8 of byte k % 8, the high 2 bits at bit
/// 2 (k / 4) of byte 8 + k % 4.
#[inline]
pub fn q3_k_scale(scales: &[u8; 12], k: usize) -> u8 {
    let lo = (scales[k % 8] >> (4 * (k / 8))) & 0xF;
    let hi = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
    lo | (hi << 4)
}

/// The signed 3-bit value (-4..4) of element `i` of a Q3_K block: the 2 low
/// bits, minus 4 when the high bit is clear.
#[inline]
pub fn q3_k_value(blk: &BlockQ3K, i: usize) -> i8 {
    let (n, r) = (i / 128, i % 128);
    let h = (blk.hmask[r % 32] >> (4 * n + r / 32)) & 1;
    k2_value(&blk.qs, i) as i8 - if h == 0 { 4 } else { 0 }
}

/// Dequantizes Q3_K blocks into `out` (ggml's `dequantize_row_q3_K`).
pub fn dequantize_row_q3_k(blocks: &[BlockQ3K], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(blk.d);
        for (i, y) in o.iter_mut().enumerate() {
            let dl = d * f32::from(q3_k_scale(&blk.scales, i / 16) as i8 - 32);
            *y = dl * f32::from(q3_k_value(blk, i));
        }
    }
}

/// Scale of sub-block `ib` (0..8) of an IQ4_XS block, 0..64 (the value is it
/// minus 32).
#[inline]
pub fn iq4_xs_scale(blk: &BlockIQ4XS, ib: usize) -> u8 {
    ((blk.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((((blk.scales_h >> (2 * ib)) & 3) as u8) << 4)
}

/// Dequantizes IQ4_XS blocks into `out` (ggml's `dequantize_row_iq4_xs`).
pub fn dequantize_row_iq4_xs(blocks: &[BlockIQ4XS], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(blk.d);
        for ib in 0..8 {
            let dl = d * f32::from(iq4_xs_scale(blk, ib) as i8 - 32);
            let (q, y) = (&blk.qs[16 * ib..16 * ib + 16], &mut o[32 * ib..32 * ib + 32]);
            for j in 0..16 {
                y[j] = dl * f32::from(KVALUES_IQ4NL[usize::from(q[j] & 0xF)]);
                y[j + 16] = dl * f32::from(KVALUES_IQ4NL[usize::from(q[j] >> 4)]);
            }
        }
    }
}

// ---------------------------------------------------------------- Q8_1

/// Quantizes activations (length a multiple of 32) to Q8_1 as llama.cpp's
/// x86 `quantize_row_q8_1` does at run time (the activations its Q4_1 dot
/// products see): d = amax / 127, q = nearest-even(x * (127 / amax)), and
/// s = f16(d * sum(q)). (ggml's `quantize_row_q8_1_ref` takes 1 / d and
/// rounds halves away from zero instead; the two rarely differ.)
pub fn quantize_row_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), out.len() * QK8_1);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK8_1)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in blk.qs.iter_mut().zip(xs) {
            *q = nearest_int(v * id) as i8;
            sum += i32::from(*q);
        }
        blk.d = f32_to_f16(d);
        blk.s = f32_to_f16(d * sum as f32);
    }
}

/// Dequantizes Q8_1 blocks into `out`.
pub fn dequantize_row_q8_1(blocks: &[BlockQ8_1], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK8_1)) {
        let d = f16_to_f32(blk.d);
        for (y, &q) in o.iter_mut().zip(&blk.qs) {
            *y = d * f32::from(q);
        }
    }
}

// ---------------------------------------------------------------- Q4_0 x 8

/// Eight Q4_0 blocks of eight consecutive rows (the same block column),
/// interleaved so a kernel holds one row per 32-bit vector lane: the row
/// scales side by side, then four groups of 32 bytes, where group `k`, lane
/// `r` (bytes `32k + 4r .. 32k + 4r + 4`) are bytes `4k .. 4k + 4` of row
/// r's `qs`. The low nibbles of group k are elements `4k .. 4k + 4` of each
/// row, the high nibbles elements `16 + 4k .. 16 + 4k + 4`.
///
/// Not a GGUF type: the engine repacks Q4_0 matrices at load time (in place:
/// eight blocks of 18 bytes become one of 144), as llama.cpp does.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_0x8 {
    /// Scales of rows 0..8, f16 bits.
    pub d: [u16; 8],
    /// The nibbles, interleaved as described above.
    pub qs: [u8; 128],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_0x8>() == 8 * core::mem::size_of::<BlockQ4_0>());
const _: () = assert!(core::mem::align_of::<BlockQ4_0x8>() == 2);

impl Default for BlockQ4_0x8 {
    fn default() -> Self {
        BlockQ4_0x8 { d: [0; 8], qs: [0; 128] }
    }
}

impl BlockQ4_0x8 {
    /// Interleaves one block of each of eight rows.
    pub fn pack(rows: [&BlockQ4_0; 8]) -> Self {
        let mut o = BlockQ4_0x8::default();
        for (r, b) in rows.iter().enumerate() {
            o.d[r] = b.d;
            for k in 0..4 {
                o.qs[32 * k + 4 * r..32 * k + 4 * r + 4].copy_from_slice(&b.qs[4 * k..4 * k + 4]);
            }
        }
        o
    }

    /// Row `r`'s block (the inverse of [`BlockQ4_0x8::pack`]).
    pub fn row(&self, r: usize) -> BlockQ4_0 {
        let mut b = BlockQ4_0 { d: self.d[r], qs: [0; 16] };
        for k in 0..4 {
            b.qs[4 * k..4 * k + 4].copy_from_slice(&self.qs[32 * k + 4 * r..32 * k + 4 * r + 4]);
        }
        b
    }
}

/// Repacks a Q4_0 matrix of `rows` rows of `nb` blocks, stored as GGUF does
/// (row after row) in `bytes`, into [`BlockQ4_0x8`] octets in place: octet
/// o (rows 8o..8o+8) becomes `nb` interleaved blocks at the same bytes.
/// `rows` must be a multiple of 8 and `bytes` exactly the matrix. Uses a
/// scratch copy of one octet; returns false, changing nothing, if the sizes
/// do not fit or the scratch cannot be allocated.
pub fn repack_q4_0x8_in_place(bytes: &mut [u8], rows: usize, nb: usize) -> bool {
    repack_octets_in_place(bytes, rows, nb, BlockQ4_0x8::pack)
}

/// Rewrites `rows` rows of `nb` blocks `T` (row after row) in `bytes` as
/// octets of `nb` interleaved blocks `X` made by `pack`, in place, through a
/// scratch copy of one octet. False, changing nothing, if the sizes do not
/// fit or the scratch cannot be allocated.
fn repack_octets_in_place<T: Pod, X: Pod>(bytes: &mut [u8], rows: usize, nb: usize, pack: fn([&T; 8]) -> X) -> bool {
    let b = core::mem::size_of::<T>();
    debug_assert_eq!(core::mem::size_of::<X>(), 8 * b);
    let Some(oct) = nb.checked_mul(8 * b) else {
        return false;
    };
    if !rows.is_multiple_of(8) || rows.checked_mul(nb).and_then(|n| n.checked_mul(b)) != Some(bytes.len()) {
        return false;
    }
    let mut tmp: alloc::vec::Vec<u8> = alloc::vec::Vec::new();
    if tmp.try_reserve_exact(oct).is_err() {
        return false;
    }
    tmp.resize(oct, 0);
    for dst in bytes.chunks_exact_mut(oct) {
        tmp.copy_from_slice(dst);
        for (i, out) in dst.chunks_exact_mut(8 * b).enumerate() {
            let rs: [T; 8] = core::array::from_fn(|r| read_pod(&tmp[(r * nb + i) * b..(r * nb + i + 1) * b]));
            let x = pack(core::array::from_fn(|r| &rs[r]));
            out.copy_from_slice(bytes_of(core::slice::from_ref(&x)));
        }
    }
    true
}

/// Row `r` (0..8) of an octet of `nb` [`BlockQ4_0x8`] blocks as f32.
pub fn dequantize_row_q4_0x8(blocks: &[BlockQ4_0x8], r: usize, out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK4_0)) {
        dequantize_row_q4_0(&[blk.row(r)], o);
    }
}

// ---------------------------------------------------------------- Q4_K x 8

/// Eight Q4_K super-blocks of eight consecutive rows (the same column),
/// interleaved so a kernel holds one row per 32-bit vector lane: the eight
/// `d`, the eight `dmin`, the rows' 12 scale bytes as three 4-byte words
/// (word w of row r at bytes `32w + 4r`), and the nibbles: chunk c, group g
/// (bytes `256c + 32g .. + 32`) holds, in lane r, bytes `32c + 4g .. + 4` of
/// row r's `qs` (low nibbles: sub-block 2c, elements 4g..4g+4; high
/// nibbles: sub-block 2c + 1).
///
/// Not a GGUF type: repacked in place at load like [`BlockQ4_0x8`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4Kx8 {
    /// `d` of rows 0..8, f16 bits.
    pub d: [u16; 8],
    /// `dmin` of rows 0..8, f16 bits.
    pub dmin: [u16; 8],
    /// The scale bytes, word-major as described above.
    pub scales: [u8; 96],
    /// The nibbles, interleaved as described above.
    pub qs: [u8; 1024],
}
const _: () = assert!(core::mem::size_of::<BlockQ4Kx8>() == 8 * core::mem::size_of::<BlockQ4K>());
const _: () = assert!(core::mem::align_of::<BlockQ4Kx8>() == 2);

impl Default for BlockQ4Kx8 {
    fn default() -> Self {
        BlockQ4Kx8 { d: [0; 8], dmin: [0; 8], scales: [0; 96], qs: [0; 1024] }
    }
}

impl BlockQ4Kx8 {
    /// Interleaves one super-block of each of eight rows.
    pub fn pack(rows: [&BlockQ4K; 8]) -> Self {
        let mut o = BlockQ4Kx8::default();
        for (r, b) in rows.iter().enumerate() {
            o.d[r] = b.d;
            o.dmin[r] = b.dmin;
            for w in 0..3 {
                o.scales[32 * w + 4 * r..32 * w + 4 * r + 4].copy_from_slice(&b.scales[4 * w..4 * w + 4]);
            }
            for c in 0..4 {
                for g in 0..8 {
                    let at = 256 * c + 32 * g + 4 * r;
                    o.qs[at..at + 4].copy_from_slice(&b.qs[32 * c + 4 * g..32 * c + 4 * g + 4]);
                }
            }
        }
        o
    }

    /// Row `r`'s super-block (the inverse of [`BlockQ4Kx8::pack`]).
    pub fn row(&self, r: usize) -> BlockQ4K {
        let mut b = BlockQ4K { d: self.d[r], dmin: self.dmin[r], scales: [0; 12], qs: [0; 128] };
        for w in 0..3 {
            b.scales[4 * w..4 * w + 4].copy_from_slice(&self.scales[32 * w + 4 * r..32 * w + 4 * r + 4]);
        }
        for c in 0..4 {
            for g in 0..8 {
                let at = 256 * c + 32 * g + 4 * r;
                b.qs[32 * c + 4 * g..32 * c + 4 * g + 4].copy_from_slice(&self.qs[at..at + 4]);
            }
        }
        b
    }
}

/// [`repack_q4_0x8_in_place`] for Q4_K: `nb` super-blocks per row.
pub fn repack_q4_kx8_in_place(bytes: &mut [u8], rows: usize, nb: usize) -> bool {
    repack_octets_in_place(bytes, rows, nb, BlockQ4Kx8::pack)
}

/// Row `r` (0..8) of an octet of `nb` [`BlockQ4Kx8`] super-blocks as f32.
pub fn dequantize_row_q4_kx8(blocks: &[BlockQ4Kx8], r: usize, out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequantize_row_q4_k(&[blk.row(r)], o);
    }
}

// ---------------------------------------------------------------- Q6_K x 8

/// Eight Q6_K super-blocks of eight consecutive rows, interleaved so a
/// kernel holds one row per 32-bit vector lane: the eight `d`, the scales
/// sub-block-major (byte `8k + r`: row r's scale k), then the 6-bit values
/// in 16 steps of 96 bytes, in the order the kernel reads them (so the
/// hardware prefetcher sees one forward stream). Step `s = 8n + g` (half n,
/// group g < 8) holds three 32-byte groups whose lane r (bytes `4r .. 4r +
/// 4`) is: row r's `ql[64n + 4g ..][..4]`, its `ql[64n + 32 + 4g ..][..4]`
/// and its `qh[32n + 4g ..][..4]`.
///
/// Not a GGUF type: repacked in place at load like [`BlockQ4_0x8`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ6Kx8 {
    /// `d` of rows 0..8, f16 bits.
    pub d: [u16; 8],
    /// Sub-block scales, sub-block-major.
    pub scales: [i8; 128],
    /// `ql` and `qh`, interleaved in steps as described above.
    pub q: [u8; 1536],
}
const _: () = assert!(core::mem::size_of::<BlockQ6Kx8>() == 8 * core::mem::size_of::<BlockQ6K>());
const _: () = assert!(core::mem::align_of::<BlockQ6Kx8>() == 2);

impl Default for BlockQ6Kx8 {
    fn default() -> Self {
        BlockQ6Kx8 { d: [0; 8], scales: [0; 128], q: [0; 1536] }
    }
}

impl BlockQ6Kx8 {
    /// (offset in `q`, source array, offset in the row's array) of the
    /// three 4-byte pieces of lane r in step s: 0 = ql, 1 = qh.
    fn pieces(s: usize, r: usize) -> [(usize, usize, usize); 3] {
        let (n, g) = (s / 8, s % 8);
        [
            (96 * s + 4 * r, 0, 64 * n + 4 * g),
            (96 * s + 32 + 4 * r, 0, 64 * n + 32 + 4 * g),
            (96 * s + 64 + 4 * r, 1, 32 * n + 4 * g),
        ]
    }

    /// Interleaves one super-block of each of eight rows.
    pub fn pack(rows: [&BlockQ6K; 8]) -> Self {
        let mut o = BlockQ6Kx8::default();
        for (r, b) in rows.iter().enumerate() {
            o.d[r] = b.d;
            for k in 0..16 {
                o.scales[8 * k + r] = b.scales[k];
            }
            for s in 0..16 {
                for (at, src, from) in Self::pieces(s, r) {
                    let src: &[u8] = if src == 0 { &b.ql } else { &b.qh };
                    o.q[at..at + 4].copy_from_slice(&src[from..from + 4]);
                }
            }
        }
        o
    }

    /// Row `r`'s super-block (the inverse of [`BlockQ6Kx8::pack`]).
    pub fn row(&self, r: usize) -> BlockQ6K {
        let mut b = BlockQ6K { ql: [0; 128], qh: [0; 64], scales: [0; 16], d: self.d[r] };
        for k in 0..16 {
            b.scales[k] = self.scales[8 * k + r];
        }
        for s in 0..16 {
            for (at, src, from) in Self::pieces(s, r) {
                let dst: &mut [u8] = if src == 0 { &mut b.ql } else { &mut b.qh };
                dst[from..from + 4].copy_from_slice(&self.q[at..at + 4]);
            }
        }
        b
    }
}

/// [`repack_q4_0x8_in_place`] for Q6_K: `nb` super-blocks per row.
pub fn repack_q6_kx8_in_place(bytes: &mut [u8], rows: usize, nb: usize) -> bool {
    repack_octets_in_place(bytes, rows, nb, BlockQ6Kx8::pack)
}

/// Row `r` (0..8) of an octet of `nb` [`BlockQ6Kx8`] super-blocks as f32.
pub fn dequantize_row_q6_kx8(blocks: &[BlockQ6Kx8], r: usize, out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequantize_row_q6_k(&[blk.row(r)], o);
    }
}

// ---------------------------------------------------------------- Q5_0

/// Quantizes `x` (length a multiple of 32) as ggml's `quantize_row_q5_0_ref`:
/// d = (signed value of largest magnitude) / -16, q = min(31, trunc(x/d + 16.5)).
pub fn quantize_row_q5_0(x: &[f32], out: &mut [BlockQ5_0]) {
    debug_assert_eq!(x.len(), out.len() * QK5_0);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK5_0)) {
        let (_, max) = signed_absmax(xs);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.d = f32_to_f16(d);
        let mut qh = 0u32;
        for j in 0..QK5_0 / 2 {
            let q0 = ((xs[j] * id + 16.5) as i32 as i8).min(31) as u8;
            let q1 = ((xs[j + 16] * id + 16.5) as i32 as i8).min(31) as u8;
            blk.qs[j] = (q0 & 0xF) | ((q1 & 0xF) << 4);
            qh |= u32::from((q0 & 0x10) >> 4) << j;
            qh |= u32::from((q1 & 0x10) >> 4) << (j + 16);
        }
        blk.qh = qh.to_le_bytes();
    }
}

/// Dequantizes Q5_0 blocks into `out`.
pub fn dequantize_row_q5_0(blocks: &[BlockQ5_0], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK5_0)) {
        let d = f16_to_f32(blk.d);
        let qh = u32::from_le_bytes(blk.qh);
        for j in 0..16 {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            o[j] = ((u32::from(blk.qs[j] & 0xF) | h0) as i32 - 16) as f32 * d;
            o[j + 16] = ((u32::from(blk.qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

// ---------------------------------------------------------------- K-quant helpers

/// ggml's `make_qkx2_quants`: fits x ~ scale * L - min with L in 0..=nmax by
/// weighted least squares over a few candidate scales. Returns the scale and
/// writes `L` and `the_min` (the value subtracted, >= 0).
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    the_min: &mut f32,
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> f32 {
    // The error measure: |diff| (use_mad) or diff^2.
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        *the_min = -min;
        return 0.0;
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best += weights[i] * err(diff);
    }
    if nstep < 1 {
        *the_min = -min;
        return scale;
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur += weights[i] * err(diff);
            }
            if cur < best {
                l_out[..n].copy_from_slice(&laux[..n]);
                best = cur;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    scale
}

/// ggml's `make_qx_quants` with `rmse_type` 1 (weights x^2) and no
/// importance weights: symmetric quantization to -nmax..nmax-1, trying 18
/// scales around nmax / max. Writes L + nmax and returns the scale.
fn make_qx_quants_rmse1(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    const GROUP_MAX_EPS: f32 = 1e-15;
    let n = x.len();
    let (amax, max) = {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        (amax, max)
    };
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = x[i] * x[i];
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in &x[..n] {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l_out[i] = (nmax + l) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Shared first half of the Q4_K and Q5_K quantizers: per-sub-block scales and
/// mins by [`make_qkx2_quants`], quantized to 6 bits, then the values
/// re-quantized against the stored scales. Returns (d, dmin, packed scales).
fn quantize_k_super_block(xs: &[f32], nmax: i32, rmin: f32, nstep: i32, l: &mut [u8; QK_K]) -> (u16, u16, [u8; 12]) {
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; 8];
    let mut scales = [0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let x = &xs[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in x {
            sum_x2 += v * v;
        }
        let av_x = sqrt(sum_x2 / 32.0);
        for (w, &v) in weights.iter_mut().zip(x) {
            *w = av_x + v.abs();
        }
        scales[j] = make_qkx2_quants(
            nmax,
            x,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut mins[j],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
        );
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        // C stores the int in a uint8_t (wrapping), then takes MIN(63, .).
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = f32_to_f16(max_scale / 63.0);
    let dmin = f32_to_f16(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dd = f16_to_f32(d) * f32::from(sc);
        if dd == 0.0 {
            continue;
        }
        let dm = f16_to_f32(dmin) * f32::from(m);
        for ii in 0..32 {
            let q = nearest_int((xs[32 * j + ii] + dm) / dd).clamp(0, nmax);
            l[32 * j + ii] = q as u8;
        }
    }
    (d, dmin, packed)
}

// ---------------------------------------------------------------- Q4_K

/// Quantizes `x` (length a multiple of 256) as ggml's `quantize_row_q4_K_ref`.
pub fn quantize_row_q4_k(x: &[f32], out: &mut [BlockQ4K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    let mut l = [0u8; QK_K];
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (d, dmin, scales) = quantize_k_super_block(xs, 15, -1.0, 20, &mut l);
        blk.d = d;
        blk.dmin = dmin;
        blk.scales = scales;
        for c in 0..4 {
            for i in 0..32 {
                blk.qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

/// Dequantizes Q4_K blocks into `out`.
pub fn dequantize_row_q4_k(blocks: &[BlockQ4K], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(blk.d);
        let min = f16_to_f32(blk.dmin);
        for c in 0..4 {
            let (sc0, m0) = scale_min_k4(2 * c, &blk.scales);
            let (sc1, m1) = scale_min_k4(2 * c + 1, &blk.scales);
            let (d0, mm0) = (d * f32::from(sc0), min * f32::from(m0));
            let (d1, mm1) = (d * f32::from(sc1), min * f32::from(m1));
            let q = &blk.qs[32 * c..32 * c + 32];
            for i in 0..32 {
                o[64 * c + i] = d0 * f32::from(q[i] & 0xF) - mm0;
                o[64 * c + 32 + i] = d1 * f32::from(q[i] >> 4) - mm1;
            }
        }
    }
}

// ---------------------------------------------------------------- Q5_K

/// Quantizes `x` (length a multiple of 256) as ggml's `quantize_row_q5_K_ref`.
pub fn quantize_row_q5_k(x: &[f32], out: &mut [BlockQ5K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    let mut l = [0u8; QK_K];
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (d, dmin, scales) = quantize_k_super_block(xs, 31, -0.5, 15, &mut l);
        blk.d = d;
        blk.dmin = dmin;
        blk.scales = scales;
        blk.qh = [0; QK_K / 8];
        for c in 0..4 {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for i in 0..32 {
                let mut l1 = l[64 * c + i];
                if l1 > 15 {
                    l1 -= 16;
                    blk.qh[i] |= m1;
                }
                let mut l2 = l[64 * c + 32 + i];
                if l2 > 15 {
                    l2 -= 16;
                    blk.qh[i] |= m2;
                }
                blk.qs[32 * c + i] = l1 | (l2 << 4);
            }
        }
    }
}

/// Dequantizes Q5_K blocks into `out`.
pub fn dequantize_row_q5_k(blocks: &[BlockQ5K], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(blk.d);
        let min = f16_to_f32(blk.dmin);
        for c in 0..4 {
            let (sc0, m0) = scale_min_k4(2 * c, &blk.scales);
            let (sc1, m1) = scale_min_k4(2 * c + 1, &blk.scales);
            let (d0, mm0) = (d * f32::from(sc0), min * f32::from(m0));
            let (d1, mm1) = (d * f32::from(sc1), min * f32::from(m1));
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let q = &blk.qs[32 * c..32 * c + 32];
            for i in 0..32 {
                let h0 = if blk.qh[i] & u1 != 0 { 16 } else { 0 };
                let h1 = if blk.qh[i] & u2 != 0 { 16 } else { 0 };
                o[64 * c + i] = d0 * f32::from((q[i] & 0xF) + h0) - mm0;
                o[64 * c + 32 + i] = d1 * f32::from((q[i] >> 4) + h1) - mm1;
            }
        }
    }
}

// ---------------------------------------------------------------- Q6_K

/// Quantizes `x` (length a multiple of 256) as ggml's `quantize_row_q6_K_ref`.
pub fn quantize_row_q6_k(x: &[f32], out: &mut [BlockQ6K]) {
    const GROUP_MAX_EPS: f32 = 1e-15;
    debug_assert_eq!(x.len(), out.len() * QK_K);
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..QK_K / 16 {
            let s = make_qx_quants_rmse1(32, &xs[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *blk = BlockQ6K::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        blk.d = f32_to_f16(1.0 / iscale);
        for (q, &s) in blk.scales.iter_mut().zip(&scales) {
            *q = nearest_int(iscale * s).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = f16_to_f32(blk.d) * f32::from(blk.scales[j]);
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(xs[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for h in 0..2 {
            let (ql, qh, lh) =
                (&mut blk.ql[64 * h..64 * h + 64], &mut blk.qh[32 * h..32 * h + 32], &l[128 * h..128 * h + 128]);
            for i in 0..32 {
                let (a, b, c, e) = (lh[i] as u8, lh[i + 32] as u8, lh[i + 64] as u8, lh[i + 96] as u8);
                ql[i] = (a & 0xF) | ((c & 0xF) << 4);
                ql[i + 32] = (b & 0xF) | ((e & 0xF) << 4);
                qh[i] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
            }
        }
    }
}

/// The 6-bit value (0..64) of element `i` (0..256) of a Q6_K block.
#[inline]
pub fn q6_k_value(blk: &BlockQ6K, i: usize) -> u8 {
    let (h, r) = (i / 128, i % 128);
    let (k, l) = (r / 32, r % 32);
    let lo = blk.ql[64 * h + 32 * (k & 1) + l];
    let lo = if k < 2 { lo & 0xF } else { lo >> 4 };
    let hi = (blk.qh[32 * h + l] >> (2 * k)) & 3;
    lo | (hi << 4)
}

/// Dequantizes Q6_K blocks into `out`.
pub fn dequantize_row_q6_k(blocks: &[BlockQ6K], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(blk.d);
        for (i, y) in o.iter_mut().enumerate() {
            let q = i32::from(q6_k_value(blk, i)) - 32;
            *y = d * f32::from(blk.scales[i / 16]) * q as f32;
        }
    }
}

// ---------------------------------------------------------------- Q8_K

/// Quantizes activations (length a multiple of 256) as ggml's
/// `quantize_row_q8_K_ref`: d = max / -127 for the signed value of largest
/// magnitude, q = min(127, nearest(x / d)), plus the sums of groups of 16.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (amax, max) = {
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for &v in xs {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            (amax, max)
        };
        if amax == 0.0 {
            *blk = BlockQ8K::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in blk.qs.iter_mut().zip(xs) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        fill_bsums(blk);
        blk.d = 1.0 / iscale;
    }
}

/// Sets `bsums` from `qs`.
#[inline]
pub fn fill_bsums(blk: &mut BlockQ8K) {
    for (s, g) in blk.bsums.iter_mut().zip(blk.qs.chunks_exact(16)) {
        *s = g.iter().map(|&q| i16::from(q)).sum();
    }
}

/// Dequantizes Q8_K blocks into `out`.
pub fn dequantize_row_q8_k(blocks: &[BlockQ8K], out: &mut [f32]) {
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        for (y, &q) in o.iter_mut().zip(&blk.qs) {
            *y = blk.d * f32::from(q);
        }
    }
}

// ---- Pod: the blocks are plain bytes (see `cast`) ----

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

/// `&[u8]` as Q8_0 blocks, if aligned to 2 and a whole number of blocks.
pub fn as_q8_0(b: &[u8]) -> Option<&[BlockQ8_0]> {
    view(b)
}

/// A byte view of Q8_0 blocks (for writing files).
pub fn q8_0_bytes(v: &[BlockQ8_0]) -> &[u8] {
    bytes_of(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_round_trip_error_is_small() {
        let x: [f32; 64] = core::array::from_fn(|i| ((i as f32) * 0.37).sin() * 3.0);
        let mut b = [BlockQ8_0::default(); 2];
        quantize_row_q8_0(&x, &mut b);
        let mut y = [0.0f32; 64];
        dequantize_row_q8_0(&b, &mut y);
        for (a, c) in x.iter().zip(&y) {
            assert!((a - c).abs() <= 3.0 / 127.0, "{a} vs {c}");
        }
        // The largest magnitude maps to +-127.
        assert!(b[0].qs.iter().any(|&q| q == 127 || q == -127));
    }

    #[test]
    fn round_away_matches_c() {
        assert_eq!(round_away(0.5), 1.0);
        assert_eq!(round_away(-0.5), -1.0);
        assert_eq!(round_away(1.49), 1.0);
        assert_eq!(round_away(-2.5), -3.0);
        assert_eq!(round_away(126.99), 127.0);
    }

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        for (v, want) in
            [(0.5f32, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (3.49, 3), (-3.51, -4), (4194303.0, 4194303)]
        {
            assert_eq!(nearest_int(v), want, "{v}");
        }
    }

    #[test]
    fn scale_min_k4_packing_round_trips() {
        let sc: [u8; 8] = [0, 1, 63, 17, 32, 48, 5, 63];
        let mn: [u8; 8] = [63, 0, 2, 40, 15, 16, 62, 31];
        let q = pack_scale_min_k4(&sc, &mn);
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &q), (sc[j], mn[j]), "j={j}");
        }
    }
}
