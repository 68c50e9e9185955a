//! Portable reference kernels. Every SIMD kernel has its twin here and is
//! tested against it.

use crate::half::{bf16_to_f32, f16_to_f32};
use crate::quant::{
    scale_min_k4, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4Kx8, BlockQ4_0, BlockQ4_0x8, BlockQ4_1,
    BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ6Kx8, BlockQ8K, BlockQ8_0, BlockQ8_1,
};

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

/// Dot product of a Q4_0 weight row with Q8_0 activations, in integers per block.
pub fn dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut isum = 0i32;
        for j in 0..16 {
            isum += (i32::from(a.qs[j] & 0xF) - 8) * i32::from(b.qs[j]);
            isum += (i32::from(a.qs[j] >> 4) - 8) * i32::from(b.qs[j + 16]);
        }
        s += f16_to_f32(a.d) * f16_to_f32(b.d) * isum as f32;
    }
    s
}

/// Dot product of an IQ4_NL weight row with Q8_0 activations, in integers
/// per block (the table values times the activations).
pub fn dot_iq4_nl(w: &[BlockIQ4NL], x: &[BlockQ8_0]) -> f32 {
    let kv = |q: u8| i32::from(crate::quant::KVALUES_IQ4NL[usize::from(q)]);
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut isum = 0i32;
        for j in 0..16 {
            isum += kv(a.qs[j] & 0xF) * i32::from(b.qs[j]) + kv(a.qs[j] >> 4) * i32::from(b.qs[j + 16]);
        }
        s += f16_to_f32(a.d) * f16_to_f32(b.d) * isum as f32;
    }
    s
}

/// Dot product of a Q4_1 weight row with Q8_1 activations, as ggml: per
/// block d4 * d8 * sum(q4 * q8) (integers) + m4 * s8.
pub fn dot_q4_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut isum = 0i32;
        for j in 0..16 {
            isum += i32::from(a.qs[j] & 0xF) * i32::from(b.qs[j]);
            isum += i32::from(a.qs[j] >> 4) * i32::from(b.qs[j + 16]);
        }
        s += f16_to_f32(a.d) * f16_to_f32(b.d) * isum as f32 + f16_to_f32(a.m) * f16_to_f32(b.s);
    }
    s
}

/// Dot product of a Q5_1 weight row with Q8_1 activations, as ggml: per
/// block d5 * d8 * sum(q5 * q8) (integers) + m5 * s8.
pub fn dot_q5_1(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut isum = 0i32;
        for (j, &q) in b.qs.iter().enumerate() {
            isum += i32::from(crate::quant::q5_1_value(a, j)) * i32::from(q);
        }
        s += f16_to_f32(a.d) * f16_to_f32(b.d) * isum as f32 + f16_to_f32(a.m) * f16_to_f32(b.s);
    }
    s
}

/// Dots of the eight rows of a Q4_0 octet (`nb` interleaved blocks) with
/// Q8_0 activations: `out[r]` = row r . x, in integers per block.
pub fn dot_q4_0x8(w: &[BlockQ4_0x8], x: &[BlockQ8_0]) -> [f32; 8] {
    let mut s = [0.0f32; 8];
    for (a, b) in w.iter().zip(x) {
        let dx = f16_to_f32(b.d);
        for (r, acc) in s.iter_mut().enumerate() {
            let mut isum = 0i32;
            for k in 0..4 {
                for j in 0..4 {
                    let q = a.qs[32 * k + 4 * r + j];
                    isum += (i32::from(q & 0xF) - 8) * i32::from(b.qs[4 * k + j]);
                    isum += (i32::from(q >> 4) - 8) * i32::from(b.qs[16 + 4 * k + j]);
                }
            }
            *acc += f16_to_f32(a.d[r]) * dx * isum as f32;
        }
    }
    s
}

/// Dot product of a Q5_0 weight row with Q8_0 activations, in integers per block.
pub fn dot_q5_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let qh = u32::from_le_bytes(a.qh);
        let mut isum = 0i32;
        for j in 0..16 {
            let lo = i32::from(a.qs[j] & 0xF) | (((qh >> j) & 1) << 4) as i32;
            let hi = i32::from(a.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as i32;
            isum += (lo - 16) * i32::from(b.qs[j]) + (hi - 16) * i32::from(b.qs[j + 16]);
        }
        s += f16_to_f32(a.d) * f16_to_f32(b.d) * isum as f32;
    }
    s
}

/// Dot product of a Q4_K weight row with Q8_K activations: per super-block,
/// sum(sc * q4 . q8) and sum(m * bsums) in integers, then two float terms.
pub fn dot_q4_k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &a.scales);
            let (c, hi) = (j / 2, j % 2 == 1);
            let mut p = 0i32;
            for i in 0..32 {
                let q = a.qs[32 * c + i];
                let q = if hi { q >> 4 } else { q & 0xF };
                p += i32::from(q) * i32::from(b.qs[32 * j + i]);
            }
            sumi += i32::from(sc) * p;
            summ += i32::from(m) * (i32::from(b.bsums[2 * j]) + i32::from(b.bsums[2 * j + 1]));
        }
        let d = f16_to_f32(a.d) * b.d;
        let dmin = f16_to_f32(a.dmin) * b.d;
        s += d * sumi as f32 - dmin * summ as f32;
    }
    s
}

/// Dots of the eight rows of a Q4_K octet (`nb` interleaved super-blocks)
/// with Q8_K activations: `out[r]` = row r . x, as [`dot_q4_k`] per row.
pub fn dot_q4_kx8(w: &[BlockQ4Kx8], x: &[BlockQ8K]) -> [f32; 8] {
    core::array::from_fn(|r| w.iter().zip(x).map(|(a, b)| dot_q4_k(&[a.row(r)], core::slice::from_ref(b))).sum())
}

/// Dots of the eight rows of a Q6_K octet with Q8_K activations, as
/// [`dot_q6_k`] per row.
pub fn dot_q6_kx8(w: &[BlockQ6Kx8], x: &[BlockQ8K]) -> [f32; 8] {
    core::array::from_fn(|r| w.iter().zip(x).map(|(a, b)| dot_q6_k(&[a.row(r)], core::slice::from_ref(b))).sum())
}

/// Dot product of a Q5_K weight row with Q8_K activations (as [`dot_q4_k`]).
pub fn dot_q5_k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &a.scales);
            let (c, hi) = (j / 2, j % 2 == 1);
            let mut p = 0i32;
            for i in 0..32 {
                let q = a.qs[32 * c + i];
                let q = if hi { q >> 4 } else { q & 0xF };
                let h = (a.qh[i] >> j) & 1;
                p += i32::from(q | (h << 4)) * i32::from(b.qs[32 * j + i]);
            }
            sumi += i32::from(sc) * p;
            summ += i32::from(m) * (i32::from(b.bsums[2 * j]) + i32::from(b.bsums[2 * j + 1]));
        }
        let d = f16_to_f32(a.d) * b.d;
        let dmin = f16_to_f32(a.dmin) * b.d;
        s += d * sumi as f32 - dmin * summ as f32;
    }
    s
}

/// Dot product of a Q2_K weight row with Q8_K activations: per super-block,
/// sum(sc * q2 . q8) and sum(m * bsums) in integers, then two float terms
/// (d * y.d and dmin * y.d, as ggml).
pub fn dot_q2_k(w: &[BlockQ2K], x: &[BlockQ8K]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let (mut isum, mut summs) = (0i32, 0i32);
        for g in 0..16 {
            let mut p = 0i32;
            for i in 16 * g..16 * g + 16 {
                p += i32::from(crate::quant::k2_value(&a.qs, i)) * i32::from(b.qs[i]);
            }
            isum += i32::from(a.scales[g] & 0xF) * p;
            summs += i32::from(a.scales[g] >> 4) * i32::from(b.bsums[g]);
        }
        let dall = b.d * f16_to_f32(a.d);
        let dmin = b.d * f16_to_f32(a.dmin);
        s += dall * isum as f32 - dmin * summs as f32;
    }
    s
}

/// Dot product of a Q3_K weight row with Q8_K activations: per super-block,
/// sum((sc - 32) * q3 . q8) in integers, then one float term.
pub fn dot_q3_k(w: &[BlockQ3K], x: &[BlockQ8K]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut isum = 0i32;
        for g in 0..16 {
            let mut p = 0i32;
            for i in 16 * g..16 * g + 16 {
                p += i32::from(crate::quant::q3_k_value(a, i)) * i32::from(b.qs[i]);
            }
            isum += (i32::from(crate::quant::q3_k_scale(&a.scales, g)) - 32) * p;
        }
        s += f16_to_f32(a.d) * b.d * isum as f32;
    }
    s
}

/// Dot product of an IQ4_XS weight row with Q8_K activations: per
/// super-block, sum((ls - 32) * table[q] . q8) in integers, then one float
/// term.
pub fn dot_iq4_xs(w: &[BlockIQ4XS], x: &[BlockQ8K]) -> f32 {
    let kv = |q: u8| i32::from(crate::quant::KVALUES_IQ4NL[usize::from(q)]);
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut isum = 0i32;
        for ib in 0..8 {
            let (q, y) = (&a.qs[16 * ib..16 * ib + 16], &b.qs[32 * ib..32 * ib + 32]);
            let mut p = 0i32;
            for j in 0..16 {
                p += kv(q[j] & 0xF) * i32::from(y[j]) + kv(q[j] >> 4) * i32::from(y[j + 16]);
            }
            isum += (i32::from(crate::quant::iq4_xs_scale(a, ib)) - 32) * p;
        }
        s += f16_to_f32(a.d) * b.d * isum as f32;
    }
    s
}

/// Dot product of a Q6_K weight row with Q8_K activations: per super-block,
/// sum(sc * (q6 - 32) . q8) in integers, then one float term.
pub fn dot_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    let mut s = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut sumi = 0i32;
        for g in 0..16 {
            let mut p = 0i32;
            for i in 16 * g..16 * g + 16 {
                p += (i32::from(crate::quant::q6_k_value(a, i)) - 32) * i32::from(b.qs[i]);
            }
            sumi += i32::from(a.scales[g]) * p;
        }
        s += f16_to_f32(a.d) * b.d * sumi as f32;
    }
    s
}

/// out[i] += a * x[i]
pub fn axpy(out: &mut [f32], a: f32, x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// Softmax in place; the sum runs in eight lanes combined as `avx2::hsum`.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut lanes = [0.0f32; 8];
    let n8 = x.len() / 8 * 8;
    for c in x[..n8].chunks_exact_mut(8) {
        for (l, v) in lanes.iter_mut().zip(c.iter_mut()) {
            *v = crate::math::exp(*v - max);
            *l += *v;
        }
    }
    let mut sum = hsum8(&lanes);
    for v in &mut x[n8..] {
        *v = crate::math::exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Eight lanes summed in the order of `avx2::hsum`: (0+4, 1+5, 2+6, 3+7), then
/// (a0+a2, a1+a3), then b0+b1.
pub fn hsum8(l: &[f32; 8]) -> f32 {
    let a = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let b = [a[0] + a[2], a[1] + a[3]];
    b[0] + b[1]
}

/// Sum of squares as ggml's RMSNorm takes it: each square in f32, summed
/// in order in f64. (One pass over a row of the model's width per norm: its
/// cost is nothing next to the matrix products, and the f64 sum is both
/// more exact and what llama.cpp computes, so greedy runs agree with it.)
pub fn sum_squares(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v * v)).sum()
}

/// `out[i] = x[i] * s * w[i]` (RMSNorm's scaling).
pub fn scale_mul(out: &mut [f32], x: &[f32], s: f32, w: &[f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * s * g;
    }
}

/// `h[i] = gelu_tanh(h[i]) * u[i]` (GeGLU), or `h[i] = gelu_tanh(h[i])`
/// without `u`.
pub fn geglu(h: &mut [f32], u: Option<&[f32]>) {
    match u {
        Some(u) => h.iter_mut().zip(u).for_each(|(a, &b)| *a = crate::math::gelu_tanh(*a) * b),
        None => h.iter_mut().for_each(|a| *a = crate::math::gelu_tanh(*a)),
    }
}

/// Rotates pairs `start..start + cos.len()` of one head by the angles whose
/// cosines and sines are `cos`, `sin`: pairs (i, i + off) when `neox`,
/// otherwise (2i, 2i + 1) (RoPE).
pub fn rotate_pairs(h: &mut [f32], start: usize, cos: &[f32], sin: &[f32], neox: bool, off: usize) {
    for (k, (&c, &s)) in cos.iter().zip(sin).enumerate() {
        let i = start + k;
        let (a, b) = if neox { (i, i + off) } else { (2 * i, 2 * i + 1) };
        let (x0, x1) = (h[a], h[b]);
        h[a] = x0 * c - x1 * s;
        h[b] = x0 * s + x1 * c;
    }
}

/// `h[i] = silu(h[i]) * u[i]`.
pub fn swiglu(h: &mut [f32], u: &[f32]) {
    for (a, &b) in h.iter_mut().zip(u) {
        *a = crate::math::silu(*a) * b;
    }
}
