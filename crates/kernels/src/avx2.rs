//! AVX2 + FMA + F16C kernels. Every function here is private to the crate and
//! `unsafe`: callers (the dispatchers in `ops`) must have checked that
//! `cpu::level() >= SimdLevel::Avx2`. Each has a scalar twin in `scalar`.
//!
//! The quantized dot products take `C` activation rows at once (`C` = 1 for
//! matvec, up to 4 for matmul): each weight block is unpacked once and used
//! for every activation row, and each (weight row, activation row) pair goes
//! through exactly the same operations whatever `C` is, so matmul and matvec
//! give bit-identical results.
//!
//! Integer sums are exact, so results differ from the scalar twins only in
//! the float accumulation: K-quant kernels reduce each super-block to one
//! integer first and are bit-identical to the scalar twins; the 32-blocks
//! keep eight lanes of float partial sums.

use core::arch::x86_64::*;

use crate::half::{f16_to_f32, f32_to_f16};
use crate::quant::{
    scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, QK8_0, QK_K,
};

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
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
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// F16 bits to f32 with F16C (exact, like `half::f16_to_f32`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn f16(h: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
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
///
/// # Safety
/// The CPU must support AVX2 and FMA and the OS must have enabled AVX state.
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: the caller guarantees AVX2 + FMA.
    unsafe { dot_f32_impl(a, b) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f16_impl(w: &[u16], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let n8 = n / 8 * 8;
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n8 {
        // SAFETY: i + 16 <= n8 <= len of both slices; loadu has no alignment needs.
        let (h0, h1, x0, x1) = unsafe {
            (
                _mm_loadu_si128(pw.add(i).cast()),
                _mm_loadu_si128(pw.add(i + 8).cast()),
                _mm256_loadu_ps(px.add(i)),
                _mm256_loadu_ps(px.add(i + 8)),
            )
        };
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(h0), x0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(h1), x1, acc1);
        i += 16;
    }
    while i < n8 {
        // SAFETY: i + 8 <= n8.
        let (h0, x0) = unsafe { (_mm_loadu_si128(pw.add(i).cast()), _mm256_loadu_ps(px.add(i))) };
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(h0), x0, acc0);
        i += 8;
    }
    let mut s = hsum(_mm256_add_ps(acc0, acc1));
    for j in n8..n {
        s += f16_to_f32(w[j]) * x[j];
    }
    s
}

/// AVX2 twin of [`crate::scalar::dot_f16`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C with AVX state enabled.
pub(crate) unsafe fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    // SAFETY: the caller guarantees AVX2 + FMA + F16C.
    unsafe { dot_f16_impl(w, x) }
}

#[target_feature(enable = "avx2,fma")]
fn dot_bf16_impl(w: &[u16], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let n8 = n / 8 * 8;
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= len of both slices.
        let (h, xv) = unsafe { (_mm_loadu_si128(pw.add(i).cast()), _mm256_loadu_ps(px.add(i))) };
        let wf = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)));
        acc = _mm256_fmadd_ps(wf, xv, acc);
        i += 8;
    }
    let mut s = hsum(acc);
    for j in n8..n {
        s += crate::half::bf16_to_f32(w[j]) * x[j];
    }
    s
}

/// AVX2 twin of [`crate::scalar::dot_bf16`].
///
/// # Safety
/// The CPU must support AVX2 and FMA with AVX state enabled.
pub(crate) unsafe fn dot_bf16(w: &[u16], x: &[f32]) -> f32 {
    // SAFETY: the caller guarantees AVX2 + FMA.
    unsafe { dot_bf16_impl(w, x) }
}

// ---------------------------------------------------------------- 32-blocks

/// Loads 32 bytes (no alignment needed).
#[inline]
#[target_feature(enable = "avx2")]
fn load32(p: &[i8; 32]) -> __m256i {
    // SAFETY: p is 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// Signed bytes `w` times signed bytes `x`, summed in groups of four into
/// eight i32 lanes (lane k: bytes 4k..4k+4). `w` must not hold -128 where
/// `x` does (sign trick: |w| * (x with w's sign)).
#[inline]
#[target_feature(enable = "avx2")]
fn mul_sum_i8(w: __m256i, x: __m256i) -> __m256i {
    let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

/// The 32 nibbles of a Q4_0-layout `qs` as bytes 0..16 in element order.
#[inline]
#[target_feature(enable = "avx2")]
fn unpack_nibbles(qs: &[u8; 16]) -> __m256i {
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
fn bytes_from_bits(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    // Byte j takes byte j / 8 of the word...
    let shuf = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    let v = _mm256_shuffle_epi8(v, shuf);
    // ...and keeps only bit j % 8: OR in every other bit, then test for all ones.
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(v, others), _mm256_set1_epi8(-1))
}

/// The shared loop of the 32-block kernels: `unpack(block)` gives the 32
/// signed weights; each pair keeps two accumulators (even and odd blocks).
macro_rules! dot32_body {
    ($w:expr, $xs:expr, $c:ident, |$a:ident| $unpack:expr) => {{
        let w = $w;
        let xs = $xs;
        for x in xs.iter() {
            assert!(x.len() >= w.len());
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; $c];
        for (i, $a) in w.iter().enumerate() {
            let wv: __m256i = $unpack;
            let dw = f16($a.d);
            for c in 0..$c {
                let b = &xs[c][i];
                let p = mul_sum_i8(wv, load32(&b.qs));
                let d = _mm256_set1_ps(dw * f16(b.d));
                acc[c][i & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[c][i & 1]);
            }
        }
        let mut out = [0.0f32; $c];
        for c in 0..$c {
            out[c] = hsum(_mm256_add_ps(acc[c][0], acc[c][1]));
        }
        out
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q8_0_impl<const C: usize>(w: &[BlockQ8_0], xs: [&[BlockQ8_0]; C]) -> [f32; C] {
    dot32_body!(w, xs, C, |a| load32(&a.qs))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_0_impl<const C: usize>(w: &[BlockQ4_0], xs: [&[BlockQ8_0]; C]) -> [f32; C] {
    dot32_body!(w, xs, C, |a| _mm256_sub_epi8(unpack_nibbles(&a.qs), _mm256_set1_epi8(8)))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_0_impl<const C: usize>(w: &[BlockQ5_0], xs: [&[BlockQ8_0]; C]) -> [f32; C] {
    dot32_body!(w, xs, C, |a| {
        // q - 16: with the fifth bit set the nibble already is q - 16; without
        // it, the nibble with the top four bits set is (q - 16) as a signed byte.
        let hi = bytes_from_bits(u32::from_le_bytes(a.qh));
        _mm256_or_si256(unpack_nibbles(&a.qs), _mm256_andnot_si256(hi, _mm256_set1_epi8(0xF0u8 as i8)))
    })
}

/// AVX2 twin of [`crate::scalar::dot_q8_0`] for `C` activation rows.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C with AVX state enabled.
pub(crate) unsafe fn dot_q8_0<const C: usize>(w: &[BlockQ8_0], xs: [&[BlockQ8_0]; C]) -> [f32; C] {
    // SAFETY: the caller guarantees AVX2 + FMA + F16C.
    unsafe { dot_q8_0_impl(w, xs) }
}

/// AVX2 twin of [`crate::scalar::dot_q4_0`] for `C` activation rows.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C with AVX state enabled.
pub(crate) unsafe fn dot_q4_0<const C: usize>(w: &[BlockQ4_0], xs: [&[BlockQ8_0]; C]) -> [f32; C] {
    // SAFETY: the caller guarantees AVX2 + FMA + F16C.
    unsafe { dot_q4_0_impl(w, xs) }
}

/// AVX2 twin of [`crate::scalar::dot_q5_0`] for `C` activation rows.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C with AVX state enabled.
pub(crate) unsafe fn dot_q5_0<const C: usize>(w: &[BlockQ5_0], xs: [&[BlockQ8_0]; C]) -> [f32; C] {
    // SAFETY: the caller guarantees AVX2 + FMA + F16C.
    unsafe { dot_q5_0_impl(w, xs) }
}

// ---------------------------------------------------------------- K-quants

/// Sum over the eight sub-blocks of m_j * (bsums[2j] + bsums[2j + 1]).
#[inline]
#[target_feature(enable = "avx2")]
fn mins_dot_bsums(mins: &[u8; 8], b: &BlockQ8K) -> i32 {
    // SAFETY: bsums is 32 readable bytes, mins 8; loadu has no alignment requirement.
    let (s, m) = unsafe { (_mm256_loadu_si256(b.bsums.as_ptr().cast()), _mm_loadl_epi64(mins.as_ptr().cast())) };
    // Pairwise sums fit i16 (|bsum| <= 16 * 128).
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let p = _mm_madd_epi16(_mm_cvtepu8_epi16(m), pairs);
    let p = _mm_add_epi32(p, _mm_shuffle_epi32::<0b01_00_11_10>(p));
    let p = _mm_add_epi32(p, _mm_shuffle_epi32::<0b10_11_00_01>(p));
    _mm_cvtsi128_si32(p)
}

/// The eight scales and eight mins of a Q4_K/Q5_K block.
#[inline]
fn scales_mins(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = scale_min_k4(j, q);
    }
    (sc, m)
}

/// One Q4_K/Q5_K super-block against `C` activation blocks; `hbits` is the
/// Q5_K high-bit plane (None for Q4_K). Returns sum(sc * q . q8) per pair.
#[inline]
#[target_feature(enable = "avx2")]
fn kq45_block<const C: usize>(qs: &[u8; 128], hbits: Option<&[u8; 32]>, sc: &[u8; 8], ys: [&BlockQ8K; C]) -> [i32; C] {
    let m4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    // SAFETY: hbits is 32 readable bytes; loadu has no alignment requirement.
    let hv = hbits.map(|h| unsafe { _mm256_loadu_si256(h.as_ptr().cast()) });
    let mut sumi = [_mm256_setzero_si256(); C];
    for c in 0..4 {
        // SAFETY: 32 * c + 32 <= 128 bytes of qs.
        let q = unsafe { _mm256_loadu_si256(qs.as_ptr().add(32 * c).cast()) };
        let mut lo = _mm256_and_si256(q, m4);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
        if let Some(h) = hv {
            let sh = _mm_cvtsi32_si128(2 * c as i32);
            let h0 = _mm256_and_si256(_mm256_srl_epi16(h, sh), one);
            let h1 = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c as i32 + 1)), one);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(h0));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16::<4>(h1));
        }
        let s0 = _mm256_set1_epi16(i16::from(sc[2 * c]));
        let s1 = _mm256_set1_epi16(i16::from(sc[2 * c + 1]));
        for k in 0..C {
            // SAFETY: 64 * c + 64 <= 256 bytes of qs.
            let (y0, y1) = unsafe {
                let p = ys[k].qs.as_ptr().add(64 * c);
                (_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(32).cast()))
            };
            let p0 = _mm256_madd_epi16(s0, _mm256_maddubs_epi16(lo, y0));
            let p1 = _mm256_madd_epi16(s1, _mm256_maddubs_epi16(hi, y1));
            sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(p0, p1));
        }
    }
    let mut out = [0i32; C];
    for k in 0..C {
        out[k] = hsum_i32(sumi[k]);
    }
    out
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_k_impl<const C: usize>(w: &[BlockQ4K], xs: [&[BlockQ8K]; C]) -> [f32; C] {
    for x in xs.iter() {
        assert!(x.len() >= w.len());
    }
    let mut s = [0.0f32; C];
    for (i, a) in w.iter().enumerate() {
        let (sc, m) = scales_mins(&a.scales);
        let ys: [&BlockQ8K; C] = core::array::from_fn(|k| &xs[k][i]);
        let sumi = kq45_block(&a.qs, None, &sc, ys);
        for k in 0..C {
            let d = f16(a.d) * ys[k].d;
            let dmin = f16(a.dmin) * ys[k].d;
            s[k] += d * sumi[k] as f32 - dmin * mins_dot_bsums(&m, ys[k]) as f32;
        }
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_k_impl<const C: usize>(w: &[BlockQ5K], xs: [&[BlockQ8K]; C]) -> [f32; C] {
    for x in xs.iter() {
        assert!(x.len() >= w.len());
    }
    let mut s = [0.0f32; C];
    for (i, a) in w.iter().enumerate() {
        let (sc, m) = scales_mins(&a.scales);
        let ys: [&BlockQ8K; C] = core::array::from_fn(|k| &xs[k][i]);
        let sumi = kq45_block(&a.qs, Some(&a.qh), &sc, ys);
        for k in 0..C {
            let d = f16(a.d) * ys[k].d;
            let dmin = f16(a.dmin) * ys[k].d;
            s[k] += d * sumi[k] as f32 - dmin * mins_dot_bsums(&m, ys[k]) as f32;
        }
    }
    s
}

/// Byte-shuffle masks that spread scales (2p, 2p + 1) over 8 bytes each.
#[inline]
#[target_feature(enable = "avx2")]
fn q6_scale_pair(scales: __m128i, p: usize) -> __m256i {
    let a = (2 * p) as i8;
    let b = a + 1;
    let mask = _mm_setr_epi8(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, mask))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q6_k_impl<const C: usize>(w: &[BlockQ6K], xs: [&[BlockQ8K]; C]) -> [f32; C] {
    for x in xs.iter() {
        assert!(x.len() >= w.len());
    }
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    let m32 = _mm256_set1_epi8(32);
    let mut s = [0.0f32; C];
    for (i, a) in w.iter().enumerate() {
        // SAFETY: scales is 16 readable bytes.
        let scales = unsafe { _mm_loadu_si128(a.scales.as_ptr().cast()) };
        let mut sumi = [_mm256_setzero_si256(); C];
        for h in 0..2 {
            // SAFETY: 64h + 64 <= 128 bytes of ql and 32h + 32 <= 64 bytes of qh.
            let (l0, l1, hb) = unsafe {
                (
                    _mm256_loadu_si256(a.ql.as_ptr().add(64 * h).cast()),
                    _mm256_loadu_si256(a.ql.as_ptr().add(64 * h + 32).cast()),
                    _mm256_loadu_si256(a.qh.as_ptr().add(32 * h).cast()),
                )
            };
            let q = [
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(hb, m2))),
                _mm256_or_si256(
                    _mm256_and_si256(l1, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(hb), m2)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(hb), m2)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(hb), m2)),
                ),
            ];
            for (g, &qg) in q.iter().enumerate() {
                let sc = q6_scale_pair(scales, 4 * h + g);
                for k in 0..C {
                    // SAFETY: 128h + 32g + 32 <= 256 bytes of qs.
                    let y = unsafe { _mm256_loadu_si256(xs[k][i].qs.as_ptr().add(128 * h + 32 * g).cast()) };
                    // (q - 32) . y = q . y - 32 * sum(y), both exact in i16 per pair.
                    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(qg, y), _mm256_maddubs_epi16(m32, y));
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(sc, p));
                }
            }
        }
        for k in 0..C {
            s[k] += f16(a.d) * xs[k][i].d * hsum_i32(sumi[k]) as f32;
        }
    }
    s
}

/// AVX2 twin of [`crate::scalar::dot_q4_k`] for `C` activation rows (bit-identical).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C with AVX state enabled.
pub(crate) unsafe fn dot_q4_k<const C: usize>(w: &[BlockQ4K], xs: [&[BlockQ8K]; C]) -> [f32; C] {
    // SAFETY: the caller guarantees AVX2 + FMA + F16C.
    unsafe { dot_q4_k_impl(w, xs) }
}

/// AVX2 twin of [`crate::scalar::dot_q5_k`] for `C` activation rows (bit-identical).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C with AVX state enabled.
pub(crate) unsafe fn dot_q5_k<const C: usize>(w: &[BlockQ5K], xs: [&[BlockQ8K]; C]) -> [f32; C] {
    // SAFETY: the caller guarantees AVX2 + FMA + F16C.
    unsafe { dot_q5_k_impl(w, xs) }
}

/// AVX2 twin of [`crate::scalar::dot_q6_k`] for `C` activation rows (bit-identical).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C with AVX state enabled.
pub(crate) unsafe fn dot_q6_k<const C: usize>(w: &[BlockQ6K], xs: [&[BlockQ8K]; C]) -> [f32; C] {
    // SAFETY: the caller guarantees AVX2 + FMA + F16C.
    unsafe { dot_q6_k_impl(w, xs) }
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
///
/// # Safety
/// The CPU must support AVX2 and FMA with AVX state enabled.
pub(crate) unsafe fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    // SAFETY: the caller guarantees AVX2 + FMA.
    unsafe { quantize_row_q8_0_impl(x, out) }
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
///
/// # Safety
/// The CPU must support AVX2 and FMA with AVX state enabled.
pub(crate) unsafe fn quantize_row_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    // SAFETY: the caller guarantees AVX2 + FMA.
    unsafe { quantize_row_q8_k_impl(x, out) }
}

// ---------------------------------------------------------------- element-wise

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
///
/// # Safety
/// The CPU must support AVX2 and FMA with AVX state enabled.
pub(crate) unsafe fn axpy(out: &mut [f32], a: f32, x: &[f32]) {
    // SAFETY: the caller guarantees AVX2 + FMA.
    unsafe { axpy_impl(out, a, x) }
}
