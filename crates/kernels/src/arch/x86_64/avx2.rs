//! AVX2 + FMA + F16C kernels. Every function here is private to the crate and
//! `unsafe`: callers (the dispatchers in `ops`) must have checked that
//! `cpu::level() >= SimdLevel::Avx2`. Each has a scalar twin in `scalar`.
//!
//! The matrix kernels are register tiles (see [`tile_kernels`]): `R` weight
//! rows against `C` activation rows, each weight block unpacked once for all
//! `C` activations and each activation block loaded once for all `R` rows.
//! Every (row, activation) pair goes through the same operations whatever
//! the tile, so matmul and matvec give bit-identical results. The same macro
//! builds the AVX-512 VNNI tiles in `avx512`, with identical integer lanes.
//!
//! Integer sums are exact, so results differ from the scalar twins only in
//! the float accumulation: K-quant kernels reduce each super-block to one
//! integer first and are bit-identical to the scalar twins; the 32-blocks
//! keep eight lanes of float partial sums.

use core::arch::x86_64::*;

use crate::cpu::Avx2Token;
use crate::half::f32_to_f16;
use crate::quant::{BlockQ4_0, BlockQ5_0, BlockQ8K, BlockQ8_0, BlockQ8_1, QK8_0, QK8_1, QK_K};

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sum of eight i32 lanes (wrapping, as exact as the lanes).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

#[target_feature(enable = "avx2,fma")]
fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let n32 = n / 32 * 32;
    let n8 = n / 8 * 8;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < n32 {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n32 <= len of both slices.
            let (va, vb) = unsafe { (_mm256_loadu_ps(pa.add(i + 8 * k)), _mm256_loadu_ps(pb.add(i + 8 * k))) };
            *acc = _mm256_fmadd_ps(va, vb, *acc);
        }
        i += 32;
    }
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= len of both slices.
        let (va, vb) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(va, vb, acc[0]);
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum(v);
    for j in n8..n {
        s += a[j] * b[j];
    }
    s
}

/// AVX2 twin of [`crate::scalar::dot_f32`].
pub(crate) fn dot_f32(_: Avx2Token, a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { dot_f32_impl(a, b) }
}

// ---------------------------------------------------------------- helpers for the tiles

/// Loads 32 bytes (no alignment needed).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load32(p: &[i8; 32]) -> __m256i {
    // SAFETY: p is 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// Unsigned bytes `a` times signed bytes `b`, summed in groups of four into
/// eight i32 lanes (lane k: bytes 4k..4k+4). With the sign trick (|w| and x
/// with w's sign) the i16 pair sums stay below 2 * 128 * 127 < 32768, so
/// this equals the VNNI `vpdpbusd` exactly.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn mul_sum_u8i8(a: __m256i, b: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
}

/// The 32 nibbles of a Q4_0-layout `qs` as bytes 0..16 in element order.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn unpack_nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: qs is 16 readable bytes; loadu has no alignment requirement.
    let q = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m);
    _mm256_set_m128i(hi, lo)
}

/// 0xFF in byte j where bit j of `bits` is set, else 0.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn bytes_from_bits(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    // Byte j takes byte j / 8 of the word...
    let shuf = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    let v = _mm256_shuffle_epi8(v, shuf);
    // ...and keeps only bit j % 8: OR in every other bit, then test for all ones.
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(v, others), _mm256_set1_epi8(-1))
}

/// The signed weights of a Q4_0 block.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn unpack_q4_0(b: &BlockQ4_0) -> __m256i {
    _mm256_sub_epi8(unpack_nibbles(&b.qs), _mm256_set1_epi8(8))
}

/// The signed weights of a Q5_0 block (q - 16).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn unpack_q5_0(b: &BlockQ5_0) -> __m256i {
    // With the fifth bit set the nibble already is q - 16; without it, the
    // nibble with the top four bits set is (q - 16) as a signed byte.
    let hi = bytes_from_bits(u32::from_le_bytes(b.qh));
    _mm256_or_si256(unpack_nibbles(&b.qs), _mm256_andnot_si256(hi, _mm256_set1_epi8(0xF0u8 as i8)))
}

/// The 32 signed values of an IQ4_NL-layout `qs` (the table entries of its
/// nibbles) in element order.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn unpack_iq4nl(qs: &[u8; 16]) -> __m256i {
    // SAFETY: the table is 16 readable bytes; loadu has no alignment requirement.
    let t = unsafe { _mm_loadu_si128(crate::quant::KVALUES_IQ4NL.as_ptr().cast()) };
    _mm256_shuffle_epi8(_mm256_set_m128i(t, t), unpack_nibbles(qs))
}

/// Sum over the eight sub-blocks of m_j * (bsums[2j] + bsums[2j + 1]).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn mins_dot_bsums(mins: &[u8; 8], b: &BlockQ8K) -> i32 {
    // SAFETY: bsums is 32 readable bytes, mins 8; loadu has no alignment requirement.
    let (s, m) = unsafe { (_mm256_loadu_si256(b.bsums.as_ptr().cast()), _mm_loadl_epi64(mins.as_ptr().cast())) };
    // Pairwise sums fit i16 (|bsum| <= 16 * 128).
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let p = _mm_madd_epi16(_mm_cvtepu8_epi16(m), pairs);
    let p = _mm_add_epi32(p, _mm_shuffle_epi32::<0b01_00_11_10>(p));
    let p = _mm_add_epi32(p, _mm_shuffle_epi32::<0b10_11_00_01>(p));
    _mm_cvtsi128_si32(p)
}

/// The eight scales and eight mins of a Q4_K/Q5_K block (as
/// [`scale_min_k4`], with word operations: sub-blocks 0..4 keep their low six
/// bits in bytes 0..8; 4..8 take four bits from bytes 8..12 and two from the
/// top of bytes 0..8).
#[inline]
pub(crate) fn scales_mins(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let w = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (w0, w1, w2) = (w(0), w(1), w(2));
    let sc_lo = w0 & LOW6;
    let sc_hi = (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4);
    let m_lo = w1 & LOW6;
    let m_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4);
    let join = |lo: u32, hi: u32| {
        let (a, b) = (lo.to_le_bytes(), hi.to_le_bytes());
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    };
    (join(sc_lo, sc_hi), join(m_lo, m_hi))
}

/// Scales (2p, 2p + 1) of a Q6_K block spread over 8 i16 lanes each.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn q6_scale_pair(scales: __m128i, p: usize) -> __m256i {
    let a = (2 * p) as i8;
    let b = a + 1;
    let mask = _mm_setr_epi8(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, mask))
}

/// Loads 32 bytes at `p + off`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load_at<T>(p: &[T], off: usize) -> __m256i {
    assert!(off + 32 <= core::mem::size_of_val(p));
    // SAFETY: off + 32 <= the slice's size in bytes (checked); loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast::<u8>().add(off).cast()) }
}

/// Register-tile kernels: `R` weight rows against `C` activation rows, one
/// accumulator per (row, activation) pair. Each pair goes through the same
/// operations whatever `R` and `C` are, so any tiling gives the same bits;
/// and `$mulsum` (maddubs + madd, or VNNI) gives the same integer lanes, so
/// every x86 level gives the same bits too.
///
/// - 32-blocks: per block, lane k of the pair's vector gets the integer sum of
///   products 4k..4k+4, then `acc = fma(dw * dx, lanes, acc)`; a horizontal
///   sum at the end.
/// - K-quants: each super-block is reduced to one exact integer (as the
///   scalar twin), so they are bit-identical to `scalar`.
/// - Floats: eight lanes of fma over the row, a horizontal sum, then the tail
///   in order.
macro_rules! tile_kernels {
    ($feat:literal, $mulsum:path, $tok:ty, $detect:path) => {
        use core::arch::x86_64::*;

        /// This level's capability token, from `cpu` (for the tests).
        #[cfg(test)]
        pub(crate) fn token() -> Option<$tok> {
            $detect()
        }

        use crate::arch::x86_64::avx2::{
            bytes_from_bits, hsum, hsum_i32, load32, load_at, mins_dot_bsums, q6_scale_pair, scales_mins, unpack_iq4nl,
            unpack_nibbles, unpack_q4_0, unpack_q5_0,
        };
        use crate::half::{bf16_to_f32, f16_to_f32};
        use crate::quant::{
            BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
            BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
        };

        /// F16 bits to f32 with F16C (exact). The half is broadcast first:
        /// inserting it into some register would make the conversion wait for
        /// whatever last wrote that register (often an accumulator).
        #[inline]
        #[target_feature(enable = $feat)]
        fn f16(h: u16) -> f32 {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h as i16)))
        }

        /// F16 bits to f32, broadcast to eight lanes.
        #[inline]
        #[target_feature(enable = $feat)]
        fn f16x8(h: u16) -> __m256 {
            _mm256_cvtph_ps(_mm_set1_epi16(h as i16))
        }

        macro_rules! tile32 {
            ($ws:expr, $xs:expr, $unpack:expr) => {{
                let (ws, xs) = ($ws, $xs);
                let nb = if R > 0 { ws[0].len() } else { 0 };
                for w in ws.iter() {
                    assert_eq!(w.len(), nb);
                }
                for x in xs.iter() {
                    assert!(x.len() >= nb);
                }
                // Two accumulators per pair, for even and odd blocks, so that a
                // single row is not bound by the latency of one fma chain.
                let mut acc = [[[_mm256_setzero_ps(); 2]; C]; R];
                let mut i = 0;
                while i < nb {
                    let half = (nb - i).min(2);
                    for k in 0..2 {
                        if k >= half {
                            break;
                        }
                        let mut wv = [_mm256_setzero_si256(); R];
                        let mut aw = [_mm256_setzero_si256(); R];
                        let mut dw = [_mm256_setzero_ps(); R];
                        for r in 0..R {
                            let b = &ws[r][i + k];
                            let v: __m256i = $unpack(b);
                            wv[r] = v;
                            aw[r] = _mm256_sign_epi8(v, v);
                            dw[r] = f16x8(b.d);
                        }
                        for c in 0..C {
                            let b: &BlockQ8_0 = &xs[c][i + k];
                            let xv = load32(&b.qs);
                            let dx = f16x8(b.d);
                            for r in 0..R {
                                let p = $mulsum(aw[r], _mm256_sign_epi8(xv, wv[r]));
                                acc[r][c][k] =
                                    _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dx), _mm256_cvtepi32_ps(p), acc[r][c][k]);
                            }
                        }
                    }
                    i += 2;
                }
                let mut out = [[0.0f32; C]; R];
                for r in 0..R {
                    for c in 0..C {
                        out[r][c] = hsum(_mm256_add_ps(acc[r][c][0], acc[r][c][1]));
                    }
                }
                out
            }};
        }

        #[target_feature(enable = $feat)]
        fn q8_0_impl<const R: usize, const C: usize>(ws: [&[BlockQ8_0]; R], xs: [&[BlockQ8_0]; C]) -> [[f32; C]; R] {
            tile32!(ws, xs, |b: &BlockQ8_0| load32(&b.qs))
        }

        #[target_feature(enable = $feat)]
        fn q4_0_impl<const R: usize, const C: usize>(ws: [&[BlockQ4_0]; R], xs: [&[BlockQ8_0]; C]) -> [[f32; C]; R] {
            tile32!(ws, xs, |b: &BlockQ4_0| unpack_q4_0(b))
        }

        #[target_feature(enable = $feat)]
        fn iq4_nl_impl<const R: usize, const C: usize>(ws: [&[BlockIQ4NL]; R], xs: [&[BlockQ8_0]; C]) -> [[f32; C]; R] {
            tile32!(ws, xs, |b: &BlockIQ4NL| unpack_iq4nl(&b.qs))
        }

        #[target_feature(enable = $feat)]
        fn q5_0_impl<const R: usize, const C: usize>(ws: [&[BlockQ5_0]; R], xs: [&[BlockQ8_0]; C]) -> [[f32; C]; R] {
            tile32!(ws, xs, |b: &BlockQ5_0| unpack_q5_0(b))
        }

        /// Q4_1 or Q5_1 against Q8_1 in ggml's order (`ggml_vec_dot_q4_1_q8_1`,
        /// `_q5_1_q8_1` for AVX2): per block, the unsigned weights times the
        /// activations in eight integer lanes, `acc = fma(d * d8, lanes, acc)`
        /// in one accumulator, and `summs += m * s8` in a float; at the end
        /// hsum(acc) + summs. The same bits as llama.cpp for the same blocks.
        macro_rules! tile_min {
            ($ws:expr, $xs:expr, $unpack:expr) => {{
                let (ws, xs) = ($ws, $xs);
                let nb = if R > 0 { ws[0].len() } else { 0 };
                for w in ws.iter() {
                    assert_eq!(w.len(), nb);
                }
                for x in xs.iter() {
                    assert!(x.len() >= nb);
                }
                let mut acc = [[_mm256_setzero_ps(); C]; R];
                let mut summs = [[0.0f32; C]; R];
                for i in 0..nb {
                    let mut wv = [_mm256_setzero_si256(); R];
                    let mut dw = [_mm256_setzero_ps(); R];
                    let mut mw = [0.0f32; R];
                    for r in 0..R {
                        let b = &ws[r][i];
                        wv[r] = $unpack(b);
                        dw[r] = f16x8(b.d);
                        mw[r] = f16(b.m);
                    }
                    for c in 0..C {
                        let b: &BlockQ8_1 = &xs[c][i];
                        let xv = load32(&b.qs);
                        let dx = f16x8(b.d);
                        let sx = f16(b.s);
                        for r in 0..R {
                            summs[r][c] += mw[r] * sx;
                            let p = $mulsum(wv[r], xv);
                            acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dx), _mm256_cvtepi32_ps(p), acc[r][c]);
                        }
                    }
                }
                let mut out = [[0.0f32; C]; R];
                for r in 0..R {
                    for c in 0..C {
                        out[r][c] = hsum(acc[r][c]) + summs[r][c];
                    }
                }
                out
            }};
        }

        #[target_feature(enable = $feat)]
        fn q4_1_impl<const R: usize, const C: usize>(ws: [&[BlockQ4_1]; R], xs: [&[BlockQ8_1]; C]) -> [[f32; C]; R] {
            tile_min!(ws, xs, |b: &BlockQ4_1| unpack_nibbles(&b.qs))
        }

        #[target_feature(enable = $feat)]
        fn q5_1_impl<const R: usize, const C: usize>(ws: [&[BlockQ5_1]; R], xs: [&[BlockQ8_1]; C]) -> [[f32; C]; R] {
            tile_min!(ws, xs, |b: &BlockQ5_1| {
                let hi = bytes_from_bits(u32::from_le_bytes(b.qh));
                _mm256_or_si256(unpack_nibbles(&b.qs), _mm256_and_si256(hi, _mm256_set1_epi8(0x10)))
            })
        }

        /// Q4_K (`five` = false) or Q5_K super-block sums for a tile.
        #[inline]
        #[target_feature(enable = $feat)]
        fn kq45_tile<const R: usize, const C: usize>(
            qs: [&[u8; 128]; R],
            qh: [Option<&[u8; 32]>; R],
            sc: &[[u8; 8]; R],
            ys: [&BlockQ8K; C],
        ) -> [[i32; C]; R] {
            let m4 = _mm256_set1_epi8(0x0F);
            let one = _mm256_set1_epi8(1);
            let mut sumi = [[_mm256_setzero_si256(); C]; R];
            for ch in 0..4 {
                let mut lo = [_mm256_setzero_si256(); R];
                let mut hi = [_mm256_setzero_si256(); R];
                let mut s0 = [_mm256_setzero_si256(); R];
                let mut s1 = [_mm256_setzero_si256(); R];
                for r in 0..R {
                    let q = load_at(qs[r], 32 * ch);
                    lo[r] = _mm256_and_si256(q, m4);
                    hi[r] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    if let Some(h) = qh[r] {
                        let h = load_at(h, 0);
                        let h0 = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * ch as i32)), one);
                        let h1 = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * ch as i32 + 1)), one);
                        lo[r] = _mm256_or_si256(lo[r], _mm256_slli_epi16::<4>(h0));
                        hi[r] = _mm256_or_si256(hi[r], _mm256_slli_epi16::<4>(h1));
                    }
                    s0[r] = _mm256_set1_epi16(i16::from(sc[r][2 * ch]));
                    s1[r] = _mm256_set1_epi16(i16::from(sc[r][2 * ch + 1]));
                }
                for c in 0..C {
                    let y0 = load_at(&ys[c].qs, 64 * ch);
                    let y1 = load_at(&ys[c].qs, 64 * ch + 32);
                    for r in 0..R {
                        let p0 = _mm256_madd_epi16(s0[r], _mm256_maddubs_epi16(lo[r], y0));
                        let p1 = _mm256_madd_epi16(s1[r], _mm256_maddubs_epi16(hi[r], y1));
                        sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_add_epi32(p0, p1));
                    }
                }
            }
            let mut out = [[0i32; C]; R];
            for r in 0..R {
                for c in 0..C {
                    out[r][c] = hsum_i32(sumi[r][c]);
                }
            }
            out
        }

        macro_rules! tile_k45 {
            ($ws:expr, $xs:expr, |$b:ident| $qh:expr) => {{
                let (ws, xs) = ($ws, $xs);
                let nb = if R > 0 { ws[0].len() } else { 0 };
                for w in ws.iter() {
                    assert_eq!(w.len(), nb);
                }
                for x in xs.iter() {
                    assert!(x.len() >= nb);
                }
                let mut s = [[0.0f32; C]; R];
                for i in 0..nb {
                    let mut sc = [[0u8; 8]; R];
                    let mut m = [[0u8; 8]; R];
                    for r in 0..R {
                        (sc[r], m[r]) = scales_mins(&ws[r][i].scales);
                    }
                    let ys: [&BlockQ8K; C] = core::array::from_fn(|c| &xs[c][i]);
                    let sumi = kq45_tile::<R, C>(
                        core::array::from_fn(|r| &ws[r][i].qs),
                        core::array::from_fn(|r| {
                            let $b = &ws[r][i];
                            $qh
                        }),
                        &sc,
                        ys,
                    );
                    for r in 0..R {
                        let a = &ws[r][i];
                        for c in 0..C {
                            let d = f16(a.d) * ys[c].d;
                            let dmin = f16(a.dmin) * ys[c].d;
                            s[r][c] += d * sumi[r][c] as f32 - dmin * mins_dot_bsums(&m[r], ys[c]) as f32;
                        }
                    }
                }
                s
            }};
        }

        #[target_feature(enable = $feat)]
        fn q4_k_impl<const R: usize, const C: usize>(ws: [&[BlockQ4K]; R], xs: [&[BlockQ8K]; C]) -> [[f32; C]; R] {
            tile_k45!(ws, xs, |b| {
                let _ = b;
                None
            })
        }

        #[target_feature(enable = $feat)]
        fn q5_k_impl<const R: usize, const C: usize>(ws: [&[BlockQ5K]; R], xs: [&[BlockQ8K]; C]) -> [[f32; C]; R] {
            tile_k45!(ws, xs, |b| Some(&b.qh))
        }

        /// Q2_K, Q3_K and IQ4_XS: each super-block is reduced to one exact
        /// integer, as the scalar twins do, from eight groups of 32: `$unpack`
        /// gives a group's signed weights and its scales per 16-bit lane
        /// (lanes 0..8 for elements 0..16, lanes 8..16 for 16..32), and `$finish`
        /// turns (block, activations, integer) into the super-block's float.
        macro_rules! tile_kg {
            ($ws:expr, $xs:expr, $unpack:expr, $finish:expr) => {{
                let (ws, xs) = ($ws, $xs);
                let nb = if R > 0 { ws[0].len() } else { 0 };
                for w in ws.iter() {
                    assert_eq!(w.len(), nb);
                }
                for x in xs.iter() {
                    assert!(x.len() >= nb);
                }
                let mut s = [[0.0f32; C]; R];
                for i in 0..nb {
                    let mut acc = [[_mm256_setzero_si256(); C]; R];
                    for g in 0..8 {
                        let mut wv = [_mm256_setzero_si256(); R];
                        let mut aw = [_mm256_setzero_si256(); R];
                        let mut sv = [_mm256_setzero_si256(); R];
                        for r in 0..R {
                            let (w, sc): (__m256i, __m256i) = $unpack(&ws[r][i], g);
                            wv[r] = w;
                            aw[r] = _mm256_sign_epi8(w, w);
                            sv[r] = sc;
                        }
                        for c in 0..C {
                            let y = load_at(&xs[c][i].qs, 32 * g);
                            for r in 0..R {
                                // Pairs of products in 16 bits (at most 2 * 127 * 128: no
                                // saturation), then pairs times the 16-bit scales in 32 bits:
                                // the same integer as summing first and multiplying after,
                                // without the slow 32-bit multiply on the accumulator's path.
                                let p16 = _mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(y, wv[r]));
                                acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p16, sv[r]));
                            }
                        }
                    }
                    for r in 0..R {
                        for c in 0..C {
                            s[r][c] += $finish(&ws[r][i], &xs[c][i], hsum_i32(acc[r][c]));
                        }
                    }
                }
                s
            }};
        }

        /// Scales a and b (16-bit) over 16-bit lanes 0..8 and 8..16.
        #[inline]
        #[target_feature(enable = $feat)]
        fn scale_pair(a: i32, b: i32) -> __m256i {
            let (a, b) = (a as i16, b as i16);
            _mm256_setr_epi16(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b)
        }

        /// The 2-bit values of group g (0..8) of a Q2_K/Q3_K `qs`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn k2_group(qs: &[u8; 64], g: usize) -> __m256i {
            let q = load_at(qs, 32 * (g / 4));
            _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (g % 4) as i32)), _mm256_set1_epi8(3))
        }

        #[target_feature(enable = $feat)]
        fn q2_k_impl<const R: usize, const C: usize>(ws: [&[BlockQ2K]; R], xs: [&[BlockQ8K]; C]) -> [[f32; C]; R] {
            tile_kg!(
                ws,
                xs,
                |b: &BlockQ2K, g: usize| {
                    let sc = |k: usize| i32::from(b.scales[k] & 0xF);
                    (k2_group(&b.qs, g), scale_pair(sc(2 * g), sc(2 * g + 1)))
                },
                |a: &BlockQ2K, y: &BlockQ8K, isum: i32| {
                    let mut summs = 0i32;
                    for (&sc, &bs) in a.scales.iter().zip(&y.bsums) {
                        summs += i32::from(sc >> 4) * i32::from(bs);
                    }
                    let dall = y.d * f16(a.d);
                    let dmin = y.d * f16(a.dmin);
                    dall * isum as f32 - dmin * summs as f32
                }
            )
        }

        #[target_feature(enable = $feat)]
        fn q3_k_impl<const R: usize, const C: usize>(ws: [&[BlockQ3K]; R], xs: [&[BlockQ8K]; C]) -> [[f32; C]; R] {
            tile_kg!(
                ws,
                xs,
                |b: &BlockQ3K, g: usize| {
                    // q = low | (h << 2), minus 4: the high bit set means no offset.
                    let h = _mm256_srl_epi16(load_at(&b.hmask, 0), _mm_cvtsi32_si128(g as i32));
                    let h = _mm256_slli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(1)));
                    let w = _mm256_sub_epi8(_mm256_or_si256(k2_group(&b.qs, g), h), _mm256_set1_epi8(4));
                    let sc = |k: usize| i32::from(crate::quant::q3_k_scale(&b.scales, k)) - 32;
                    (w, scale_pair(sc(2 * g), sc(2 * g + 1)))
                },
                |a: &BlockQ3K, y: &BlockQ8K, isum: i32| f16(a.d) * y.d * isum as f32
            )
        }

        #[target_feature(enable = $feat)]
        fn iq4_xs_impl<const R: usize, const C: usize>(ws: [&[BlockIQ4XS]; R], xs: [&[BlockQ8K]; C]) -> [[f32; C]; R] {
            tile_kg!(
                ws,
                xs,
                |b: &BlockIQ4XS, g: usize| {
                    let qs: &[u8; 16] = b.qs[16 * g..16 * g + 16].try_into().expect("16 bytes");
                    let sc = i32::from(crate::quant::iq4_xs_scale(b, g)) - 32;
                    (unpack_iq4nl(qs), _mm256_set1_epi16(sc as i16))
                },
                |a: &BlockIQ4XS, y: &BlockQ8K, isum: i32| f16(a.d) * y.d * isum as f32
            )
        }

        #[target_feature(enable = $feat)]
        fn q6_k_impl<const R: usize, const C: usize>(ws: [&[BlockQ6K]; R], xs: [&[BlockQ8K]; C]) -> [[f32; C]; R] {
            let nb = if R > 0 { ws[0].len() } else { 0 };
            for w in ws.iter() {
                assert_eq!(w.len(), nb);
            }
            for x in xs.iter() {
                assert!(x.len() >= nb);
            }
            let m4 = _mm256_set1_epi8(0x0F);
            let m2 = _mm256_set1_epi8(0x03);
            let m32 = _mm256_set1_epi8(32);
            let mut s = [[0.0f32; C]; R];
            for i in 0..nb {
                let mut sumi = [[_mm256_setzero_si256(); C]; R];
                let scales: [__m128i; R] = core::array::from_fn(|r| {
                    // SAFETY: scales is 16 readable bytes.
                    unsafe { _mm_loadu_si128(ws[r][i].scales.as_ptr().cast()) }
                });
                for h in 0..2 {
                    for g in 0..4 {
                        let mut q = [_mm256_setzero_si256(); R];
                        let mut sc = [_mm256_setzero_si256(); R];
                        for r in 0..R {
                            let a = &ws[r][i];
                            // Group g of half h: low nibbles of ql[64h + 32(g & 1)..] (high nibbles
                            // for g >= 2), high bits 2g..2g+2 of qh[32h..].
                            let l = load_at(&a.ql, 64 * h + 32 * (g & 1));
                            let l = if g < 2 { l } else { _mm256_srli_epi16::<4>(l) };
                            let hb = load_at(&a.qh, 32 * h);
                            let hb = _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * g as i32));
                            q[r] = _mm256_or_si256(
                                _mm256_and_si256(l, m4),
                                _mm256_slli_epi16::<4>(_mm256_and_si256(hb, m2)),
                            );
                            sc[r] = q6_scale_pair(scales[r], 4 * h + g);
                        }
                        for c in 0..C {
                            let y = load_at(&xs[c][i].qs, 128 * h + 32 * g);
                            let ys = _mm256_maddubs_epi16(m32, y);
                            for r in 0..R {
                                // (q - 32) . y = q . y - 32 * sum(y), both exact in i16 per pair.
                                let p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[r], y), ys);
                                sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_madd_epi16(sc[r], p));
                            }
                        }
                    }
                }
                for r in 0..R {
                    for c in 0..C {
                        s[r][c] += f16(ws[r][i].d) * xs[c][i].d * hsum_i32(sumi[r][c]) as f32;
                    }
                }
            }
            s
        }

        macro_rules! tile_float {
            ($ws:expr, $xs:expr, $load:expr, $scalar:expr) => {{
                let (ws, xs) = ($ws, $xs);
                let n = if R > 0 { ws[0].len() } else { 0 };
                for w in ws.iter() {
                    assert_eq!(w.len(), n);
                }
                for x in xs.iter() {
                    assert!(x.len() >= n);
                }
                let n8 = n / 8 * 8;
                // Two accumulators per pair, for even and odd chunks of eight.
                let mut acc = [[[_mm256_setzero_ps(); 2]; C]; R];
                let mut k0 = 0;
                while k0 < n8 {
                    for h in 0..2 {
                        let k = k0 + 8 * h;
                        if k >= n8 {
                            break;
                        }
                        let wv: [__m256; R] = core::array::from_fn(|r| $load(ws[r], k));
                        for c in 0..C {
                            // SAFETY: k + 8 <= n8 <= xs[c].len().
                            let xv = unsafe { _mm256_loadu_ps(xs[c].as_ptr().add(k)) };
                            for r in 0..R {
                                acc[r][c][h] = _mm256_fmadd_ps(wv[r], xv, acc[r][c][h]);
                            }
                        }
                    }
                    k0 += 16;
                }
                let mut out = [[0.0f32; C]; R];
                for r in 0..R {
                    for c in 0..C {
                        let mut s = hsum(_mm256_add_ps(acc[r][c][0], acc[r][c][1]));
                        for j in n8..n {
                            s += $scalar(ws[r][j]) * xs[c][j];
                        }
                        out[r][c] = s;
                    }
                }
                out
            }};
        }

        #[target_feature(enable = $feat)]
        fn f32_impl<const R: usize, const C: usize>(ws: [&[f32]; R], xs: [&[f32]; C]) -> [[f32; C]; R] {
            tile_float!(
                ws,
                xs,
                |w: &[f32], k: usize| {
                    // SAFETY: k + 8 <= n8 <= the row's length.
                    unsafe { _mm256_loadu_ps(w.as_ptr().add(k)) }
                },
                |v: f32| v
            )
        }

        #[target_feature(enable = $feat)]
        fn f16_impl<const R: usize, const C: usize>(ws: [&[u16]; R], xs: [&[f32]; C]) -> [[f32; C]; R] {
            tile_float!(
                ws,
                xs,
                |w: &[u16], k: usize| {
                    // SAFETY: k + 8 <= n8 <= the row's length.
                    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(w.as_ptr().add(k).cast()) })
                },
                f16_to_f32
            )
        }

        #[target_feature(enable = $feat)]
        fn bf16_impl<const R: usize, const C: usize>(ws: [&[u16]; R], xs: [&[f32]; C]) -> [[f32; C]; R] {
            tile_float!(
                ws,
                xs,
                |w: &[u16], k: usize| {
                    // SAFETY: k + 8 <= n8 <= the row's length.
                    let h = unsafe { _mm_loadu_si128(w.as_ptr().add(k).cast()) };
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
                },
                bf16_to_f32
            )
        }

        macro_rules! wrap {
            ($name:ident, $impl:ident, $w:ty, $x:ty) => {
                /// The tile kernel: `R` weight rows (whole blocks, equal lengths)
                /// against `C` activation rows; `out[r][c]` = row r . activation c.
                ///
                /// The token proves the target features this module is compiled for.
                pub(crate) fn $name<const R: usize, const C: usize>(
                    _: $tok,
                    ws: [&[$w]; R],
                    xs: [&[$x]; C],
                ) -> [[f32; C]; R] {
                    // SAFETY: the token (only `cpu` creates it, from the detected level) proves the target
                    // features this module is compiled for are present and enabled.
                    unsafe { $impl::<R, C>(ws, xs) }
                }
            };
        }
        wrap!(tile_q8_0, q8_0_impl, BlockQ8_0, BlockQ8_0);
        wrap!(tile_q4_0, q4_0_impl, BlockQ4_0, BlockQ8_0);
        wrap!(tile_iq4_nl, iq4_nl_impl, BlockIQ4NL, BlockQ8_0);
        wrap!(tile_q4_1, q4_1_impl, BlockQ4_1, BlockQ8_1);
        wrap!(tile_q5_0, q5_0_impl, BlockQ5_0, BlockQ8_0);
        wrap!(tile_q5_1, q5_1_impl, BlockQ5_1, BlockQ8_1);
        wrap!(tile_q2_k, q2_k_impl, BlockQ2K, BlockQ8K);
        wrap!(tile_q3_k, q3_k_impl, BlockQ3K, BlockQ8K);
        wrap!(tile_iq4_xs, iq4_xs_impl, BlockIQ4XS, BlockQ8K);
        wrap!(tile_q4_k, q4_k_impl, BlockQ4K, BlockQ8K);
        wrap!(tile_q5_k, q5_k_impl, BlockQ5K, BlockQ8K);
        wrap!(tile_q6_k, q6_k_impl, BlockQ6K, BlockQ8K);
        wrap!(tile_f32, f32_impl, f32, f32);
        wrap!(tile_f16, f16_impl, u16, f32);
        wrap!(tile_bf16, bf16_impl, u16, f32);
    };
}
pub(crate) use tile_kernels;

/// The tile kernels compiled for AVX2 + FMA + F16C.
pub(crate) mod tiles {
    super::tile_kernels!(
        "avx2,fma,f16c",
        crate::arch::x86_64::avx2::mul_sum_u8i8,
        crate::cpu::Avx2Token,
        crate::cpu::avx2
    );
}

// ---------------------------------------------------------------- activation quantizers

/// Packs 32 i32 lanes (each in -128..=127) into 32 bytes in order.
#[inline]
#[target_feature(enable = "avx2")]
fn pack_i32x32(v: [__m256i; 4], out: &mut [i8; 32]) {
    // packs works within 128-bit halves: fix the order with a lane permute.
    let a = _mm256_packs_epi32(v[0], v[1]);
    let b = _mm256_packs_epi32(v[2], v[3]);
    let p = _mm256_packs_epi16(a, b);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: out is 32 writable bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), p) }
}

#[target_feature(enable = "avx2,fma")]
fn quantize_row_q8_0_impl(x: &[f32], out: &mut [BlockQ8_0]) {
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK8_0)) {
        // SAFETY: xs has 32 floats.
        let v: [__m256; 4] = core::array::from_fn(|k| unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * k)) });
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vk in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vk));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.d = f32_to_f16(d);
        let idv = _mm256_set1_ps(id);
        let q: [__m256i; 4] = core::array::from_fn(|k| {
            // round half away from zero, as quant::round_away.
            let s = _mm256_mul_ps(v[k], idv);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(s);
            let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(s, t));
            let bump =
                _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), _mm256_or_ps(_mm256_and_ps(s, sign), one));
            _mm256_cvtps_epi32(_mm256_add_ps(t, bump))
        });
        pack_i32x32(q, &mut blk.qs);
    }
}

/// AVX2 twin of [`crate::quant::quantize_row_q8_0`] (bit-identical for finite input).
pub(crate) fn quantize_row_q8_0(_: Avx2Token, x: &[f32], out: &mut [BlockQ8_0]) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { quantize_row_q8_0_impl(x, out) }
}

#[target_feature(enable = "avx2,fma")]
fn quantize_row_q8_1_impl(x: &[f32], out: &mut [BlockQ8_1]) {
    let sign = _mm256_set1_ps(-0.0);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK8_1)) {
        // SAFETY: xs has 32 floats.
        let v: [__m256; 4] = core::array::from_fn(|k| unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * k)) });
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vk in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vk));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        // cvtps rounds to nearest even (the default MXCSR mode), as nearest_int.
        let q: [__m256i; 4] = core::array::from_fn(|k| _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id)));
        let sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        pack_i32x32(q, &mut blk.qs);
        blk.d = f32_to_f16(d);
        blk.s = f32_to_f16(d * sum as f32);
    }
}

/// AVX2 twin of [`crate::quant::quantize_row_q8_1`] (bit-identical for finite input).
pub(crate) fn quantize_row_q8_1(_: Avx2Token, x: &[f32], out: &mut [BlockQ8_1]) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { quantize_row_q8_1_impl(x, out) }
}

#[target_feature(enable = "avx2,fma")]
fn quantize_row_q8_k_impl(x: &[f32], out: &mut [BlockQ8K]) {
    let sign = _mm256_set1_ps(-0.0);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut m = _mm256_setzero_ps();
        for k in 0..32 {
            // SAFETY: 8k + 8 <= 256 floats of xs.
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * k)) }));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        if amax == 0.0 {
            *blk = BlockQ8K::default();
            continue;
        }
        // The signed value: the first one of largest magnitude, as the reference.
        let max = xs.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let iv = _mm256_set1_ps(iscale);
        let lim = _mm256_set1_epi32(127);
        for (g, out) in blk.qs.chunks_exact_mut(32).enumerate() {
            let q: [__m256i; 4] = core::array::from_fn(|k| {
                // SAFETY: 32g + 8k + 8 <= 256 floats of xs.
                let v = unsafe { _mm256_loadu_ps(xs.as_ptr().add(32 * g + 8 * k)) };
                // cvtps rounds to nearest even (the default MXCSR mode), as nearest_int.
                _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(iv, v)), lim)
            });
            let out: &mut [i8; 32] = out.try_into().expect("32-byte chunk");
            pack_i32x32(q, out);
        }
        crate::quant::fill_bsums(blk);
        blk.d = 1.0 / iscale;
    }
}

/// AVX2 twin of [`crate::quant::quantize_row_q8_k`] (bit-identical for finite input).
pub(crate) fn quantize_row_q8_k(_: Avx2Token, x: &[f32], out: &mut [BlockQ8K]) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { quantize_row_q8_k_impl(x, out) }
}

// ---------------------------------------------------------------- element-wise

/// e^x for eight lanes: the operations of `ops::exp`, lane by lane (no fused
/// multiply-adds), so the bits are the same.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    use crate::math::{EXP_P, LN2_HI, LN2_LO};
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    let xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0)), _mm256_set1_ps(89.0));
    let t = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(core::f32::consts::LOG2_E)), _mm256_set1_ps(0.5));
    let n = _mm256_floor_ps(t);
    let r = _mm256_sub_ps(
        _mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI))),
        _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO)),
    );
    let r2 = _mm256_mul_ps(r, r);
    let mut p = _mm256_set1_ps(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, r2), r), _mm256_set1_ps(1.0));
    let ni = _mm256_cvtps_epi32(n);
    let n1 = _mm256_srai_epi32::<1>(ni);
    let n2 = _mm256_sub_epi32(ni, n1);
    let bias = _mm256_set1_epi32(127);
    let p1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
    let p2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
    let e = _mm256_mul_ps(_mm256_mul_ps(y, p1), p2);
    _mm256_blendv_ps(e, x, nan)
}

#[target_feature(enable = "avx2,fma")]
fn softmax_impl(x: &mut [f32]) {
    let n = x.len();
    let n8 = n / 8 * 8;
    let p = x.as_mut_ptr();
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= x.len().
        m = _mm256_max_ps(m, unsafe { _mm256_loadu_ps(p.add(i)) });
        i += 8;
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: lanes is 8 writable floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    // The max is exact whatever the order; NaNs are not expected here.
    let mut max = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for &v in &x[n8..] {
        max = max.max(v);
    }
    let mv = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= x.len().
        unsafe {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
            _mm256_storeu_ps(p.add(i), e);
            sum = _mm256_add_ps(sum, e);
        }
        i += 8;
    }
    let mut s = hsum(sum);
    for v in &mut x[n8..] {
        *v = crate::math::exp(*v - max);
        s += *v;
    }
    let inv = 1.0 / s;
    let iv = _mm256_set1_ps(inv);
    i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= x.len().
        unsafe { _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), iv)) };
        i += 8;
    }
    for v in &mut x[n8..] {
        *v *= inv;
    }
}

/// AVX2 twin of [`crate::scalar::softmax`] (bit-identical).
pub(crate) fn softmax(_: Avx2Token, x: &mut [f32]) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { softmax_impl(x) }
}

#[target_feature(enable = "avx2,fma")]
fn swiglu_impl(h: &mut [f32], u: &[f32]) {
    let n = h.len().min(u.len());
    let n8 = n / 8 * 8;
    let (ph, pu) = (h.as_mut_ptr(), u.as_ptr());
    let one = _mm256_set1_ps(1.0);
    let neg = _mm256_set1_ps(-0.0);
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= len of both slices.
        unsafe {
            let x = _mm256_loadu_ps(ph.add(i));
            let s = _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_xor_ps(x, neg))));
            _mm256_storeu_ps(ph.add(i), _mm256_mul_ps(s, _mm256_loadu_ps(pu.add(i))));
        }
        i += 8;
    }
    for j in n8..n {
        h[j] = crate::math::silu(h[j]) * u[j];
    }
}

#[target_feature(enable = "avx2,fma")]
fn scale_mul_impl(out: &mut [f32], x: &[f32], s: f32, w: &[f32]) {
    let n = out.len().min(x.len()).min(w.len());
    let n8 = n / 8 * 8;
    let vs = _mm256_set1_ps(s);
    let (po, px, pw) = (out.as_mut_ptr(), x.as_ptr(), w.as_ptr());
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= the length of all three slices.
        unsafe {
            let v = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(px.add(i)), vs), _mm256_loadu_ps(pw.add(i)));
            _mm256_storeu_ps(po.add(i), v);
        }
        i += 8;
    }
    for j in n8..n {
        out[j] = x[j] * s * w[j];
    }
}

/// AVX2 twin of [`crate::scalar::scale_mul`] (bit-identical).
pub(crate) fn scale_mul(_: Avx2Token, out: &mut [f32], x: &[f32], s: f32, w: &[f32]) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { scale_mul_impl(out, x, s, w) }
}

#[target_feature(enable = "avx2,fma")]
fn geglu_impl(h: &mut [f32], u: Option<&[f32]>) {
    use crate::math::{GELU_C, GELU_S};
    let n = h.len();
    let n8 = n / 8 * 8;
    let ph = h.as_mut_ptr();
    let (one, two, half) = (_mm256_set1_ps(1.0), _mm256_set1_ps(2.0), _mm256_set1_ps(0.5));
    let (vs, vc) = (_mm256_set1_ps(GELU_S), _mm256_set1_ps(GELU_C));
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= h.len(), and u (when given) is at least as long as h (checked by ops::geglu).
        unsafe {
            let x = _mm256_loadu_ps(ph.add(i));
            // The scalar form's order: ((c * x) * x) * x, then x + that, then s * (...).
            let cube = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(vc, x), x), x);
            let y = _mm256_mul_ps(vs, _mm256_add_ps(x, cube));
            let e = exp8(_mm256_mul_ps(two, y));
            let t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one)));
            let mut g = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, t));
            if let Some(u) = u {
                g = _mm256_mul_ps(g, _mm256_loadu_ps(u.as_ptr().add(i)));
            }
            _mm256_storeu_ps(ph.add(i), g);
        }
        i += 8;
    }
    for j in n8..n {
        h[j] = crate::math::gelu_tanh(h[j]) * u.map_or(1.0, |u| u[j]);
    }
}

/// AVX2 twin of [`crate::scalar::geglu`] (bit-identical); `u`, when given,
/// must be at least as long as `h`.
pub(crate) fn geglu(_: Avx2Token, h: &mut [f32], u: Option<&[f32]>) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { geglu_impl(h, u) }
}

#[target_feature(enable = "avx2,fma")]
fn rotate_pairs_impl(h: &mut [f32], start: usize, cos: &[f32], sin: &[f32], neox: bool, off: usize) {
    let n = cos.len().min(sin.len());
    let n8 = n / 8 * 8;
    let p = h.as_mut_ptr();
    if neox {
        // The two halves must not overlap and must lie inside the head.
        assert!(start + n <= off && off + start + n <= h.len(), "rope pairs outside the head");
        for k in (0..n8).step_by(8) {
            // SAFETY: start + k + 8 <= start + n <= off and off + start + k + 8 <= h.len() (asserted);
            // cos/sin have n >= k + 8 values; loadu/storeu need no alignment.
            unsafe {
                let (c, s) = (_mm256_loadu_ps(cos.as_ptr().add(k)), _mm256_loadu_ps(sin.as_ptr().add(k)));
                let (pa, pb) = (p.add(start + k), p.add(start + off + k));
                let (x0, x1) = (_mm256_loadu_ps(pa), _mm256_loadu_ps(pb));
                _mm256_storeu_ps(pa, _mm256_sub_ps(_mm256_mul_ps(x0, c), _mm256_mul_ps(x1, s)));
                _mm256_storeu_ps(pb, _mm256_add_ps(_mm256_mul_ps(x0, s), _mm256_mul_ps(x1, c)));
            }
        }
    } else {
        assert!(2 * (start + n) <= h.len(), "rope pairs outside the head");
        // Pairs (2i, 2i + 1) side by side: lanes [x0 x1 x0 x1 ...] times [c c ...] plus the
        // swapped lanes [x1 x0 ...] times [-s s ...]; x1 * -s = -(x1 * s) exactly and
        // additions commute, so each lane has the scalar form's bits.
        let lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
        let hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
        let sign = _mm256_setr_ps(-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0);
        for k in (0..n8).step_by(8) {
            // SAFETY: 2 * (start + k + 8) <= 2 * (start + n) <= h.len() (asserted); cos/sin have
            // n >= k + 8 values; loadu/storeu need no alignment.
            unsafe {
                let (c, s) = (_mm256_loadu_ps(cos.as_ptr().add(k)), _mm256_loadu_ps(sin.as_ptr().add(k)));
                for (half, idx) in [(0usize, lo), (8, hi)] {
                    let q = p.add(2 * (start + k) + half);
                    let v = _mm256_loadu_ps(q);
                    let cd = _mm256_permutevar8x32_ps(c, idx);
                    let sd = _mm256_mul_ps(_mm256_permutevar8x32_ps(s, idx), sign);
                    let sw = _mm256_permute_ps::<0xB1>(v);
                    _mm256_storeu_ps(q, _mm256_add_ps(_mm256_mul_ps(v, cd), _mm256_mul_ps(sw, sd)));
                }
            }
        }
    }
    crate::scalar::rotate_pairs(h, start + n8, &cos[n8..n], &sin[n8..n], neox, off);
}

/// AVX2 twin of [`crate::scalar::rotate_pairs`] (bit-identical).
pub(crate) fn rotate_pairs(
    _: Avx2Token,
    h: &mut [f32],
    start: usize,
    cos: &[f32],
    sin: &[f32],
    neox: bool,
    off: usize,
) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { rotate_pairs_impl(h, start, cos, sin, neox, off) }
}

/// AVX2 twin of [`crate::scalar::swiglu`] (bit-identical).
pub(crate) fn swiglu(_: Avx2Token, h: &mut [f32], u: &[f32]) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { swiglu_impl(h, u) }
}

#[target_feature(enable = "avx2,fma")]
fn axpy_impl(out: &mut [f32], a: f32, x: &[f32]) {
    let n = out.len().min(x.len());
    let n8 = n / 8 * 8;
    let va = _mm256_set1_ps(a);
    let (po, px) = (out.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= len of both slices.
        unsafe {
            let o = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(po.add(i)));
            _mm256_storeu_ps(po.add(i), o);
        }
        i += 8;
    }
    for j in n8..n {
        out[j] += a * x[j];
    }
}

/// AVX2 twin of [`crate::scalar::axpy`].
pub(crate) fn axpy(_: Avx2Token, out: &mut [f32], a: f32, x: &[f32]) {
    // SAFETY: the token proves AVX2, FMA and F16C are present and enabled.
    unsafe { axpy_impl(out, a, x) }
}
