//! Portable reference kernels. Every SIMD kernel has its twin here and is
//! tested against it.

use crate::half::{bf16_to_f32, f16_to_f32};
use crate::quant::BlockQ8_0;

/// Dot product of two f32 rows.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, like the SIMD kernels, for similar rounding.
    let mut acc = [0.0f32; 8];
    let n8 = a.len() / 8 * 8;
    for (ca, cb) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in a[n8..].iter().zip(&b[n8..]) {
        s += x * y;
    }
    s
}

/// Dot product of an F16 weight row with an f32 row.
pub fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(&h, &v)| f16_to_f32(h) * v).sum()
}

/// Dot product of a BF16 weight row with an f32 row.
pub fn dot_bf16(w: &[u16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(&h, &v)| bf16_to_f32(h) * v).sum()
}

/// Dot product of a Q8_0 weight row with Q8_0-quantized activations, in
/// integers per block (as ggml does).
pub fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let isum: i32 = a.qs.iter().zip(&b.qs).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum();
        s += f16_to_f32(a.d) * f16_to_f32(b.d) * isum as f32;
    }
    s
}

/// out[i] += a * x[i]
pub fn axpy(out: &mut [f32], a: f32, x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o += a * v;
    }
}
