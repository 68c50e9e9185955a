//! The kernels the engine calls: each picks its implementation from the
//! cached SIMD level, so callers never see `#[target_feature]` functions.

use crate::cpu::{level, SimdLevel};
use crate::exec::Executor;
use crate::quant::{quantize_row_q8_0, BlockQ8_0, QK8_0};
use crate::scalar;

/// A weight matrix, row-major `[rows, cols]`, in one of the storage types.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    BF16(&'a [u16]),
    Q8_0(&'a [BlockQ8_0]),
}

impl Weights<'_> {
    /// Whether matvec needs the activations quantized to Q8_0 first.
    pub fn needs_q8_0_activations(&self) -> bool {
        matches!(self, Weights::Q8_0(_))
    }
}

/// Whether the AVX2 kernels may run.
#[inline]
fn simd() -> bool {
    cfg!(target_arch = "x86_64") && level() >= SimdLevel::Avx2
}

/// Dot product of two f32 rows.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: level() >= Avx2 means AVX2, FMA and F16C are present and enabled.
        return unsafe { crate::avx2::dot_f32(a, b) };
    }
    scalar::dot_f32(a, b)
}

/// out += a * x
#[inline]
pub fn axpy(out: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: level() >= Avx2 means AVX2 and FMA are present and enabled.
        return unsafe { crate::avx2::axpy(out, a, x) };
    }
    scalar::axpy(out, a, x)
}

/// Dot product of row `r` of `w` (with `cols` columns) and the activations.
#[inline]
fn row_dot(w: Weights<'_>, r: usize, cols: usize, x: &[f32], xq: &[BlockQ8_0]) -> f32 {
    let fast = simd();
    match w {
        Weights::F32(m) => {
            let row = &m[r * cols..(r + 1) * cols];
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: AVX2 + FMA checked by simd().
                return unsafe { crate::avx2::dot_f32(row, x) };
            }
            scalar::dot_f32(row, x)
        }
        Weights::F16(m) => {
            let row = &m[r * cols..(r + 1) * cols];
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: AVX2 + FMA + F16C checked by simd().
                return unsafe { crate::avx2::dot_f16(row, x) };
            }
            scalar::dot_f16(row, x)
        }
        Weights::BF16(m) => {
            let row = &m[r * cols..(r + 1) * cols];
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: AVX2 + FMA checked by simd().
                return unsafe { crate::avx2::dot_bf16(row, x) };
            }
            scalar::dot_bf16(row, x)
        }
        Weights::Q8_0(m) => {
            let nb = cols / QK8_0;
            let row = &m[r * nb..(r + 1) * nb];
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: AVX2 + FMA + F16C checked by simd().
                return unsafe { crate::avx2::dot_q8_0(row, xq) };
            }
            scalar::dot_q8_0(row, xq)
        }
    }
}

/// A pointer that tasks on other cores may write through, each to its own
/// disjoint range.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: used only by `par_rows`, whose tasks write disjoint index ranges.
unsafe impl Sync for SharedOut {}
// SAFETY: as above.
unsafe impl Send for SharedOut {}

/// Calls `f(i)` for every `i < n` on the executor, storing each result in
/// `out[i]`. Rows are grouped into chunks; each chunk is one task.
pub fn par_rows(exec: &dyn Executor, out: &mut [f32], f: &(dyn Fn(usize) -> f32 + Sync)) {
    let n = out.len();
    let threads = exec.n_threads().max(1);
    if threads == 1 || n < 64 {
        for (i, o) in out.iter_mut().enumerate() {
            *o = f(i);
        }
        return;
    }
    let chunk = n.div_ceil(threads * 4).max(16);
    let tasks = n.div_ceil(chunk);
    let ptr = SharedOut(out.as_mut_ptr());
    exec.run(tasks, &|t| {
        let p = ptr;
        let start = t * chunk;
        let end = (start + chunk).min(n);
        for i in start..end {
            let v = f(i);
            // SAFETY: i < n = out.len(), and each task owns the disjoint range
            // [start, end); `out` outlives exec.run, which returns only after
            // every task has finished.
            unsafe { *p.0.add(i) = v };
        }
    });
}

/// `out = W x` for W row-major `[rows, cols]`. `xq` is scratch for the
/// quantized activations (at least `cols / 32` blocks when W is quantized).
/// The result for each row does not depend on the thread count.
pub fn matvec(exec: &dyn Executor, w: Weights<'_>, cols: usize, x: &[f32], xq: &mut [BlockQ8_0], out: &mut [f32]) {
    let x = &x[..cols];
    let xq: &[BlockQ8_0] = if w.needs_q8_0_activations() {
        let nb = cols / QK8_0;
        quantize_row_q8_0(x, &mut xq[..nb]);
        &xq[..nb]
    } else {
        &[]
    };
    par_rows(exec, out, &|r| row_dot(w, r, cols, x, xq));
}

/// RMSNorm: out = x / sqrt(mean(x^2) + eps) * w
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / libm_sqrt(ss + eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * s * g;
    }
}

/// LayerNorm: out = (x - mean) / sqrt(var + eps) * w (+ b)
pub fn layernorm(out: &mut [f32], x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let s = 1.0 / libm_sqrt(var + eps);
    for (i, ((o, &v), &g)) in out.iter_mut().zip(x).zip(w).enumerate() {
        *o = (v - mean) * s * g + b.map_or(0.0, |b| b[i]);
    }
}

/// In-place softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// SiLU: x * sigmoid(x).
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const S: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + tanh(S * (x + 0.044_715 * x * x * x)))
}

/// Rotates pairs of `v` (one head of `head_dim` values) for position `pos`,
/// on the first `n_rot` dimensions. `neox` rotates (i, i + n_rot/2) pairs
/// (Hugging Face / NeoX layout); otherwise adjacent pairs (2i, 2i+1) as
/// llama2.c and ggml's normal mode. `inv_freq[i]` = base^(-2i/n_rot).
pub fn rope(v: &mut [f32], pos: usize, n_rot: usize, inv_freq: &[f32], neox: bool) {
    let half = n_rot / 2;
    for (i, &f) in inv_freq.iter().enumerate().take(half) {
        let angle = pos as f32 * f;
        let (s, c) = sin_cos(angle);
        let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
        let (x0, x1) = (v[a], v[b]);
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

// ---- libm-free math (core has no transcendental functions) ----

/// Square root. `core` has no `sqrt` on f32 in no_std; SSE2 has it in hardware.
#[inline]
pub fn libm_sqrt(x: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_cvtss_f32, _mm_set_ss, _mm_sqrt_ss};
        // SAFETY: SSE is part of the x86_64 baseline and of our UEFI target
        // spec (+sse,+sse2), so these instructions always exist.
        unsafe { _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))) }
    }
    #[cfg(not(target_arch = "x86_64"))]
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

/// e^x, accurate to about 1 ulp over the range that matters (computed in f64).
#[inline]
pub fn exp(x: f32) -> f32 {
    exp_f64(f64::from(x)) as f32
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

/// tanh in f32 via exp.
#[inline]
pub fn tanh(x: f32) -> f32 {
    let x = f64::from(x);
    if x > 20.0 {
        return 1.0;
    }
    if x < -20.0 {
        return -1.0;
    }
    let e = exp_f64(2.0 * x);
    ((e - 1.0) / (e + 1.0)) as f32
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
    for i in 1..12 {
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

/// Attention for one query position over the KV cache of one layer.
///
/// - `q`: `[n_heads * head_dim]`
/// - `k_cache`, `v_cache`: `[n_ctx, n_kv_heads * head_dim]`, positions `start..=pos` valid
/// - `att`: scratch `[n_heads, n_ctx]`
/// - `out`: `[n_heads * head_dim]`
///
/// Heads run in parallel; query head h reads KV head `h / (n_heads / n_kv_heads)`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    exec: &dyn Executor,
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    att: &mut [f32],
    out: &mut [f32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    n_ctx: usize,
    start: usize,
    pos: usize,
    scale: f32,
) {
    let kv_dim = n_kv_heads * head_dim;
    let group = n_heads / n_kv_heads;
    let att_ptr = SharedOut(att.as_mut_ptr());
    let out_ptr = SharedOut(out.as_mut_ptr());
    let att_len = att.len();
    let out_len = out.len();
    assert!(att_len >= n_heads * n_ctx && out_len >= n_heads * head_dim && pos < n_ctx && start <= pos);
    let task = |h: usize| {
        let (ap, op) = (att_ptr, out_ptr);
        // SAFETY: head h owns att[h*n_ctx..(h+1)*n_ctx] and out[h*head_dim..(h+1)*head_dim];
        // both ranges are in bounds (asserted above) and disjoint across heads; the
        // slices outlive exec.run, which returns only after every task finished.
        let (a, o) = unsafe {
            (
                core::slice::from_raw_parts_mut(ap.0.add(h * n_ctx), n_ctx),
                core::slice::from_raw_parts_mut(op.0.add(h * head_dim), head_dim),
            )
        };
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let kvh = h / group;
        let a = &mut a[start..=pos];
        for (t, s) in (start..=pos).zip(a.iter_mut()) {
            let k = &k_cache[t * kv_dim + kvh * head_dim..][..head_dim];
            *s = dot_f32(qh, k) * scale;
        }
        softmax(a);
        o.fill(0.0);
        for (t, &w) in (start..=pos).zip(a.iter()) {
            let v = &v_cache[t * kv_dim + kvh * head_dim..][..head_dim];
            axpy(o, w, v);
        }
    };
    if exec.n_threads() > 1 && n_heads > 1 {
        exec.run(n_heads, &task);
    } else {
        for h in 0..n_heads {
            task(h);
        }
    }
}
