//! libm-free math (`core` has no transcendental functions): the scalar
//! functions and constants every kernel level shares. A leaf: it imports
//! nothing from the crate, and `scalar`, `quant` and the ISA modules take
//! their math from here.

/// Square root, correctly rounded. `core` has no `sqrt` on f32 in no_std;
/// SSE2 and aarch64 FP have it in hardware.
#[inline]
pub fn libm_sqrt(x: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_cvtss_f32, _mm_set_ss, _mm_sqrt_ss};
        // SAFETY: SSE is part of the x86_64 baseline and of our UEFI target
        // spec (+sse,+sse2), so these instructions always exist.
        unsafe { _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))) }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use core::arch::aarch64::{vdup_n_f32, vget_lane_f32, vsqrt_f32};
        // SAFETY: FP and Advanced SIMD are part of the aarch64 baseline (both
        // the Linux and the UEFI targets enable `neon`), so `fsqrt` exists;
        // it is IEEE-754 square root, correctly rounded.
        unsafe { vget_lane_f32::<0>(vsqrt_f32(vdup_n_f32(x))) }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // Newton iterations from a bit-level guess.
        if x <= 0.0 {
            return if x == 0.0 { 0.0 } else { f32::NAN };
        }
        let mut y = f32::from_bits((x.to_bits() >> 1) + 0x1fc0_0000);
        for _ in 0..4 {
            y = 0.5 * (y + x / y);
        }
        y
    }
}

/// Cody-Waite split of ln 2: the high part has few bits, so n * LN2_HI is exact.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Minimax coefficients of (e^r - 1 - r) / r^2 on |r| <= ln2 / 2 (Cephes expf).
pub(crate) const EXP_P: [f32; 6] = [1.987_569_2e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];

/// e^x in f32, within 2 ulp: x = n ln2 + r, a degree-7 polynomial in r, then
/// 2^n in two steps (so subnormal results round once). The SIMD twins
/// (`avx2::exp8`) use the same operations (no fused multiply-adds), so
/// vectorised softmax and SwiGLU give the same bits as this.
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    // Outside these bounds the result is infinite or rounds to zero.
    let x = x.clamp(-104.0, 89.0);
    let t = x * core::f32::consts::LOG2_E + 0.5;
    // floor without libm: truncate, then step down for negative non-integers.
    let ti = t as i32;
    let n = (ti - i32::from((ti as f32) > t)) as f32;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let r2 = r * r;
    let mut p = EXP_P[0];
    for &c in &EXP_P[1..] {
        p = p * r + c;
    }
    let y = (p * r2 + r) + 1.0;
    let n = n as i32;
    let n1 = n >> 1;
    let n2 = n - n1;
    y * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23)
}

/// e^x in f64: range reduction by ln2 and a degree-13 Taylor polynomial.
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    if x < -745.0 {
        return 0.0;
    }
    const LN2: f64 = core::f64::consts::LN_2;
    let k = (x / LN2 + if x >= 0.0 { 0.5 } else { -0.5 }) as i64;
    let r = x - k as f64 * LN2;
    // |r| <= ln2/2: Taylor series converges quickly.
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..14 {
        term *= r / i as f64;
        sum += term;
    }
    // Multiply by 2^k in two steps to cover subnormal results.
    let k1 = k / 2;
    let k2 = k - k1;
    sum * pow2(k1) * pow2(k2)
}

#[inline]
fn pow2(k: i64) -> f64 {
    f64::from_bits(((k + 1023).clamp(0, 2046) as u64) << 52)
}

/// Natural log in f64 (for RoPE frequency tables and samplers).
pub fn ln_f64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // x = m * 2^e with m in [1, 2)
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if (bits >> 52) & 0x7ff == 0 {
        // subnormal
        let y = x * f64::from_bits(0x4350_0000_0000_0000); // 2^54
        return ln_f64(y) - 54.0 * core::f64::consts::LN_2;
    }
    if m > core::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    // ln(m) = 2 atanh((m-1)/(m+1))
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut term = t;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 60.0 {
        sum += term / k;
        term *= t2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * core::f64::consts::LN_2
}

/// base^y for base > 0, in f64.
pub fn powf_f64(base: f64, y: f64) -> f64 {
    exp_f64(y * ln_f64(base))
}

/// sin and cos of an f32 angle, computed in f64 with range reduction.
pub fn sin_cos(x: f32) -> (f32, f32) {
    let (s, c) = sin_cos_f64(f64::from(x));
    (s as f32, c as f32)
}

/// sin and cos in f64, accurate to ~1e-15 for |x| up to ~1e6.
pub fn sin_cos_f64(x: f64) -> (f64, f64) {
    use core::f64::consts::FRAC_PI_2;
    // Reduce by pi/2 using a two-part constant (Cody-Waite).
    const P1: f64 = FRAC_PI_2; // pi/2 rounded to f64: the high part
    const P2: f64 = 6.123_233_995_736_766e-17; // pi/2 - P1
    let k = (x / FRAC_PI_2 + if x >= 0.0 { 0.5 } else { -0.5 }) as i64;
    let r = (x - k as f64 * P1) - k as f64 * P2;
    let r2 = r * r;
    // Taylor series on |r| <= pi/4.
    let mut s = r;
    let mut c = 1.0;
    let mut ts = r;
    let mut tc = 1.0;
    // |r| <= pi/4: the terms after the eighth are below 1e-19.
    for i in 1..9 {
        let i = i as f64;
        ts *= -r2 / ((2.0 * i) * (2.0 * i + 1.0));
        tc *= -r2 / ((2.0 * i - 1.0) * (2.0 * i));
        s += ts;
        c += tc;
    }
    match k.rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// SiLU: x * sigmoid(x).
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`), with
/// tanh(y) = 1 - 2 / (exp(2y) + 1) from the libm-free [`exp`], so that the
/// vectorised form ([`geglu`]) has the same bits.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    let y = GELU_S * (x + GELU_C * x * x * x);
    let t = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
    0.5 * x * (1.0 + t)
}

/// sqrt(2/pi) and the cubic coefficient of the GELU tanh approximation.
pub(crate) const GELU_S: f32 = 0.797_884_6;
pub(crate) const GELU_C: f32 = 0.044_715;
