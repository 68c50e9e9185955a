//! AVX2 + FMA + F16C kernels. Every function here is private to the crate and
//! `unsafe`: callers (the dispatchers in `ops`) must have checked that
//! `cpu::level() >= SimdLevel::Avx2`. Each has a scalar twin in `scalar`.

use core::arch::x86_64::*;

use crate::half::f16_to_f32;
use crate::quant::BlockQ8_0;

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

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q8_0_impl(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let ones = _mm256_set1_epi16(1);
    for (a, b) in w.iter().zip(x) {
        // SAFETY: qs is 32 bytes; loadu has no alignment requirement.
        let (qa, qb) = unsafe { (_mm256_loadu_si256(a.qs.as_ptr().cast()), _mm256_loadu_si256(b.qs.as_ptr().cast())) };
        // maddubs needs an unsigned operand: |a| and b with a's sign.
        let ua = _mm256_sign_epi8(qa, qa);
        let sb = _mm256_sign_epi8(qb, qa);
        let p16 = _mm256_maddubs_epi16(ua, sb);
        let p32 = _mm256_madd_epi16(p16, ones);
        let d = _mm256_set1_ps(f16_to_f32(a.d) * f16_to_f32(b.d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p32), acc);
    }
    hsum(acc)
}

/// AVX2 twin of [`crate::scalar::dot_q8_0`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C with AVX state enabled.
pub(crate) unsafe fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: the caller guarantees AVX2 + FMA + F16C.
    unsafe { dot_q8_0_impl(w, x) }
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
///
/// # Safety
/// The CPU must support AVX2 and FMA with AVX state enabled.
pub(crate) unsafe fn axpy(out: &mut [f32], a: f32, x: &[f32]) {
    // SAFETY: the caller guarantees AVX2 + FMA.
    unsafe { axpy_impl(out, a, x) }
}
