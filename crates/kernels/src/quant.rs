//! Quant blocks, bit-compatible with GGUF/ggml, and their reference
//! (de)quantizers.

use crate::half::{f16_to_f32, f32_to_f16};

/// Elements per Q8_0 block.
pub const QK8_0: usize = 32;

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
}
