//! NEON kernels (ARMv8-A Advanced SIMD, present on every aarch64 CPU and
//! enabled by both the Linux and the UEFI targets). Each has a scalar twin
//! in `scalar` (or `quant`); the entry points take a [`NeonToken`], which
//! `cpu` creates only when detection found Advanced SIMD.
//!
//! The element-wise kernels and the activation quantizers give the scalar
//! twins' bits; `dot_f32`, `axpy` and the float and 32-block tiles run the
//! AVX2 kernels' operations lane for lane (eight float lanes as two
//! `float32x4_t`, fused multiply-adds where AVX2 fuses, the same horizontal
//! sum), so they give the AVX2 level's bits.
//!
//! The matrix tiles are built by [`tile_kernels`] for each integer dot
//! primitive (here `smull` + pairwise adds; `sdot` in `dotprod`).

use core::arch::aarch64::*;

use crate::cpu::NeonToken;
use crate::half::f32_to_f16;
use crate::quant::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK8_0, QK8_1, QK_K};

// ---------------------------------------------------------------- loads and small helpers

/// 16 signed bytes at `p[off..off + 16]`.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn ld_s8(p: &[i8], off: usize) -> int8x16_t {
    assert!(off + 16 <= p.len());
    // SAFETY: off + 16 <= p.len() (checked); vld1q has no alignment requirement.
    unsafe { vld1q_s8(p.as_ptr().add(off)) }
}

/// 16 unsigned bytes at `p[off..off + 16]`.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn ld_u8(p: &[u8], off: usize) -> uint8x16_t {
    assert!(off + 16 <= p.len());
    // SAFETY: off + 16 <= p.len() (checked); vld1q has no alignment requirement.
    unsafe { vld1q_u8(p.as_ptr().add(off)) }
}

/// 4 floats at `p[off..off + 4]`.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn ld_f32(p: &[f32], off: usize) -> float32x4_t {
    assert!(off + 4 <= p.len());
    // SAFETY: off + 4 <= p.len() (checked); vld1q has no alignment requirement.
    unsafe { vld1q_f32(p.as_ptr().add(off)) }
}

/// Stores 4 floats at `p[off..off + 4]`.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn st_f32(p: &mut [f32], off: usize, v: float32x4_t) {
    assert!(off + 4 <= p.len());
    // SAFETY: off + 4 <= p.len() (checked); vst1q has no alignment requirement.
    unsafe { vst1q_f32(p.as_mut_ptr().add(off), v) }
}

/// 8 halves at `p[off..off + 8]` as f32 (two vectors, elements 0..4 and 4..8):
/// FCVTL/FCVTL2, exact (baseline ARMv8.0 FP; in assembly, as the half-precision
/// intrinsics are newer than the crate's minimum Rust).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn ld_f16x8(p: &[u16], off: usize) -> (float32x4_t, float32x4_t) {
    assert!(off + 8 <= p.len());
    // SAFETY: off + 8 <= p.len() (checked); vld1q has no alignment requirement.
    let h = unsafe { vld1q_u16(p.as_ptr().add(off)) };
    let (lo, hi): (float32x4_t, float32x4_t);
    // SAFETY: FCVTL/FCVTL2 (half to single) are baseline aarch64 FP/SIMD
    // instructions; they touch only the registers named (`lo` is an early
    // output, so it never shares `h`'s register).
    unsafe {
        core::arch::asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = lateout(vreg) hi,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    (lo, hi)
}

/// 8 bfloat16 at `p[off..off + 8]` as f32 (the bits shifted to the top half).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn ld_bf16x8(p: &[u16], off: usize) -> (float32x4_t, float32x4_t) {
    assert!(off + 8 <= p.len());
    // SAFETY: off + 8 <= p.len() (checked); vld1q has no alignment requirement.
    let h = unsafe { vld1q_u16(p.as_ptr().add(off)) };
    (vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))), vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)))
}

/// F16 bits to f32 (FCVT, exact).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f16(h: u16) -> f32 {
    let v = vdup_n_u16(h);
    let out: f32;
    // SAFETY: FCVT (half to single) is a baseline aarch64 FP instruction; it
    // touches only the registers named.
    unsafe {
        core::arch::asm!("fcvt {o:s}, {i:h}", i = in(vreg) v, o = lateout(vreg) out, options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// Eight lanes (`lo` = lanes 0..4, `hi` = 4..8) summed in the order of
/// `avx2::hsum` and `scalar::hsum8`: (0+4, 1+5, 2+6, 3+7), then (a0+a2,
/// a1+a3), then b0+b1.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn hsum8(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let a = vaddq_f32(lo, hi);
    let b = vadd_f32(vget_low_f32(a), vget_high_f32(a));
    vget_lane_f32::<0>(b) + vget_lane_f32::<1>(b)
}

/// Lane k of `acc` plus the products of bytes 4k..4k+4 of `a` and `b`
/// (exact: the i16 products cannot overflow, the pair sums are widened):
/// the lanes of `sdot` and of AVX2's maddubs + madd, with `smull` and
/// pairwise adds.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    let hi = vpaddlq_s16(vmull_high_s8(a, b));
    vaddq_s32(acc, vpaddq_s32(lo, hi))
}

/// The nibbles of 16 bytes: (low nibbles, high nibbles) as signed bytes 0..16.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn nibbles(q: uint8x16_t) -> (int8x16_t, int8x16_t) {
    let m = vdupq_n_u8(0x0F);
    (vreinterpretq_s8_u8(vandq_u8(q, m)), vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)))
}

/// 0xFF in byte j where bit j of `bits` is set (bytes 0..16: bits 0..16;
/// bytes 16..32: bits 16..32).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn bytes_from_bits(bits: u32) -> (uint8x16_t, uint8x16_t) {
    const SEL: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let sel = ld_u8(&SEL, 0);
    let b = bits.to_le_bytes();
    let v0 = vcombine_u8(vdup_n_u8(b[0]), vdup_n_u8(b[1]));
    let v1 = vcombine_u8(vdup_n_u8(b[2]), vdup_n_u8(b[3]));
    (vtstq_u8(v0, sel), vtstq_u8(v1, sel))
}

/// The 32 signed values of an IQ4_NL-layout `qs` (the table entries of its
/// nibbles), elements 0..16 and 16..32.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn unpack_iq4nl(qs: &[u8]) -> (int8x16_t, int8x16_t) {
    let t = ld_s8(&crate::quant::KVALUES_IQ4NL, 0);
    let (lo, hi) = nibbles(ld_u8(qs, 0));
    (vqtbl1q_s8(t, vreinterpretq_u8_s8(lo)), vqtbl1q_s8(t, vreinterpretq_u8_s8(hi)))
}

// ---------------------------------------------------------------- dot_f32, axpy

#[target_feature(enable = "neon")]
fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let n32 = n / 32 * 32;
    let n8 = n / 8 * 8;
    // Four accumulators of eight lanes, as the AVX2 twin.
    let mut acc = [[vdupq_n_f32(0.0); 2]; 4];
    let mut i = 0;
    while i < n32 {
        for (k, acc) in acc.iter_mut().enumerate() {
            let at = i + 8 * k;
            acc[0] = vfmaq_f32(acc[0], ld_f32(a, at), ld_f32(b, at));
            acc[1] = vfmaq_f32(acc[1], ld_f32(a, at + 4), ld_f32(b, at + 4));
        }
        i += 32;
    }
    while i < n8 {
        acc[0][0] = vfmaq_f32(acc[0][0], ld_f32(a, i), ld_f32(b, i));
        acc[0][1] = vfmaq_f32(acc[0][1], ld_f32(a, i + 4), ld_f32(b, i + 4));
        i += 8;
    }
    let h = |k: usize| vaddq_f32(vaddq_f32(acc[0][k], acc[1][k]), vaddq_f32(acc[2][k], acc[3][k]));
    let mut s = hsum8(h(0), h(1));
    for j in n8..n {
        s += a[j] * b[j];
    }
    s
}

/// NEON twin of [`crate::scalar::dot_f32`] (the bits of the AVX2 twin).
pub(crate) fn dot_f32(_: NeonToken, a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: the token proves NEON is present.
    unsafe { dot_f32_impl(a, b) }
}

/// NEON twin of [`crate::scalar::axpy`] (fused, as the AVX2 twin).
pub(crate) fn axpy(_: NeonToken, out: &mut [f32], a: f32, x: &[f32]) {
    // SAFETY: the token proves NEON is present.
    unsafe { axpy_impl(out, a, x) }
}

#[target_feature(enable = "neon")]
fn axpy_impl(out: &mut [f32], a: f32, x: &[f32]) {
    let n = out.len().min(x.len());
    let n4 = n / 4 * 4;
    let va = vdupq_n_f32(a);
    for i in (0..n4).step_by(4) {
        let o = vfmaq_f32(ld_f32(out, i), va, ld_f32(x, i));
        st_f32(out, i, o);
    }
    for j in n4..n {
        out[j] += a * x[j];
    }
}

// ---------------------------------------------------------------- element-wise

/// e^x for four lanes: the operations of `math::exp` (no fused
/// multiply-adds), lane by lane, so the bits are the same.
#[inline]
#[target_feature(enable = "neon")]
fn exp4(x: float32x4_t) -> float32x4_t {
    use crate::math::{EXP_P, LN2_HI, LN2_LO};
    let nan = vmvnq_u32(vceqq_f32(x, x));
    let xc = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-104.0)), vdupq_n_f32(89.0));
    let t = vaddq_f32(vmulq_f32(xc, vdupq_n_f32(core::f32::consts::LOG2_E)), vdupq_n_f32(0.5));
    let n = vrndmq_f32(t);
    let r = vsubq_f32(vsubq_f32(xc, vmulq_f32(n, vdupq_n_f32(LN2_HI))), vmulq_f32(n, vdupq_n_f32(LN2_LO)));
    let r2 = vmulq_f32(r, r);
    let mut p = vdupq_n_f32(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(c));
    }
    let y = vaddq_f32(vaddq_f32(vmulq_f32(p, r2), r), vdupq_n_f32(1.0));
    let ni = vcvtq_s32_f32(n);
    let n1 = vshrq_n_s32::<1>(ni);
    let n2 = vsubq_s32(ni, n1);
    let bias = vdupq_n_s32(127);
    let p1 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n1, bias)));
    let p2 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n2, bias)));
    let e = vmulq_f32(vmulq_f32(y, p1), p2);
    vbslq_f32(nan, x, e)
}

/// NEON twin of [`crate::scalar::softmax`] (bit-identical: the sum runs in
/// eight lanes combined as `scalar::hsum8`).
pub(crate) fn softmax(_: NeonToken, x: &mut [f32]) {
    // SAFETY: the token proves NEON is present.
    unsafe { softmax_impl(x) }
}

#[target_feature(enable = "neon")]
fn softmax_impl(x: &mut [f32]) {
    let n = x.len();
    let n8 = n / 8 * 8;
    let mut m = vdupq_n_f32(f32::NEG_INFINITY);
    for i in (0..n8).step_by(4) {
        m = vmaxq_f32(m, ld_f32(x, i));
    }
    // The max is exact whatever the order; NaNs are not expected here.
    let mut max = vmaxvq_f32(m);
    for &v in &x[n8..] {
        max = max.max(v);
    }
    let mv = vdupq_n_f32(max);
    let (mut s0, mut s1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for i in (0..n8).step_by(8) {
        let e0 = exp4(vsubq_f32(ld_f32(x, i), mv));
        let e1 = exp4(vsubq_f32(ld_f32(x, i + 4), mv));
        st_f32(x, i, e0);
        st_f32(x, i + 4, e1);
        s0 = vaddq_f32(s0, e0);
        s1 = vaddq_f32(s1, e1);
    }
    let mut s = hsum8(s0, s1);
    for v in &mut x[n8..] {
        *v = crate::math::exp(*v - max);
        s += *v;
    }
    let inv = 1.0 / s;
    let iv = vdupq_n_f32(inv);
    for i in (0..n8).step_by(4) {
        let v = vmulq_f32(ld_f32(x, i), iv);
        st_f32(x, i, v);
    }
    for v in &mut x[n8..] {
        *v *= inv;
    }
}

/// NEON twin of [`crate::scalar::swiglu`] (bit-identical).
pub(crate) fn swiglu(_: NeonToken, h: &mut [f32], u: &[f32]) {
    // SAFETY: the token proves NEON is present.
    unsafe { swiglu_impl(h, u) }
}

#[target_feature(enable = "neon")]
fn swiglu_impl(h: &mut [f32], u: &[f32]) {
    let n = h.len().min(u.len());
    let n4 = n / 4 * 4;
    let one = vdupq_n_f32(1.0);
    for i in (0..n4).step_by(4) {
        let x = ld_f32(h, i);
        let s = vdivq_f32(x, vaddq_f32(one, exp4(vnegq_f32(x))));
        st_f32(h, i, vmulq_f32(s, ld_f32(u, i)));
    }
    for j in n4..n {
        h[j] = crate::math::silu(h[j]) * u[j];
    }
}

/// NEON twin of [`crate::scalar::geglu`] (bit-identical); `u`, when given,
/// must be at least as long as `h`.
pub(crate) fn geglu(_: NeonToken, h: &mut [f32], u: Option<&[f32]>) {
    // SAFETY: the token proves NEON is present.
    unsafe { geglu_impl(h, u) }
}

#[target_feature(enable = "neon")]
fn geglu_impl(h: &mut [f32], u: Option<&[f32]>) {
    use crate::math::{GELU_C, GELU_S};
    let n = h.len();
    let n4 = n / 4 * 4;
    let (one, two, half) = (vdupq_n_f32(1.0), vdupq_n_f32(2.0), vdupq_n_f32(0.5));
    let (vs, vc) = (vdupq_n_f32(GELU_S), vdupq_n_f32(GELU_C));
    for i in (0..n4).step_by(4) {
        let x = ld_f32(h, i);
        // The scalar form's order: ((c * x) * x) * x, then x + that, then s * (...).
        let cube = vmulq_f32(vmulq_f32(vmulq_f32(vc, x), x), x);
        let y = vmulq_f32(vs, vaddq_f32(x, cube));
        let e = exp4(vmulq_f32(two, y));
        let t = vsubq_f32(one, vdivq_f32(two, vaddq_f32(e, one)));
        let mut g = vmulq_f32(vmulq_f32(half, x), vaddq_f32(one, t));
        if let Some(u) = u {
            g = vmulq_f32(g, ld_f32(u, i));
        }
        st_f32(h, i, g);
    }
    for j in n4..n {
        h[j] = crate::math::gelu_tanh(h[j]) * u.map_or(1.0, |u| u[j]);
    }
}

/// NEON twin of [`crate::scalar::scale_mul`] (bit-identical).
pub(crate) fn scale_mul(_: NeonToken, out: &mut [f32], x: &[f32], s: f32, w: &[f32]) {
    // SAFETY: the token proves NEON is present.
    unsafe { scale_mul_impl(out, x, s, w) }
}

#[target_feature(enable = "neon")]
fn scale_mul_impl(out: &mut [f32], x: &[f32], s: f32, w: &[f32]) {
    let n = out.len().min(x.len()).min(w.len());
    let n4 = n / 4 * 4;
    let vs = vdupq_n_f32(s);
    for i in (0..n4).step_by(4) {
        st_f32(out, i, vmulq_f32(vmulq_f32(ld_f32(x, i), vs), ld_f32(w, i)));
    }
    for j in n4..n {
        out[j] = x[j] * s * w[j];
    }
}

/// NEON twin of [`crate::scalar::rotate_pairs`] (bit-identical).
pub(crate) fn rotate_pairs(
    _: NeonToken,
    h: &mut [f32],
    start: usize,
    cos: &[f32],
    sin: &[f32],
    neox: bool,
    off: usize,
) {
    // SAFETY: the token proves NEON is present.
    unsafe { rotate_pairs_impl(h, start, cos, sin, neox, off) }
}

#[target_feature(enable = "neon")]
fn rotate_pairs_impl(h: &mut [f32], start: usize, cos: &[f32], sin: &[f32], neox: bool, off: usize) {
    let n = cos.len().min(sin.len());
    let n4 = n / 4 * 4;
    if neox {
        // The two halves must not overlap and must lie inside the head.
        assert!(start + n <= off && off + start + n <= h.len(), "rope pairs outside the head");
        for k in (0..n4).step_by(4) {
            let (c, s) = (ld_f32(cos, k), ld_f32(sin, k));
            let (a, b) = (start + k, start + off + k);
            let (x0, x1) = (ld_f32(h, a), ld_f32(h, b));
            st_f32(h, a, vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s)));
            st_f32(h, b, vaddq_f32(vmulq_f32(x0, s), vmulq_f32(x1, c)));
        }
    } else {
        assert!(2 * (start + n) <= h.len(), "rope pairs outside the head");
        for k in (0..n4).step_by(4) {
            let (c, s) = (ld_f32(cos, k), ld_f32(sin, k));
            let at = 2 * (start + k);
            let _ = &h[at..at + 8];
            // SAFETY: at + 8 <= 2 * (start + n) <= h.len() (asserted, and the slice above);
            // vld2q/vst2q have no alignment requirement.
            unsafe {
                let p = h.as_mut_ptr().add(at);
                let v = vld2q_f32(p);
                let (x0, x1) = (v.0, v.1);
                let r0 = vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s));
                let r1 = vaddq_f32(vmulq_f32(x0, s), vmulq_f32(x1, c));
                vst2q_f32(p, float32x4x2_t(r0, r1));
            }
        }
    }
    crate::scalar::rotate_pairs(h, start + n4, &cos[n4..n], &sin[n4..n], neox, off);
}

// ---------------------------------------------------------------- activation quantizers

/// The largest |x| of 32 floats at `x[off..]`, with the 8 vectors loaded.
#[inline]
#[target_feature(enable = "neon")]
fn load32_absmax(x: &[f32]) -> ([float32x4_t; 8], f32) {
    let v: [float32x4_t; 8] = core::array::from_fn(|k| ld_f32(x, 4 * k));
    let mut m = vabsq_f32(v[0]);
    for vk in &v[1..] {
        m = vmaxq_f32(m, vabsq_f32(*vk));
    }
    (v, vmaxvq_f32(m))
}

/// Narrows 32 i32 lanes (each in -128..=127) to bytes in order.
#[inline]
#[target_feature(enable = "neon")]
fn pack32(q: [int32x4_t; 8], out: &mut [i8; 32]) {
    for h in 0..2 {
        let a = vcombine_s16(vqmovn_s32(q[4 * h]), vqmovn_s32(q[4 * h + 1]));
        let b = vcombine_s16(vqmovn_s32(q[4 * h + 2]), vqmovn_s32(q[4 * h + 3]));
        let v = vcombine_s8(vqmovn_s16(a), vqmovn_s16(b));
        // SAFETY: 16h + 16 <= 32 bytes of out; vst1q has no alignment requirement.
        unsafe { vst1q_s8(out.as_mut_ptr().add(16 * h), v) };
    }
}

/// NEON twin of [`crate::quant::quantize_row_q8_0`] (bit-identical for finite
/// input: FCVTAS rounds half away from zero, as `quant::round_away`).
pub(crate) fn quantize_row_q8_0(_: NeonToken, x: &[f32], out: &mut [BlockQ8_0]) {
    // SAFETY: the token proves NEON is present.
    unsafe { quantize_row_q8_0_impl(x, out) }
}

#[target_feature(enable = "neon")]
fn quantize_row_q8_0_impl(x: &[f32], out: &mut [BlockQ8_0]) {
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK8_0)) {
        let (v, amax) = load32_absmax(xs);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.d = f32_to_f16(d);
        let q = v.map(|v| vcvtaq_s32_f32(vmulq_n_f32(v, id)));
        pack32(q, &mut blk.qs);
    }
}

/// NEON twin of [`crate::quant::quantize_row_q8_1`] (bit-identical for finite
/// input: FCVTNS rounds to nearest even, as `quant::nearest_int`).
pub(crate) fn quantize_row_q8_1(_: NeonToken, x: &[f32], out: &mut [BlockQ8_1]) {
    // SAFETY: the token proves NEON is present.
    unsafe { quantize_row_q8_1_impl(x, out) }
}

#[target_feature(enable = "neon")]
fn quantize_row_q8_1_impl(x: &[f32], out: &mut [BlockQ8_1]) {
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK8_1)) {
        let (v, amax) = load32_absmax(xs);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let q = v.map(|v| vcvtnq_s32_f32(vmulq_n_f32(v, id)));
        let mut s = q[0];
        for qk in &q[1..] {
            s = vaddq_s32(s, *qk);
        }
        let sum = vaddvq_s32(s);
        pack32(q, &mut blk.qs);
        blk.d = f32_to_f16(d);
        blk.s = f32_to_f16(d * sum as f32);
    }
}

/// NEON twin of [`crate::quant::quantize_row_q8_k`] (bit-identical for finite input).
pub(crate) fn quantize_row_q8_k(_: NeonToken, x: &[f32], out: &mut [BlockQ8K]) {
    // SAFETY: the token proves NEON is present.
    unsafe { quantize_row_q8_k_impl(x, out) }
}

#[target_feature(enable = "neon")]
fn quantize_row_q8_k_impl(x: &[f32], out: &mut [BlockQ8K]) {
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut m = vdupq_n_f32(0.0);
        for k in 0..QK_K / 4 {
            m = vmaxq_f32(m, vabsq_f32(ld_f32(xs, 4 * k)));
        }
        let amax = vmaxvq_f32(m);
        if amax == 0.0 {
            *blk = BlockQ8K::default();
            continue;
        }
        // The signed value: the first one of largest magnitude, as the reference.
        let max = xs.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let lim = vdupq_n_s32(127);
        for (g, o) in blk.qs.chunks_exact_mut(32).enumerate() {
            let q: [int32x4_t; 8] = core::array::from_fn(|k| {
                vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(ld_f32(xs, 32 * g + 4 * k), iscale)), lim)
            });
            pack32(q, o.try_into().expect("32-byte chunk"));
        }
        for (s, g) in blk.bsums.iter_mut().zip(0..QK_K / 16) {
            *s = vaddlvq_s8(ld_s8(&blk.qs, 16 * g));
        }
        blk.d = 1.0 / iscale;
    }
}

// ---------------------------------------------------------------- the tiles

/// Register-tile kernels: `R` weight rows against `C` activation rows, one
/// accumulator per (row, activation) pair; each pair goes through the same
/// operations whatever `R` and `C`, so any tiling gives the same bits.
/// `$dot4(acc, a, b)` adds to lane k of `acc` the products of bytes 4k..4k+4
/// (exactly): every instantiation computes the same integer lanes.
///
/// - 32-blocks: per block, eight integer lanes (two vectors: elements 0..16
///   and 16..32) as AVX2's, then `acc = fma(dw * dx, lanes, acc)` with one
///   accumulator pair for even and one for odd blocks (Q4_1/Q5_1: one
///   accumulator and the `m * s` terms in a float), the AVX2 horizontal sum:
///   the bits of the x86 tiles.
/// - K-quants: each super-block is reduced to one exact integer, then the
///   scalar twin's float terms: bit-identical to `scalar`.
/// - Floats: eight lanes of fma over the row with two accumulators, the
///   horizontal sum, then the tail in order: the bits of the x86 tiles.
macro_rules! tile_kernels {
    ($feat:literal, $dot4:path, $tok:ty, $detect:path) => {
        use core::arch::aarch64::*;

        use crate::arch::aarch64::neon::{
            bytes_from_bits, f16, hsum8, ld_bf16x8, ld_f16x8, ld_f32, ld_s8, ld_u8, nibbles, unpack_iq4nl,
        };
        use crate::half::{bf16_to_f32, f16_to_f32};
        use crate::quant::{
            BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
            BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
        };

        /// This level's capability token, from `cpu` (for the tests).
        #[cfg(test)]
        pub(crate) fn token() -> Option<$tok> {
            $detect()
        }

        /// Lanes 0..4 (elements 0..16) and 4..8 (16..32) of a 32-element product.
        #[inline]
        #[target_feature(enable = $feat)]
        fn lanes(w: (int8x16_t, int8x16_t), x: (int8x16_t, int8x16_t)) -> (int32x4_t, int32x4_t) {
            let z = vdupq_n_s32(0);
            ($dot4(z, w.0, x.0), $dot4(z, w.1, x.1))
        }

        /// The sum of the products of 32 elements (exact).
        #[inline]
        #[target_feature(enable = $feat)]
        fn isum32(w: (int8x16_t, int8x16_t), x: (int8x16_t, int8x16_t)) -> int32x4_t {
            $dot4($dot4(vdupq_n_s32(0), w.0, x.0), w.1, x.1)
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn q8(qs: &[i8]) -> (int8x16_t, int8x16_t) {
            (ld_s8(qs, 0), ld_s8(qs, 16))
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn unpack_q4_0(b: &BlockQ4_0) -> (int8x16_t, int8x16_t) {
            let (lo, hi) = nibbles(ld_u8(&b.qs, 0));
            let e = vdupq_n_s8(8);
            (vsubq_s8(lo, e), vsubq_s8(hi, e))
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn unpack_q5_0(b: &BlockQ5_0) -> (int8x16_t, int8x16_t) {
            // With the fifth bit set the nibble already is q - 16; without it,
            // the nibble with the top four bits set is (q - 16) as a signed byte.
            let (m0, m1) = bytes_from_bits(u32::from_le_bytes(b.qh));
            let (lo, hi) = nibbles(ld_u8(&b.qs, 0));
            let f0 = vdupq_n_u8(0xF0);
            (vorrq_s8(lo, vreinterpretq_s8_u8(vbicq_u8(f0, m0))), vorrq_s8(hi, vreinterpretq_s8_u8(vbicq_u8(f0, m1))))
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn unpack_q5_1(b: &BlockQ5_1) -> (int8x16_t, int8x16_t) {
            let (m0, m1) = bytes_from_bits(u32::from_le_bytes(b.qh));
            let (lo, hi) = nibbles(ld_u8(&b.qs, 0));
            let t = vdupq_n_u8(0x10);
            (vorrq_s8(lo, vreinterpretq_s8_u8(vandq_u8(t, m0))), vorrq_s8(hi, vreinterpretq_s8_u8(vandq_u8(t, m1))))
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
                // Two accumulators (of eight lanes) per pair, for even and odd blocks.
                let zf = vdupq_n_f32(0.0);
                let mut acc = [[[[zf; 2]; 2]; C]; R];
                let z8 = vdupq_n_s8(0);
                for i in 0..nb {
                    let k = i % 2;
                    let mut wv = [(z8, z8); R];
                    let mut dw = [0.0f32; R];
                    for r in 0..R {
                        let b = &ws[r][i];
                        wv[r] = $unpack(b);
                        dw[r] = f16(b.d);
                    }
                    for c in 0..C {
                        let b: &BlockQ8_0 = &xs[c][i];
                        let xv = q8(&b.qs);
                        let dx = f16(b.d);
                        for r in 0..R {
                            let (p0, p1) = lanes(wv[r], xv);
                            let d = dw[r] * dx;
                            let a = &mut acc[r][c][k];
                            a[0] = vfmaq_n_f32(a[0], vcvtq_f32_s32(p0), d);
                            a[1] = vfmaq_n_f32(a[1], vcvtq_f32_s32(p1), d);
                        }
                    }
                }
                let mut out = [[0.0f32; C]; R];
                for r in 0..R {
                    for c in 0..C {
                        let a = &acc[r][c];
                        out[r][c] = hsum8(vaddq_f32(a[0][0], a[1][0]), vaddq_f32(a[0][1], a[1][1]));
                    }
                }
                out
            }};
        }

        #[target_feature(enable = $feat)]
        fn q8_0_impl<const R: usize, const C: usize>(ws: [&[BlockQ8_0]; R], xs: [&[BlockQ8_0]; C]) -> [[f32; C]; R] {
            tile32!(ws, xs, |b: &BlockQ8_0| q8(&b.qs))
        }

        #[target_feature(enable = $feat)]
        fn q4_0_impl<const R: usize, const C: usize>(ws: [&[BlockQ4_0]; R], xs: [&[BlockQ8_0]; C]) -> [[f32; C]; R] {
            tile32!(ws, xs, unpack_q4_0)
        }

        #[target_feature(enable = $feat)]
        fn iq4_nl_impl<const R: usize, const C: usize>(ws: [&[BlockIQ4NL]; R], xs: [&[BlockQ8_0]; C]) -> [[f32; C]; R] {
            tile32!(ws, xs, |b: &BlockIQ4NL| unpack_iq4nl(&b.qs))
        }

        #[target_feature(enable = $feat)]
        fn q5_0_impl<const R: usize, const C: usize>(ws: [&[BlockQ5_0]; R], xs: [&[BlockQ8_0]; C]) -> [[f32; C]; R] {
            tile32!(ws, xs, unpack_q5_0)
        }

        /// Q4_1 or Q5_1 against Q8_1 in the AVX2 twin's order: per block, the
        /// unsigned weights times the activations in eight integer lanes,
        /// `acc = fma(d * d8, lanes, acc)` in one accumulator, and `summs +=
        /// m * s8` in a float; at the end hsum(acc) + summs.
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
                let zf = vdupq_n_f32(0.0);
                let mut acc = [[[zf; 2]; C]; R];
                let mut summs = [[0.0f32; C]; R];
                let z8 = vdupq_n_s8(0);
                for i in 0..nb {
                    let mut wv = [(z8, z8); R];
                    let mut dw = [0.0f32; R];
                    let mut mw = [0.0f32; R];
                    for r in 0..R {
                        let b = &ws[r][i];
                        wv[r] = $unpack(b);
                        dw[r] = f16(b.d);
                        mw[r] = f16(b.m);
                    }
                    for c in 0..C {
                        let b: &BlockQ8_1 = &xs[c][i];
                        let xv = q8(&b.qs);
                        let dx = f16(b.d);
                        let sx = f16(b.s);
                        for r in 0..R {
                            summs[r][c] += mw[r] * sx;
                            let (p0, p1) = lanes(wv[r], xv);
                            let d = dw[r] * dx;
                            let a = &mut acc[r][c];
                            a[0] = vfmaq_n_f32(a[0], vcvtq_f32_s32(p0), d);
                            a[1] = vfmaq_n_f32(a[1], vcvtq_f32_s32(p1), d);
                        }
                    }
                }
                let mut out = [[0.0f32; C]; R];
                for r in 0..R {
                    for c in 0..C {
                        out[r][c] = hsum8(acc[r][c][0], acc[r][c][1]) + summs[r][c];
                    }
                }
                out
            }};
        }

        #[target_feature(enable = $feat)]
        fn q4_1_impl<const R: usize, const C: usize>(ws: [&[BlockQ4_1]; R], xs: [&[BlockQ8_1]; C]) -> [[f32; C]; R] {
            tile_min!(ws, xs, |b: &BlockQ4_1| nibbles(ld_u8(&b.qs, 0)))
        }

        #[target_feature(enable = $feat)]
        fn q5_1_impl<const R: usize, const C: usize>(ws: [&[BlockQ5_1]; R], xs: [&[BlockQ8_1]; C]) -> [[f32; C]; R] {
            tile_min!(ws, xs, unpack_q5_1)
        }

        /// Per super-block: `$unpack(block, g)` gives group g's (0..8, 32
        /// elements) signed weights and the scales of its halves (elements
        /// 0..16, 16..32); each group adds scale * integer dot of each half to
        /// an exact integer, which `$finish(block, activations, integer)`
        /// turns into the super-block's float, as the scalar twin.
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
                let (z8, z32) = (vdupq_n_s8(0), vdupq_n_s32(0));
                for i in 0..nb {
                    let mut acc = [[z32; C]; R];
                    for g in 0..8 {
                        let mut wv = [(z8, z8); R];
                        let mut sv = [(0i32, 0i32); R];
                        for r in 0..R {
                            let (w, sc): ((int8x16_t, int8x16_t), (i32, i32)) = $unpack(&ws[r][i], g);
                            wv[r] = w;
                            sv[r] = sc;
                        }
                        for c in 0..C {
                            let y = q8(&xs[c][i].qs[32 * g..32 * g + 32]);
                            for r in 0..R {
                                let (p0, p1) = lanes(wv[r], y);
                                let a = vmlaq_n_s32(acc[r][c], p0, sv[r].0);
                                acc[r][c] = vmlaq_n_s32(a, p1, sv[r].1);
                            }
                        }
                    }
                    for r in 0..R {
                        for c in 0..C {
                            s[r][c] += $finish(&ws[r][i], &xs[c][i], vaddvq_s32(acc[r][c]));
                        }
                    }
                }
                s
            }};
        }

        /// The 2-bit values of group g (0..8) of a Q2_K/Q3_K `qs`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn k2_group(qs: &[u8; 64], g: usize) -> (uint8x16_t, uint8x16_t) {
            let sh = vdupq_n_s8(-2 * (g % 4) as i8);
            let m3 = vdupq_n_u8(3);
            let at = 32 * (g / 4);
            (vandq_u8(vshlq_u8(ld_u8(qs, at), sh), m3), vandq_u8(vshlq_u8(ld_u8(qs, at + 16), sh), m3))
        }

        /// Q4_K (`qh` = None) or Q5_K: per sub-block j, its scale times the
        /// integer dot of its 32 (unsigned) values, summed exactly.
        #[inline]
        #[target_feature(enable = $feat)]
        fn kq45_tile<const R: usize, const C: usize>(
            qs: [&[u8; 128]; R],
            qh: [Option<&[u8; 32]>; R],
            sc: &[[u8; 8]; R],
            ys: [&BlockQ8K; C],
        ) -> [[i32; C]; R] {
            let z32 = vdupq_n_s32(0);
            let z8 = vdupq_n_s8(0);
            let mut sumi = [[z32; C]; R];
            for ch in 0..4 {
                let mut lo = [(z8, z8); R];
                let mut hi = [(z8, z8); R];
                for r in 0..R {
                    let (a0, b0) = nibbles(ld_u8(qs[r], 32 * ch));
                    let (a1, b1) = nibbles(ld_u8(qs[r], 32 * ch + 16));
                    lo[r] = (a0, a1);
                    hi[r] = (b0, b1);
                    if let Some(h) = qh[r] {
                        let sh0 = vdupq_n_s8(4 - 2 * ch as i8);
                        let sh1 = vdupq_n_s8(3 - 2 * ch as i8);
                        let bit = vdupq_n_u8(0x10);
                        let f = |v: uint8x16_t, s: int8x16_t| vreinterpretq_s8_u8(vandq_u8(vshlq_u8(v, s), bit));
                        let (h0, h1) = (ld_u8(h, 0), ld_u8(h, 16));
                        lo[r] = (vorrq_s8(lo[r].0, f(h0, sh0)), vorrq_s8(lo[r].1, f(h1, sh0)));
                        hi[r] = (vorrq_s8(hi[r].0, f(h0, sh1)), vorrq_s8(hi[r].1, f(h1, sh1)));
                    }
                }
                for c in 0..C {
                    let y0 = q8(&ys[c].qs[64 * ch..64 * ch + 32]);
                    let y1 = q8(&ys[c].qs[64 * ch + 32..64 * ch + 64]);
                    for r in 0..R {
                        let a = vmlaq_n_s32(sumi[r][c], isum32(lo[r], y0), i32::from(sc[r][2 * ch]));
                        sumi[r][c] = vmlaq_n_s32(a, isum32(hi[r], y1), i32::from(sc[r][2 * ch + 1]));
                    }
                }
            }
            let mut out = [[0i32; C]; R];
            for r in 0..R {
                for c in 0..C {
                    out[r][c] = vaddvq_s32(sumi[r][c]);
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
                        for j in 0..8 {
                            (sc[r][j], m[r][j]) = crate::quant::scale_min_k4(j, &ws[r][i].scales);
                        }
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
                            let mut summ = 0i32;
                            for j in 0..8 {
                                let bs = i32::from(ys[c].bsums[2 * j]) + i32::from(ys[c].bsums[2 * j + 1]);
                                summ += i32::from(m[r][j]) * bs;
                            }
                            let d = f16(a.d) * ys[c].d;
                            let dmin = f16(a.dmin) * ys[c].d;
                            s[r][c] += d * sumi[r][c] as f32 - dmin * summ as f32;
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

        #[target_feature(enable = $feat)]
        fn q2_k_impl<const R: usize, const C: usize>(ws: [&[BlockQ2K]; R], xs: [&[BlockQ8K]; C]) -> [[f32; C]; R] {
            tile_kg!(
                ws,
                xs,
                |b: &BlockQ2K, g: usize| {
                    let (a, c) = k2_group(&b.qs, g);
                    let sc = |k: usize| i32::from(b.scales[k] & 0xF);
                    ((vreinterpretq_s8_u8(a), vreinterpretq_s8_u8(c)), (sc(2 * g), sc(2 * g + 1)))
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
                    let (a, c) = k2_group(&b.qs, g);
                    let sh = vdupq_n_s8(2 - g as i8);
                    let four = vdupq_n_u8(4);
                    let h = |v: uint8x16_t| vandq_u8(vshlq_u8(v, sh), four);
                    let (h0, h1) = (h(ld_u8(&b.hmask, 0)), h(ld_u8(&b.hmask, 16)));
                    let w = |q: uint8x16_t, h: uint8x16_t| vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(q, h)), vdupq_n_s8(4));
                    let sc = |k: usize| i32::from(crate::quant::q3_k_scale(&b.scales, k)) - 32;
                    ((w(a, h0), w(c, h1)), (sc(2 * g), sc(2 * g + 1)))
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
                    let sc = i32::from(crate::quant::iq4_xs_scale(b, g)) - 32;
                    (unpack_iq4nl(&b.qs[16 * g..16 * g + 16]), (sc, sc))
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
            let m4 = vdupq_n_u8(0x0F);
            let m3 = vdupq_n_u8(0x03);
            let m32 = vdupq_n_s8(32);
            let (z8, z32) = (vdupq_n_s8(0), vdupq_n_s32(0));
            let mut s = [[0.0f32; C]; R];
            for i in 0..nb {
                let mut sumi = [[z32; C]; R];
                for h in 0..2 {
                    for g in 0..4 {
                        let mut q = [(z8, z8); R];
                        let mut sc = [(0i32, 0i32); R];
                        for r in 0..R {
                            let a = &ws[r][i];
                            // Group g of half h: low nibbles of ql[64h + 32(g & 1)..] (high nibbles
                            // for g >= 2), high bits 2g..2g+2 of qh[32h..].
                            let sh = vdupq_n_s8(-2 * g as i8);
                            let one = |k: usize| {
                                let l = ld_u8(&a.ql, 64 * h + 32 * (g & 1) + 16 * k);
                                let l = if g < 2 { vandq_u8(l, m4) } else { vshrq_n_u8::<4>(l) };
                                let hb = vandq_u8(vshlq_u8(ld_u8(&a.qh, 32 * h + 16 * k), sh), m3);
                                vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l, vshlq_n_u8::<4>(hb))), m32)
                            };
                            q[r] = (one(0), one(1));
                            let k = 8 * h + 2 * g;
                            sc[r] = (i32::from(a.scales[k]), i32::from(a.scales[k + 1]));
                        }
                        for c in 0..C {
                            let at = 128 * h + 32 * g;
                            let y = q8(&xs[c][i].qs[at..at + 32]);
                            for r in 0..R {
                                let (p0, p1) = lanes(q[r], y);
                                let v = vmlaq_n_s32(sumi[r][c], p0, sc[r].0);
                                sumi[r][c] = vmlaq_n_s32(v, p1, sc[r].1);
                            }
                        }
                    }
                }
                for r in 0..R {
                    for c in 0..C {
                        s[r][c] += f16(ws[r][i].d) * xs[c][i].d * vaddvq_s32(sumi[r][c]) as f32;
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
                // Two accumulators (of eight lanes) per pair, for even and odd chunks of eight.
                let zf = vdupq_n_f32(0.0);
                let mut acc = [[[[zf; 2]; 2]; C]; R];
                let mut k = 0;
                while k < n8 {
                    let h = (k / 8) % 2;
                    let wv: [(float32x4_t, float32x4_t); R] = core::array::from_fn(|r| $load(ws[r], k));
                    for c in 0..C {
                        let (x0, x1) = (ld_f32(xs[c], k), ld_f32(xs[c], k + 4));
                        for r in 0..R {
                            let a = &mut acc[r][c][h];
                            a[0] = vfmaq_f32(a[0], wv[r].0, x0);
                            a[1] = vfmaq_f32(a[1], wv[r].1, x1);
                        }
                    }
                    k += 8;
                }
                let mut out = [[0.0f32; C]; R];
                for r in 0..R {
                    for c in 0..C {
                        let a = &acc[r][c];
                        let mut s = hsum8(vaddq_f32(a[0][0], a[1][0]), vaddq_f32(a[0][1], a[1][1]));
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
            tile_float!(ws, xs, |w: &[f32], k: usize| (ld_f32(w, k), ld_f32(w, k + 4)), |v: f32| v)
        }

        #[target_feature(enable = $feat)]
        fn f16_impl<const R: usize, const C: usize>(ws: [&[u16]; R], xs: [&[f32]; C]) -> [[f32; C]; R] {
            tile_float!(ws, xs, ld_f16x8, f16_to_f32)
        }

        #[target_feature(enable = $feat)]
        fn bf16_impl<const R: usize, const C: usize>(ws: [&[u16]; R], xs: [&[f32]; C]) -> [[f32; C]; R] {
            tile_float!(ws, xs, ld_bf16x8, bf16_to_f32)
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
                    // features this module is compiled for are present.
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

/// The tile kernels with plain NEON (`smull` and pairwise adds).
pub(crate) mod tiles {
    super::tile_kernels!("neon", crate::arch::aarch64::neon::dot4, crate::cpu::NeonToken, crate::cpu::neon);
}
