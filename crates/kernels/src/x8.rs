//! Kernels for Q4_0 weights repacked into row octets ([`BlockQ4_0x8`]):
//! each of the eight rows of an octet owns one 32-bit lane, so a block's
//! integer dot for all eight rows lands in one vector with no horizontal
//! sums and no transposes, and one vector of scales serves the eight rows.
//! The same kernel decodes (one activation row) and processes prompts (up
//! to eight activation rows share each unpacked weight block).
//!
//! Weights are made unsigned (nibbles 0..15, no `- 8`), so each block's sum
//! is corrected by `8 * sum(x)`. The integer lanes are exact, so the AVX2
//! form (maddubs + madd) and the VNNI form (`vpdpbusd`) give the same bits.
//! Private to the crate; `ops` dispatches.

/// The kernel body for one instruction set: `$mac(acc, u, x)` adds the
/// products of unsigned bytes `u` and signed bytes `x`, in groups of four,
/// to the i32 lanes of `acc`.
macro_rules! q4_0x8_kernel {
    ($features:literal, $mac:path) => {
        use core::arch::x86_64::*;

        use crate::quant::{BlockQ4_0x8, BlockQ8_0};

        /// `out[c][r]` = row r of the octet `w` . activation row c (`xs[c]`,
        /// with its block scales `xd[c]` as f32 and its block sums `sums[c]`).
        #[target_feature(enable = $features)]
        fn kernel<const C: usize>(
            w: &[BlockQ4_0x8],
            xs: [&[BlockQ8_0]; C],
            xd: [&[f32]; C],
            sums: [&[i32]; C],
        ) -> [[f32; 8]; C] {
            let nb = w.len();
            for c in 0..C {
                assert!(xs[c].len() >= nb && xd[c].len() >= nb && sums[c].len() >= nb);
            }
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = [_mm256_setzero_ps(); C];
            for (i, b) in w.iter().enumerate() {
                // SAFETY: `qs` is 128 readable bytes (four vectors) and `d` 16 bytes; loadu needs no alignment.
                let (v, dw): ([__m256i; 4], __m256) = unsafe {
                    let p = b.qs.as_ptr().cast::<__m256i>();
                    (
                        [
                            _mm256_loadu_si256(p),
                            _mm256_loadu_si256(p.add(1)),
                            _mm256_loadu_si256(p.add(2)),
                            _mm256_loadu_si256(p.add(3)),
                        ],
                        _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr().cast())),
                    )
                };
                // lo[k]: elements 4k..4k+4 of each row; hi[k]: elements 16+4k..16+4k+4.
                let lo: [__m256i; 4] = core::array::from_fn(|k| _mm256_and_si256(v[k], m4));
                let hi: [__m256i; 4] =
                    core::array::from_fn(|k| _mm256_and_si256(_mm256_srli_epi16::<4>(v[k]), m4));
                for c in 0..C {
                    let x = &xs[c][i];
                    let g = |k: usize| {
                        _mm256_set1_epi32(i32::from_le_bytes([
                            x.qs[4 * k] as u8,
                            x.qs[4 * k + 1] as u8,
                            x.qs[4 * k + 2] as u8,
                            x.qs[4 * k + 3] as u8,
                        ]))
                    };
                    let z = _mm256_setzero_si256();
                    // Two independent chains halve the latency of the sums.
                    let s_lo = $mac(
                        $mac($mac($mac(z, lo[0], g(0)), lo[1], g(1)), lo[2], g(2)),
                        lo[3],
                        g(3),
                    );
                    let s_hi = $mac(
                        $mac($mac($mac(z, hi[0], g(4)), hi[1], g(5)), hi[2], g(6)),
                        hi[3],
                        g(7),
                    );
                    let isum = _mm256_sub_epi32(
                        _mm256_add_epi32(s_lo, s_hi),
                        _mm256_set1_epi32(sums[c][i] << 3),
                    );
                    let d = _mm256_mul_ps(dw, _mm256_set1_ps(xd[c][i]));
                    acc[c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc[c]);
                }
            }
            let mut out = [[0.0f32; 8]; C];
            for c in 0..C {
                // SAFETY: out[c] is 8 writable floats; storeu needs no alignment.
                unsafe { _mm256_storeu_ps(out[c].as_mut_ptr(), acc[c]) };
            }
            out
        }

        /// See [`kernel`].
        ///
        /// # Safety
        /// The CPU must support the features this module is compiled for,
        /// with their state enabled.
        pub(crate) unsafe fn q4_0x8<const C: usize>(
            w: &[BlockQ4_0x8],
            xs: [&[BlockQ8_0]; C],
            xd: [&[f32]; C],
            sums: [&[i32]; C],
        ) -> [[f32; 8]; C] {
            // SAFETY: the caller guarantees the target features.
            unsafe { kernel::<C>(w, xs, xd, sums) }
        }
    };
}

/// AVX2 + FMA + F16C: maddubs + madd (the pair sums of 15 * 127 cannot
/// saturate), then an add.
pub(crate) mod avx2 {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mac(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
        _mm256_add_epi32(acc, crate::avx2::mul_sum_u8i8(u, x))
    }
    q4_0x8_kernel!("avx2,fma,f16c", mac);
}

/// AVX-512 VL + VNNI: `vpdpbusd` accumulates in one instruction.
pub(crate) mod vnni {
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn mac(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, x)
    }
    q4_0x8_kernel!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", mac);
}
