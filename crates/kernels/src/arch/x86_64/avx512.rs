//! AVX-512 kernels (F, BW, VL and VNNI). Private to the crate; callers (the
//! dispatchers in `ops`) must have checked `cpu::level() >= Avx512Vnni`.
//!
//! The matrix tiles are the AVX2 ones (`avx2::tile_kernels`) compiled with
//! AVX-512VL, which gives them 32 vector registers (bigger tiles without
//! spills), and with the VNNI `vpdpbusd` in place of maddubs + madd: the
//! integer lanes are identical, so results are bit-identical to the AVX2
//! level.

use core::arch::x86_64::*;

use crate::cpu::Avx512VnniToken;
use crate::quant::{BlockQ4_0, BlockQ8_0};

/// This level's capability token, from `cpu` (for the tests).
#[cfg(test)]
pub(crate) fn token() -> Option<Avx512VnniToken> {
    crate::cpu::avx512_vnni()
}

/// `vpdpbusd` from zero: unsigned bytes `a` times signed bytes `b`, summed in
/// groups of four into eight i32 lanes (no intermediate saturation).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn mul_sum_vnni(a: __m256i, b: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
}

/// Eight weight rows against `C` activation rows with the rows in the lanes:
/// the 32 unsigned weights of each row's block are transposed so that
/// vector g holds the 4-byte group g of all eight rows, and `vpdpbusd` with
/// the activation's group g broadcast adds that group's products to each
/// row's lane. A whole block's integer dot lands in one lane, with no
/// horizontal sums, and one vector of eight row scales serves all eight rows.
/// Weights are made unsigned (`unpack` adds `OFF`), so the sum is corrected
/// by `OFF * sum(x)`, with the activation sums from `sums`.
///
/// For prompt processing only: decoding streams one row at a time (see
/// `ops::matvec`), so this agrees with matvec to rounding, not bit for bit.
mod oct {
    use core::arch::x86_64::*;

    use crate::arch::x86_64::avx2::{load32, unpack_nibbles};
    use crate::quant::{BlockIQ4NL, BlockQ4_0, BlockQ5_0, BlockQ8_0};

    /// 8 x 8 transpose of 32-bit lanes: out[g] lane r = rows[r] lane g.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    macro_rules! oct_kernel {
        ($name:ident, $blk:ty, $off_shift:expr, |$b:ident| $unpack:expr) => {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn $name<const C: usize>(ws: [&[$blk]; 8], xs: [&[BlockQ8_0]; C], sums: [&[i32]; C]) -> [[f32; 8]; C] {
                let nb = ws[0].len();
                for w in ws.iter() {
                    assert_eq!(w.len(), nb);
                }
                for (x, s) in xs.iter().zip(sums.iter()) {
                    assert!(x.len() >= nb && s.len() >= nb);
                }
                let mut acc = [_mm256_setzero_ps(); C];
                for i in 0..nb {
                    let rows: [__m256i; 8] = core::array::from_fn(|r| {
                        let $b = &ws[r][i];
                        $unpack
                    });
                    let g = transpose8(rows);
                    let dw = _mm256_cvtph_ps(_mm_setr_epi16(
                        ws[0][i].d as i16,
                        ws[1][i].d as i16,
                        ws[2][i].d as i16,
                        ws[3][i].d as i16,
                        ws[4][i].d as i16,
                        ws[5][i].d as i16,
                        ws[6][i].d as i16,
                        ws[7][i].d as i16,
                    ));
                    for c in 0..C {
                        let x = &xs[c][i];
                        let mut isum = _mm256_setzero_si256();
                        for (k, gk) in g.iter().enumerate() {
                            let xb = _mm256_set1_epi32(i32::from_le_bytes([
                                x.qs[4 * k] as u8,
                                x.qs[4 * k + 1] as u8,
                                x.qs[4 * k + 2] as u8,
                                x.qs[4 * k + 3] as u8,
                            ]));
                            isum = _mm256_dpbusd_epi32(isum, *gk, xb);
                        }
                        let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(sums[c][i] << $off_shift));
                        let dx = _mm256_cvtph_ps(_mm_set1_epi16(x.d as i16));
                        acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(isum), acc[c]);
                    }
                }
                let mut out = [[0.0f32; 8]; C];
                for c in 0..C {
                    // SAFETY: out[c] is 8 writable floats.
                    unsafe { _mm256_storeu_ps(out[c].as_mut_ptr(), acc[c]) };
                }
                out
            }
        };
    }

    // Q8_0: w + 128 (flip the sign bit), offset 128 = 1 << 7.
    oct_kernel!(q8_0_impl, BlockQ8_0, 7, |b| _mm256_xor_si256(load32(&b.qs), _mm256_set1_epi8(-128)));
    // Q4_0: the nibbles, offset 8.
    oct_kernel!(q4_0_impl, BlockQ4_0, 3, |b| unpack_nibbles(&b.qs));
    // Q5_0: nibbles plus the fifth bit, offset 16.
    oct_kernel!(q5_0_impl, BlockQ5_0, 4, |b| {
        let hi = crate::arch::x86_64::avx2::bytes_from_bits(u32::from_le_bytes(b.qh));
        _mm256_or_si256(unpack_nibbles(&b.qs), _mm256_and_si256(hi, _mm256_set1_epi8(0x10)))
    });

    // IQ4_NL: the table values (-127..=113) + 128 (flip the sign bit), offset 128.
    oct_kernel!(iq4_nl_impl, BlockIQ4NL, 7, |b| _mm256_xor_si256(
        crate::arch::x86_64::avx2::unpack_iq4nl(&b.qs),
        _mm256_set1_epi8(-128)
    ));

    macro_rules! wrap {
        ($name:ident, $impl:ident, $blk:ty) => {
            /// The row-octet kernel: `out[c][r]` = row r . activation c.
            ///
            /// The token proves AVX-512 F/BW/VL and VNNI (and AVX2, FMA, F16C).
            pub(crate) fn $name<const C: usize>(
                _: crate::cpu::Avx512VnniToken,
                ws: [&[$blk]; 8],
                xs: [&[BlockQ8_0]; C],
                sums: [&[i32]; C],
            ) -> [[f32; 8]; C] {
                // SAFETY: the token (only `cpu` creates it, from the detected level) proves AVX-512
                // F/BW/VL and VNNI, AVX2, FMA and F16C present and enabled.
                unsafe { $impl::<C>(ws, xs, sums) }
            }
        };
    }
    wrap!(oct_q8_0, q8_0_impl, BlockQ8_0);
    wrap!(oct_q4_0, q4_0_impl, BlockQ4_0);
    wrap!(oct_q5_0, q5_0_impl, BlockQ5_0);
    wrap!(oct_iq4_nl, iq4_nl_impl, BlockIQ4NL);
}
pub(crate) use oct::{oct_iq4_nl, oct_q4_0, oct_q5_0, oct_q8_0};

/// Q4_0 row . Q8_0 activations for decoding, two blocks per 512-bit vector:
/// lanes 0..8 carry the even block and lanes 8..16 the odd one, exactly as
/// the two accumulators of the 1 x 1 tile (`tiles::tile_q4_0`), so the result
/// has the same bits with about two thirds of the instructions.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_0_row_impl(w: &[BlockQ4_0], x: &[BlockQ8_0], xd: &[f32]) -> f32 {
    let nb = w.len();
    assert!(x.len() >= nb && xd.len() >= nb);
    let m4 = _mm512_set1_epi8(0x0F);
    let eights = _mm512_set1_epi8(8);
    // Lanes 0..8 take element 0 of a pair, lanes 8..16 element 1.
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let mut acc = _mm512_setzero_ps();
    for ((ws, xs), ds) in w.chunks_exact(2).zip(x.chunks_exact(2)).zip(xd.chunks_exact(2)) {
        let (a0, a1) = (&ws[0], &ws[1]);
        // SAFETY: each qs is 16 (weights) or 32 (activations) readable bytes, ds two floats; loadu
        // needs no alignment.
        let (q, y, dx) = unsafe {
            let q = _mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm_loadu_si128(a0.qs.as_ptr().cast())),
                _mm_loadu_si128(a1.qs.as_ptr().cast()),
            );
            let y = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(xs[0].qs.as_ptr().cast())),
                _mm256_loadu_si256(xs[1].qs.as_ptr().cast()),
            );
            (q, y, _mm_castpd_ps(_mm_load_sd(ds.as_ptr().cast())))
        };
        // [q0, q1, q0 >> 4, q1 >> 4] -> nibbles -> [lo0, hi0, lo1, hi1]: block i in the low half.
        let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q), _mm256_srli_epi16::<4>(q));
        let z = _mm512_and_si512(z, m4);
        let u = _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z);
        // (u - 8) . y = u . y - 8 . y, lane by lane (four bytes each), as the sign trick gives.
        let p = _mm512_sub_epi32(
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, y),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), eights, y),
        );
        let dw = _mm_cvtph_ps(_mm_setr_epi16(a0.d as i16, a1.d as i16, 0, 0, 0, 0, 0, 0));
        let d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_mul_ps(dw, dx)));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    let lo = _mm512_castps512_ps256(acc);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
    let mut even = lo;
    if nb % 2 == 1 {
        // The last block of an odd count goes with the even ones (lanes 0..8).
        let (a, b) = (&w[nb - 1], &x[nb - 1]);
        let v = _mm256_sub_epi8(crate::arch::x86_64::avx2::unpack_nibbles(&a.qs), _mm256_set1_epi8(8));
        let p = mul_sum_vnni(_mm256_sign_epi8(v, v), _mm256_sign_epi8(crate::arch::x86_64::avx2::load32(&b.qs), v));
        let d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16(a.d as i16)), _mm256_set1_ps(xd[nb - 1]));
        even = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), even);
    }
    crate::arch::x86_64::avx2::hsum(_mm256_add_ps(even, hi))
}

/// Decoding dot of a Q4_0 row with Q8_0 activations (`xd`: their scales as
/// f32); bit-identical to the 1 x 1 tile of either x86 level.
/// The token proves AVX-512 F/BW/VL and VNNI (and AVX2, FMA, F16C).
pub(crate) fn q4_0_row(_: Avx512VnniToken, w: &[BlockQ4_0], x: &[BlockQ8_0], xd: &[f32]) -> f32 {
    // SAFETY: the token (only `cpu` creates it, from the detected level) proves the target features.
    unsafe { q4_0_row_impl(w, x, xd) }
}

/// The tile kernels compiled for AVX-512 F/BW/VL + VNNI (plus AVX2, FMA, F16C).
pub(crate) mod tiles {
    crate::arch::x86_64::avx2::tile_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        crate::arch::x86_64::avx512::mul_sum_vnni,
        crate::cpu::Avx512VnniToken,
        crate::cpu::avx512_vnni
    );
}
