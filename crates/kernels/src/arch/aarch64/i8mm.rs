//! FEAT_I8MM tiles: `smmla` multiplies a 2 x 8 matrix of signed bytes by the
//! transpose of another, adding the 2 x 2 products to four i32 lanes, so two
//! weight rows against two activation rows take one instruction per eight
//! elements (twice the work of `sdot`).
//!
//! Used for the K-quants (Q4_K, Q6_K), whose super-blocks reduce to one exact
//! integer per (row, activation) pair: the pairs of a 2 x 2 tile get the
//! integers the scalar twins compute, then the scalar twins' float terms, so
//! these tiles are bit-identical to `scalar` (and to the NEON and DotProd
//! tiles). Tiles that are not whole 2 x 2 pairs, and every other type, run
//! the DotProd tiles: the 32-block types keep their per-block lanes of four
//! products (the AVX2 lane order), which `smmla` (eight products per lane)
//! cannot give. Private to the crate; `ops` dispatches with an [`I8mmToken`].

use core::arch::aarch64::*;

use crate::arch::aarch64::neon::{f16, ld_s8, ld_u8, nibbles};
use crate::cpu::I8mmToken;
use crate::quant::{BlockQ4K, BlockQ6K, BlockQ8K};

/// `acc` plus the 2 x 2 products of `a` (rows: bytes 0..8, 8..16) and `b`
/// (the same): lanes (a0.b0, a0.b1, a1.b0, a1.b1). The intrinsic is not
/// stable yet, so inline assembly.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: this function is compiled only with FEAT_I8MM enabled, and its
    // callers run only with an I8mmToken: `smmla` exists. It reads and writes
    // only the registers named.
    unsafe {
        core::arch::asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The 2 x 2 products of 16 elements of two rows (`p0`, `p1`) and two
/// activations (`y0`, `y1`), added to `acc` (lanes r0c0, r0c1, r1c0, r1c1).
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn mm16(acc: int32x4_t, p0: int8x16_t, p1: int8x16_t, y0: int8x16_t, y1: int8x16_t) -> int32x4_t {
    let z = |a: int8x16_t, b: int8x16_t| {
        let (a, b) = (vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b));
        (vreinterpretq_s8_s64(vzip1q_s64(a, b)), vreinterpretq_s8_s64(vzip2q_s64(a, b)))
    };
    let (w_lo, w_hi) = z(p0, p1);
    let (x_lo, x_hi) = z(y0, y1);
    smmla(smmla(acc, w_lo, x_lo), w_hi, x_hi)
}

/// Lanes (s0, s0, s1, s1): the two rows' scales against the 2 x 2 lanes.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn row_scales(s0: i32, s1: i32) -> int32x4_t {
    vcombine_s32(vdup_n_s32(s0), vdup_n_s32(s1))
}

/// Two Q4_K rows against two Q8_K activations, `out[r][c]`.
#[target_feature(enable = "neon,i8mm")]
fn q4_k_2x2(ws: [&[BlockQ4K]; 2], xs: [&[BlockQ8K]; 2]) -> [[f32; 2]; 2] {
    let nb = ws[0].len();
    assert!(ws[1].len() == nb && xs[0].len() >= nb && xs[1].len() >= nb);
    let mut s = [[0.0f32; 2]; 2];
    for i in 0..nb {
        let (a, b) = (&ws[0][i], &ws[1][i]);
        let (ya, yb) = (&xs[0][i], &xs[1][i]);
        let sm: [[(u8, u8); 8]; 2] = [a, b].map(|w| core::array::from_fn(|j| crate::quant::scale_min_k4(j, &w.scales)));
        let mut sumi = vdupq_n_s32(0);
        for ch in 0..4 {
            // Sub-blocks 2ch (low nibbles) and 2ch + 1 (high nibbles), 32 elements each.
            let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
            for half in 0..2 {
                let (a_lo, a_hi) = nibbles(ld_u8(&a.qs, 32 * ch + 16 * half));
                let (b_lo, b_hi) = nibbles(ld_u8(&b.qs, 32 * ch + 16 * half));
                let at = 64 * ch + 16 * half;
                lo = mm16(lo, a_lo, b_lo, ld_s8(&ya.qs, at), ld_s8(&yb.qs, at));
                hi = mm16(hi, a_hi, b_hi, ld_s8(&ya.qs, at + 32), ld_s8(&yb.qs, at + 32));
            }
            let (j0, j1) = (2 * ch, 2 * ch + 1);
            sumi = vmlaq_s32(sumi, lo, row_scales(i32::from(sm[0][j0].0), i32::from(sm[1][j0].0)));
            sumi = vmlaq_s32(sumi, hi, row_scales(i32::from(sm[0][j1].0), i32::from(sm[1][j1].0)));
        }
        let mut lanes = [0i32; 4];
        // SAFETY: lanes is 4 writable i32; vst1q has no alignment requirement.
        unsafe { vst1q_s32(lanes.as_mut_ptr(), sumi) };
        for (r, w) in [a, b].into_iter().enumerate() {
            for (c, y) in [ya, yb].into_iter().enumerate() {
                let mut summ = 0i32;
                for (j, &(_, m)) in sm[r].iter().enumerate() {
                    summ += i32::from(m) * (i32::from(y.bsums[2 * j]) + i32::from(y.bsums[2 * j + 1]));
                }
                let d = f16(w.d) * y.d;
                let dmin = f16(w.dmin) * y.d;
                s[r][c] += d * lanes[2 * r + c] as f32 - dmin * summ as f32;
            }
        }
    }
    s
}

/// Two Q6_K rows against two Q8_K activations, `out[r][c]`.
#[target_feature(enable = "neon,i8mm")]
fn q6_k_2x2(ws: [&[BlockQ6K]; 2], xs: [&[BlockQ8K]; 2]) -> [[f32; 2]; 2] {
    let nb = ws[0].len();
    assert!(ws[1].len() == nb && xs[0].len() >= nb && xs[1].len() >= nb);
    let (m4, m3, m32) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x03), vdupq_n_s8(32));
    let mut s = [[0.0f32; 2]; 2];
    for i in 0..nb {
        let (a, b) = (&ws[0][i], &ws[1][i]);
        let (ya, yb) = (&xs[0][i], &xs[1][i]);
        let mut sumi = vdupq_n_s32(0);
        for h in 0..2 {
            for g in 0..4 {
                // Group g of half h (see the NEON tile): elements 128h + 32g + 16k + (0..16).
                let sh = vdupq_n_s8(-2 * g as i8);
                let val = |w: &BlockQ6K, k: usize| {
                    let l = ld_u8(&w.ql, 64 * h + 32 * (g & 1) + 16 * k);
                    let l = if g < 2 { vandq_u8(l, m4) } else { vshrq_n_u8::<4>(l) };
                    let hb = vandq_u8(vshlq_u8(ld_u8(&w.qh, 32 * h + 16 * k), sh), m3);
                    vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l, vshlq_n_u8::<4>(hb))), m32)
                };
                for k in 0..2 {
                    let at = 128 * h + 32 * g + 16 * k;
                    let p = mm16(vdupq_n_s32(0), val(a, k), val(b, k), ld_s8(&ya.qs, at), ld_s8(&yb.qs, at));
                    let sc = 8 * h + 2 * g + k;
                    sumi = vmlaq_s32(sumi, p, row_scales(i32::from(a.scales[sc]), i32::from(b.scales[sc])));
                }
            }
        }
        let mut lanes = [0i32; 4];
        // SAFETY: lanes is 4 writable i32; vst1q has no alignment requirement.
        unsafe { vst1q_s32(lanes.as_mut_ptr(), sumi) };
        for (r, w) in [a, b].into_iter().enumerate() {
            for (c, y) in [ya, yb].into_iter().enumerate() {
                s[r][c] += f16(w.d) * y.d * lanes[2 * r + c] as f32;
            }
        }
    }
    s
}

/// The tile kernels at the I8MM level: `smmla` 2 x 2 pairs for the K-quants
/// it has, the DotProd tiles for the rest.
pub(crate) mod tiles {
    use super::*;
    use crate::arch::aarch64::dotprod::tiles as dp;
    use crate::quant::{BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0};
    use crate::quant::{BlockQ5_1, BlockQ8_0, BlockQ8_1};

    /// This level's capability token, from `cpu` (for the tests).
    #[cfg(test)]
    pub(crate) fn token() -> Option<I8mmToken> {
        crate::cpu::i8mm()
    }

    macro_rules! pairs {
        ($name:ident, $pair:ident, $w:ty) => {
            /// The tile kernel: `R` weight rows against `C` activation rows,
            /// `out[r][c]`; whole 2 x 2 pairs with `smmla`, other shapes with
            /// the DotProd tiles (the same bits).
            pub(crate) fn $name<const R: usize, const C: usize>(
                t: I8mmToken,
                ws: [&[$w]; R],
                xs: [&[BlockQ8K]; C],
            ) -> [[f32; C]; R] {
                if R % 2 != 0 || C % 2 != 0 {
                    return dp::$name::<R, C>(t.dotprod(), ws, xs);
                }
                let mut out = [[0.0f32; C]; R];
                for r in (0..R).step_by(2) {
                    for c in (0..C).step_by(2) {
                        // SAFETY: the token (only `cpu` creates it, from the detected level) proves
                        // FEAT_I8MM (and NEON) present.
                        let o = unsafe { $pair([ws[r], ws[r + 1]], [xs[c], xs[c + 1]]) };
                        for (dr, row) in o.iter().enumerate() {
                            out[r + dr][c..c + 2].copy_from_slice(row);
                        }
                    }
                }
                out
            }
        };
    }
    pairs!(tile_q4_k, q4_k_2x2, BlockQ4K);
    pairs!(tile_q6_k, q6_k_2x2, BlockQ6K);

    macro_rules! via_dotprod {
        ($($name:ident: $w:ty, $x:ty;)*) => {$(
            /// The DotProd tile (this type gains nothing from `smmla`).
            pub(crate) fn $name<const R: usize, const C: usize>(
                t: I8mmToken,
                ws: [&[$w]; R],
                xs: [&[$x]; C],
            ) -> [[f32; C]; R] {
                dp::$name::<R, C>(t.dotprod(), ws, xs)
            }
        )*};
    }
    via_dotprod! {
        tile_q8_0: BlockQ8_0, BlockQ8_0;
        tile_q4_0: BlockQ4_0, BlockQ8_0;
        tile_iq4_nl: BlockIQ4NL, BlockQ8_0;
        tile_q4_1: BlockQ4_1, BlockQ8_1;
        tile_q5_0: BlockQ5_0, BlockQ8_0;
        tile_q5_1: BlockQ5_1, BlockQ8_1;
        tile_q2_k: BlockQ2K, BlockQ8K;
        tile_q3_k: BlockQ3K, BlockQ8K;
        tile_iq4_xs: BlockIQ4XS, BlockQ8K;
        tile_q5_k: BlockQ5K, BlockQ8K;
        tile_f32: f32, f32;
        tile_f16: u16, f32;
        tile_bf16: u16, f32;
    }
}
