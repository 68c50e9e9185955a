//! Kernels for Q4_0, Q4_K and Q6_K weights repacked into row octets
//! ([`crate::quant::BlockQ4_0x8`], [`crate::quant::BlockQ4Kx8`],
//! [`crate::quant::BlockQ6Kx8`]):
//! each of the eight rows of an octet owns one 32-bit lane, so a block's
//! integer dot for all eight rows lands in one vector with no horizontal
//! sums and no transposes, and one vector of scales serves the eight rows.
//! The same kernel decodes (one activation row) and processes prompts (up
//! to eight activation rows share each unpacked weight block).
//!
//! Q4_0 weights are taken unsigned (nibbles 0..15, no `- 8`), so each
//! block's sum is corrected by `8 * sum(x)`, Q6_K's by `32 * sum(x)` per
//! sub-block; Q4_K nibbles are unsigned already. The integer lanes are exact, so the AVX2
//! form (maddubs + madd) and the VNNI form (`vpdpbusd`) give the same bits.
//! Private to the crate; `ops` dispatches.

/// The kernel body for one instruction set: `$mac(acc, u, x)` adds the
/// products of unsigned bytes `u` and signed bytes `x`, in groups of four,
/// to the i32 lanes of `acc`.
macro_rules! octet_kernels {
    ($features:literal, $mac:path, $tok:ty, $detect:path) => {
        use core::arch::x86_64::*;

        /// This level's capability token, from `cpu` (for the tests).
        #[cfg(test)]
        pub(crate) fn token() -> Option<$tok> {
            $detect()
        }

        use crate::quant::{BlockQ4Kx8, BlockQ4_0x8, BlockQ6Kx8, BlockQ8K, BlockQ8_0};

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
                let hi: [__m256i; 4] = core::array::from_fn(|k| _mm256_and_si256(_mm256_srli_epi16::<4>(v[k]), m4));
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
                    let s_lo = $mac($mac($mac($mac(z, lo[0], g(0)), lo[1], g(1)), lo[2], g(2)), lo[3], g(3));
                    let s_hi = $mac($mac($mac($mac(z, hi[0], g(4)), hi[1], g(5)), hi[2], g(6)), hi[3], g(7));
                    let isum = _mm256_sub_epi32(_mm256_add_epi32(s_lo, s_hi), _mm256_set1_epi32(sums[c][i] << 3));
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

        /// `out[c][r]` = row r of the Q4_K octet `w` . activation row c.
        /// Per sub-block j the integer dots of the eight rows land in one
        /// vector and are multiplied by the rows' scales `sc_j` lane by
        /// lane; the mins are dotted with the activations' sub-block sums
        /// (`bsums` pairs) by `madd`.
        #[target_feature(enable = $features)]
        fn kernel_k<const C: usize>(w: &[BlockQ4Kx8], xs: [&[BlockQ8K]; C]) -> [[f32; 8]; C] {
            let nb = w.len();
            for x in xs.iter() {
                assert!(x.len() >= nb);
            }
            let m4 = _mm256_set1_epi8(0x0F);
            let m6 = _mm256_set1_epi8(0x3F);
            let m2 = _mm256_set1_epi8(0x03);
            let ff = _mm256_set1_epi32(0xFF);
            let lo16 = _mm256_set1_epi32(0x00FF_00FF);
            let z = _mm256_setzero_si256();
            let mut acc = [_mm256_setzero_ps(); C];
            for (i, b) in w.iter().enumerate() {
                // SAFETY: `scales` is 96 readable bytes (three vectors), `d` and `dmin` 16 each; loadu needs
                // no alignment.
                let (s0, s1, s2, dw, dm) = unsafe {
                    let p = b.scales.as_ptr().cast::<__m256i>();
                    (
                        _mm256_loadu_si256(p),
                        _mm256_loadu_si256(p.add(1)),
                        _mm256_loadu_si256(p.add(2)),
                        _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr().cast())),
                        _mm256_cvtph_ps(_mm_loadu_si128(b.dmin.as_ptr().cast())),
                    )
                };
                // Byte j of lane r: scale / min j of row r (see quant::scale_min_k4); the 32-bit shifts
                // are masked per byte, so no bits cross between bytes.
                let hi2 = |v: __m256i| _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srli_epi32::<6>(v), m2));
                let sc_lo = _mm256_and_si256(s0, m6);
                let sc_hi = _mm256_or_si256(_mm256_and_si256(s2, m4), hi2(s0));
                let mn_lo = _mm256_and_si256(s1, m6);
                let mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32::<4>(s2), m4), hi2(s1));
                let bytes = |v: __m256i| {
                    [
                        _mm256_and_si256(v, ff),
                        _mm256_and_si256(_mm256_srli_epi32::<8>(v), ff),
                        _mm256_and_si256(_mm256_srli_epi32::<16>(v), ff),
                        _mm256_srli_epi32::<24>(v),
                    ]
                };
                let (a, c4) = (bytes(sc_lo), bytes(sc_hi));
                let sc = [a[0], a[1], a[2], a[3], c4[0], c4[1], c4[2], c4[3]];
                let mut isum = [z; C];
                for ch in 0..4 {
                    let (mut plo, mut phi) = ([z; C], [z; C]);
                    for g in 0..8 {
                        let at = 256 * ch + 32 * g;
                        // SAFETY: at + 32 <= 1024 = qs.len(); loadu needs no alignment.
                        let v = unsafe { _mm256_loadu_si256(b.qs.as_ptr().add(at).cast()) };
                        let lo = _mm256_and_si256(v, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                        for c in 0..C {
                            let x = &xs[c][i].qs;
                            let e = 64 * ch + 4 * g;
                            let bx = |e: usize| {
                                _mm256_set1_epi32(i32::from_le_bytes([
                                    x[e] as u8,
                                    x[e + 1] as u8,
                                    x[e + 2] as u8,
                                    x[e + 3] as u8,
                                ]))
                            };
                            plo[c] = $mac(plo[c], lo, bx(e));
                            phi[c] = $mac(phi[c], hi, bx(e + 32));
                        }
                    }
                    for c in 0..C {
                        let p = _mm256_add_epi32(
                            _mm256_mullo_epi32(plo[c], sc[2 * ch]),
                            _mm256_mullo_epi32(phi[c], sc[2 * ch + 1]),
                        );
                        isum[c] = _mm256_add_epi32(isum[c], p);
                    }
                }
                // Mins as i16 pairs per lane: (m0, m2), (m1, m3), (m4, m6), (m5, m7).
                let mins = [
                    _mm256_and_si256(mn_lo, lo16),
                    _mm256_and_si256(_mm256_srli_epi32::<8>(mn_lo), lo16),
                    _mm256_and_si256(mn_hi, lo16),
                    _mm256_and_si256(_mm256_srli_epi32::<8>(mn_hi), lo16),
                ];
                for c in 0..C {
                    let x = &xs[c][i];
                    // Sub-block sums of the activations (|sum| <= 32 * 128 fits i16).
                    let bs = |j: usize| (i32::from(x.bsums[2 * j]) + i32::from(x.bsums[2 * j + 1])) as u16 as u32;
                    let pair = |a: usize, b: usize| _mm256_set1_epi32((bs(a) | (bs(b) << 16)) as i32);
                    let msum = _mm256_add_epi32(
                        _mm256_add_epi32(
                            _mm256_madd_epi16(mins[0], pair(0, 2)),
                            _mm256_madd_epi16(mins[1], pair(1, 3)),
                        ),
                        _mm256_add_epi32(
                            _mm256_madd_epi16(mins[2], pair(4, 6)),
                            _mm256_madd_epi16(mins[3], pair(5, 7)),
                        ),
                    );
                    let dx = _mm256_set1_ps(x.d);
                    acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(isum[c]), acc[c]);
                    acc[c] = _mm256_fnmadd_ps(_mm256_mul_ps(dm, dx), _mm256_cvtepi32_ps(msum), acc[c]);
                }
            }
            let mut out = [[0.0f32; 8]; C];
            for c in 0..C {
                // SAFETY: out[c] is 8 writable floats; storeu needs no alignment.
                unsafe { _mm256_storeu_ps(out[c].as_mut_ptr(), acc[c]) };
            }
            out
        }

        /// See [`kernel_k`].
        ///
        /// The token proves the features this module is compiled for.
        pub(crate) fn q4_kx8<const C: usize>(_: $tok, w: &[BlockQ4Kx8], xs: [&[BlockQ8K]; C]) -> [[f32; 8]; C] {
            // SAFETY: the token (only `cpu` creates it, from the detected level) proves the features.
            unsafe { kernel_k::<C>(w, xs) }
        }

        /// `out[c][r]` = row r of the Q6_K octet `w` . activation row c. The
        /// 6-bit values are taken unsigned (no `- 32`); each sub-block's dot
        /// is corrected by `32 * bsum` before its scale multiplies it.
        #[target_feature(enable = $features)]
        fn kernel_6k<const C: usize>(w: &[BlockQ6Kx8], xs: [&[BlockQ8K]; C]) -> [[f32; 8]; C] {
            let nb = w.len();
            for x in xs.iter() {
                assert!(x.len() >= nb);
            }
            let m4 = _mm256_set1_epi8(0x0F);
            let m30 = _mm256_set1_epi8(0x30);
            let z = _mm256_setzero_si256();
            let mut acc = [_mm256_setzero_ps(); C];
            for (i, b) in w.iter().enumerate() {
                // SAFETY: `d` is 16 readable bytes; loadu needs no alignment.
                let dw = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr().cast())) };
                let mut isum = [z; C];
                for n in 0..2 {
                    for h in 0..2 {
                        // Sub-blocks 8n + h + {0, 2, 4, 6}: elements 128n + 16h + 32m + (0..16).
                        let mut p = [[z; 4]; C];
                        for g in 4 * h..4 * h + 4 {
                            // Step 8n + g: 96 bytes, inside q (16 steps of 96 = 1536 bytes).
                            let at = 96 * (8 * n + g);
                            // SAFETY: at + 96 <= 1536 = q.len(); loadu needs no alignment.
                            let (qa, qb, qh) = unsafe {
                                let p = b.q.as_ptr().add(at);
                                (
                                    _mm256_loadu_si256(p.cast()),
                                    _mm256_loadu_si256(p.add(32).cast()),
                                    _mm256_loadu_si256(p.add(64).cast()),
                                )
                            };
                            // Elements l, l + 32, l + 64, l + 96 of the half, l = 4g + (0..4).
                            let q = [
                                _mm256_or_si256(
                                    _mm256_and_si256(qa, m4),
                                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                                ),
                                _mm256_or_si256(
                                    _mm256_and_si256(qb, m4),
                                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                                ),
                                _mm256_or_si256(
                                    _mm256_and_si256(_mm256_srli_epi16::<4>(qa), m4),
                                    _mm256_and_si256(qh, m30),
                                ),
                                _mm256_or_si256(
                                    _mm256_and_si256(_mm256_srli_epi16::<4>(qb), m4),
                                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                                ),
                            ];
                            for c in 0..C {
                                let x = &xs[c][i].qs;
                                for (m, qm) in q.iter().enumerate() {
                                    let e = 128 * n + 32 * m + 4 * g;
                                    let bx = _mm256_set1_epi32(i32::from_le_bytes([
                                        x[e] as u8,
                                        x[e + 1] as u8,
                                        x[e + 2] as u8,
                                        x[e + 3] as u8,
                                    ]));
                                    p[c][m] = $mac(p[c][m], *qm, bx);
                                }
                            }
                        }
                        for m in 0..4 {
                            let k = 8 * n + h + 2 * m;
                            let sp = b.scales[8 * k..8 * k + 8].as_ptr();
                            // SAFETY: sp points at 8 readable bytes (the slice above).
                            let sc = unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(sp.cast())) };
                            for c in 0..C {
                                let off = _mm256_set1_epi32(32 * i32::from(xs[c][i].bsums[k]));
                                isum[c] =
                                    _mm256_add_epi32(isum[c], _mm256_mullo_epi32(_mm256_sub_epi32(p[c][m], off), sc));
                            }
                        }
                    }
                }
                for c in 0..C {
                    let d = _mm256_mul_ps(dw, _mm256_set1_ps(xs[c][i].d));
                    acc[c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum[c]), acc[c]);
                }
            }
            let mut out = [[0.0f32; 8]; C];
            for c in 0..C {
                // SAFETY: out[c] is 8 writable floats; storeu needs no alignment.
                unsafe { _mm256_storeu_ps(out[c].as_mut_ptr(), acc[c]) };
            }
            out
        }

        /// See [`kernel_6k`].
        ///
        /// The token proves the features this module is compiled for.
        pub(crate) fn q6_kx8<const C: usize>(_: $tok, w: &[BlockQ6Kx8], xs: [&[BlockQ8K]; C]) -> [[f32; 8]; C] {
            // SAFETY: the token (only `cpu` creates it, from the detected level) proves the features.
            unsafe { kernel_6k::<C>(w, xs) }
        }

        /// See [`kernel`].
        ///
        /// The token proves the features this module is compiled for.
        pub(crate) fn q4_0x8<const C: usize>(
            _: $tok,
            w: &[BlockQ4_0x8],
            xs: [&[BlockQ8_0]; C],
            xd: [&[f32]; C],
            sums: [&[i32]; C],
        ) -> [[f32; 8]; C] {
            // SAFETY: the token (only `cpu` creates it, from the detected level) proves the features.
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
        _mm256_add_epi32(acc, crate::arch::x86_64::avx2::mul_sum_u8i8(u, x))
    }
    octet_kernels!("avx2,fma,f16c", mac, crate::cpu::Avx2Token, crate::cpu::avx2);
}

/// AVX-512 VL + VNNI: `vpdpbusd` accumulates in one instruction.
pub(crate) mod vnni {
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn mac(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, x)
    }
    octet_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        mac,
        crate::cpu::Avx512VnniToken,
        crate::cpu::avx512_vnni
    );
}
