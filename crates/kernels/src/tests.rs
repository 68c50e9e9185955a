//! SIMD kernels against their scalar twins on odd lengths and random data,
//! and the libm-free math against std.

use std::vec::Vec;

use crate::cpu::{detect, SimdLevel};
use crate::half::{f32_to_bf16, f32_to_f16};
use crate::ops;
use crate::quant::{quantize_row_q8_0, BlockQ8_0};
use crate::scalar;

/// Xorshift random numbers for the kernel tests (shared by the test modules).
pub(crate) struct Rng(pub u64);
impl Rng {
    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

const LENGTHS: [usize; 12] = [0, 1, 3, 7, 8, 9, 15, 17, 31, 33, 100, 1027];

fn close(a: f32, b: f32, n: usize) -> bool {
    (a - b).abs() <= 1e-5 * (n as f32).sqrt().max(1.0) * (1.0 + a.abs().max(b.abs()))
}

/// The element-wise SIMD twins of this architecture (AVX2 on x86_64, NEON
/// on aarch64), with their token and the features they need.
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    pub(crate) use crate::arch::x86_64::avx2::*;
    pub(crate) const NEEDS: &str = "AVX2+FMA+F16C";
    pub(crate) type Token = crate::cpu::Avx2Token;
    pub(crate) fn token() -> Option<Token> {
        crate::cpu::avx2()
    }
}

/// The element-wise SIMD twins of this architecture (AVX2 on x86_64, NEON
/// on aarch64), with their token and the features they need.
#[cfg(target_arch = "aarch64")]
pub(crate) mod simd {
    pub(crate) use crate::arch::aarch64::neon::*;
    pub(crate) const NEEDS: &str = "NEON";
    pub(crate) type Token = crate::cpu::NeonToken;
    pub(crate) fn token() -> Option<Token> {
        crate::cpu::neon()
    }
}

/// The token of [`simd`], if this CPU has its features; says which test
/// skipped its SIMD half if not.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn simd_token(test: &str) -> Option<simd::Token> {
    let t = simd::token();
    if t.is_none() {
        skipped(test, simd::NEEDS);
    }
    t
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_dot_f32_matches_scalar() {
    let Some(tok) = simd_token("simd_dot_f32_matches_scalar") else { return };
    let mut r = Rng(1);
    for n in LENGTHS {
        let (a, b) = (r.vec(n), r.vec(n));
        let s = scalar::dot_f32(&a, &b);
        let v = simd::dot_f32(tok, &a, &b);
        assert!(close(s, v, n), "n={n}: {s} vs {v}");
    }
}

/// Runs `$body` with `$m` bound to the tile-kernel module of every SIMD
/// level this CPU has (and `$name` to the level's name).
#[cfg(target_arch = "x86_64")]
macro_rules! for_each_level {
    (|$m:ident, $name:ident| $body:block) => {{
        if detect().best_level() >= SimdLevel::Avx2 {
            #[allow(unused_imports)]
            use crate::arch::x86_64::avx2::tiles as $m;
            let $name = "avx2";
            $body
        } else {
            std::eprintln!("AVX2 not available on this CPU: comparing scalar only");
        }
        if detect().best_level() >= SimdLevel::Avx512Vnni {
            #[allow(unused_imports)]
            use crate::arch::x86_64::avx512::tiles as $m;
            let $name = "avx512vnni";
            $body
        } else {
            std::eprintln!("AVX-512 VNNI not available on this CPU: not tested");
        }
    }};
}
/// Runs `$body` with `$m` bound to the tile-kernel module of every SIMD
/// level this CPU has (and `$name` to the level's name).
#[cfg(target_arch = "aarch64")]
macro_rules! for_each_level {
    (|$m:ident, $name:ident| $body:block) => {{
        if detect().best_level() >= SimdLevel::Neon {
            #[allow(unused_imports)]
            use crate::arch::aarch64::neon::tiles as $m;
            let $name = "neon";
            $body
        } else {
            std::eprintln!("NEON not available on this CPU: comparing scalar only");
        }
        if detect().best_level() >= SimdLevel::NeonDotprod {
            #[allow(unused_imports)]
            use crate::arch::aarch64::dotprod::tiles as $m;
            let $name = "neon-dotprod";
            $body
        } else {
            std::eprintln!("NEON DotProd not available on this CPU: not tested");
        }
        if detect().best_level() >= SimdLevel::NeonI8mm {
            #[allow(unused_imports)]
            use crate::arch::aarch64::i8mm::tiles as $m;
            let $name = "neon-i8mm";
            $body
        } else {
            std::eprintln!("NEON I8MM not available on this CPU: not tested");
        }
    }};
}
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) use for_each_level;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_float_tiles_match_scalar() {
    let mut r = Rng(2);
    for n in LENGTHS {
        let (w, x) = (r.vec(n), r.vec(n));
        let h: Vec<u16> = w.iter().map(|&v| f32_to_f16(v)).collect();
        let b: Vec<u16> = w.iter().map(|&v| f32_to_bf16(v)).collect();
        for_each_level!(|t, name| {
            let s = scalar::dot_f32(&w, &x);
            let v = t::tile_f32::<1, 1>(t::token().unwrap(), [&w], [&x])[0][0];
            assert!(close(s, v, n), "{name} f32 n={n}: {s} vs {v}");
            let s = scalar::dot_f16(&h, &x);
            let v = t::tile_f16::<1, 1>(t::token().unwrap(), [&h], [&x])[0][0];
            assert!(close(s, v, n), "{name} f16 n={n}: {s} vs {v}");
            let s = scalar::dot_bf16(&b, &x);
            let v = t::tile_bf16::<1, 1>(t::token().unwrap(), [&b], [&x])[0][0];
            assert!(close(s, v, n), "{name} bf16 n={n}: {s} vs {v}");
        });
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_q8_0_tiles_match_scalar() {
    let mut r = Rng(3);
    for nb in [1usize, 2, 3, 7, 33] {
        let (w, x) = (r.vec(nb * 32), r.vec(nb * 32));
        let mut wq = std::vec![BlockQ8_0::default(); nb];
        let mut xq = std::vec![BlockQ8_0::default(); nb];
        quantize_row_q8_0(&w, &mut wq);
        quantize_row_q8_0(&x, &mut xq);
        // A weight of -128 (possible in files) must work; activations come from
        // our quantizer, which never produces -128.
        wq[0].qs[5] = -128;
        let s = scalar::dot_q8_0(&wq, &xq);
        for_each_level!(|t, name| {
            let v = t::tile_q8_0::<1, 1>(t::token().unwrap(), [&wq], [&xq])[0][0];
            assert!(close(s, v, nb * 32), "{name} nb={nb}: {s} vs {v}");
        });
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_axpy_matches_scalar() {
    let Some(tok) = simd_token("simd_axpy_matches_scalar") else { return };
    let mut r = Rng(4);
    for n in LENGTHS {
        let x = r.vec(n);
        let mut a = r.vec(n);
        let mut b = a.clone();
        scalar::axpy(&mut a, 0.7, &x);
        simd::axpy(tok, &mut b, 0.7, &x);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-6 * (1.0 + p.abs()));
        }
    }
}

#[test]
fn matvec_is_identical_for_any_thread_count() {
    struct Threads(usize);
    impl crate::exec::Executor for Threads {
        fn n_threads(&self) -> usize {
            self.0
        }
        fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
            // Run tasks in reverse order to shake out order dependence.
            for i in (0..n).rev() {
                f(i);
            }
        }
    }
    let mut r = Rng(5);
    let (rows, cols) = (301, 96);
    let w = r.vec(rows * cols);
    let x = r.vec(cols);
    let mut xq = ops::ActScratch::new(cols, 1);
    let mut out1 = std::vec![0.0; rows];
    let mut out4 = std::vec![0.0; rows];
    ops::matvec(&crate::exec::Serial, ops::Weights::F32(&w), cols, &x, &mut xq, &mut out1);
    ops::matvec(&Threads(4), ops::Weights::F32(&w), cols, &x, &mut xq, &mut out4);
    assert_eq!(out1, out4);
    for (i, &o) in out1.iter().enumerate() {
        let want: f32 = w[i * cols..(i + 1) * cols].iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!((o - want).abs() < 1e-4);
    }
}

#[test]
fn math_matches_std() {
    for i in -2000..2000 {
        let x = i as f64 * 0.0437;
        let e = ops::exp_f64(x);
        assert!((e - x.exp()).abs() <= 1e-14 * x.exp(), "exp {x}");
        let (s, c) = ops::sin_cos_f64(x * 100.0);
        assert!((s - (x * 100.0).sin()).abs() < 1e-12 && (c - (x * 100.0).cos()).abs() < 1e-12, "sincos {x}");
        if x > 0.0 {
            assert!((ops::ln_f64(x) - x.ln()).abs() < 1e-14 * (1.0 + x.ln().abs()), "ln {x}");
        }
        let xf = x as f32 / 10.0;
        assert!((ops::libm_sqrt(xf.abs()) - xf.abs().sqrt()).abs() <= 1e-7 * xf.abs().sqrt().max(1.0));
    }
    assert!((ops::powf_f64(10000.0, -0.25) - 10000f64.powf(-0.25)).abs() < 1e-15);
    assert!((ops::ln_f64(1e-310) - 1e-310f64.ln()).abs() < 1e-10);
}

#[test]
fn softmax_and_norms() {
    let mut x = [1.0f32, 2.0, 3.0, -1.0];
    ops::softmax(&mut x);
    let e: Vec<f32> = [1.0f32, 2.0, 3.0, -1.0].iter().map(|v| v.exp()).collect();
    let s: f32 = e.iter().sum();
    for (a, b) in x.iter().zip(&e) {
        assert!((a - b / s).abs() < 1e-7);
    }
    let v = [1.0f32, -2.0, 3.0];
    let mut o = [0.0; 3];
    ops::rmsnorm(&mut o, &v, &[1.0, 2.0, 0.5], 1e-5);
    let r = 1.0 / ((1.0 + 4.0 + 9.0) / 3.0 + 1e-5f32).sqrt();
    assert!((o[1] - (-2.0 * r * 2.0)).abs() < 1e-6);
    ops::layernorm(&mut o, &v, &[1.0, 1.0, 1.0], Some(&[0.0, 0.5, 0.0]), 1e-5);
    let mean = 2.0 / 3.0f32;
    let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f32>() / 3.0;
    assert!((o[1] - ((-2.0 - mean) / (var + 1e-5).sqrt() + 0.5)).abs() < 1e-5);
}

/// Owned weights of every storage type, quantized from the same f32 matrix.
pub(crate) struct AllTypes {
    pub f32: Vec<f32>,
    pub f16: Vec<u16>,
    pub bf16: Vec<u16>,
    pub q8_0: Vec<crate::quant::BlockQ8_0>,
    pub q4_0: Vec<crate::quant::BlockQ4_0>,
    pub q4_1: Vec<crate::quant::BlockQ4_1>,
    pub q5_0: Vec<crate::quant::BlockQ5_0>,
    pub q5_1: Vec<crate::quant::BlockQ5_1>,
    pub iq4_nl: Vec<crate::quant::BlockIQ4NL>,
    pub q4_k: Vec<crate::quant::BlockQ4K>,
    pub q5_k: Vec<crate::quant::BlockQ5K>,
    pub q6_k: Vec<crate::quant::BlockQ6K>,
}

impl AllTypes {
    /// A random `[rows, cols]` matrix (cols a multiple of 256) in every type.
    pub fn new(seed: u64, rows: usize, cols: usize) -> Self {
        use crate::quant::*;
        let mut r = Rng(seed);
        let w = r.vec(rows * cols);
        let mut a = AllTypes {
            f16: w.iter().map(|&v| f32_to_f16(v)).collect(),
            bf16: w.iter().map(|&v| f32_to_bf16(v)).collect(),
            q8_0: std::vec![BlockQ8_0::default(); rows * cols / 32],
            q4_0: std::vec![BlockQ4_0::default(); rows * cols / 32],
            q4_1: std::vec![BlockQ4_1::default(); rows * cols / 32],
            q5_0: std::vec![BlockQ5_0::default(); rows * cols / 32],
            q5_1: std::vec![BlockQ5_1::default(); rows * cols / 32],
            iq4_nl: std::vec![BlockIQ4NL::default(); rows * cols / 32],
            q4_k: std::vec![BlockQ4K::default(); rows * cols / 256],
            q5_k: std::vec![BlockQ5K::default(); rows * cols / 256],
            q6_k: std::vec![BlockQ6K::default(); rows * cols / 256],
            f32: w,
        };
        quantize_row_q8_0(&a.f32, &mut a.q8_0);
        quantize_row_q4_0(&a.f32, &mut a.q4_0);
        quantize_row_q4_1(&a.f32, &mut a.q4_1);
        quantize_row_q5_0(&a.f32, &mut a.q5_0);
        quantize_row_q5_1(&a.f32, &mut a.q5_1);
        quantize_row_iq4_nl(&a.f32, &mut a.iq4_nl);
        quantize_row_q4_k(&a.f32, &mut a.q4_k);
        quantize_row_q5_k(&a.f32, &mut a.q5_k);
        quantize_row_q6_k(&a.f32, &mut a.q6_k);
        a
    }

    pub fn views(&self) -> [ops::Weights<'_>; 12] {
        use ops::Weights as W;
        [
            W::F32(&self.f32),
            W::F16(&self.f16),
            W::BF16(&self.bf16),
            W::Q8_0(&self.q8_0),
            W::Q4_0(&self.q4_0),
            W::Q4_1(&self.q4_1),
            W::Q5_0(&self.q5_0),
            W::Q5_1(&self.q5_1),
            W::IQ4_NL(&self.iq4_nl),
            W::Q4_K(&self.q4_k),
            W::Q5_K(&self.q5_k),
            W::Q6_K(&self.q6_k),
        ]
    }
}

/// An executor that runs tasks in reverse order, claiming `n` threads.
pub(crate) struct Reversed(pub usize);
impl crate::exec::Executor for Reversed {
    fn n_threads(&self) -> usize {
        self.0
    }
    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        for i in (0..n).rev() {
            f(i);
        }
    }
}

/// Whether matmul uses the row-octet kernels (rows in lanes) for `w` on this
/// CPU: then it agrees with matvec to rounding, otherwise bit for bit.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn matmul_uses_row_octets(w: &ops::Weights<'_>) -> bool {
    #[cfg(target_arch = "x86_64")]
    return crate::cpu::level() >= SimdLevel::Avx512Vnni && ops::has_oct_kernel(w);
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[test]
fn matmul_equals_matvec_for_every_type() {
    let (rows, cols) = (37, 512);
    let all = AllTypes::new(21, rows, cols);
    let mut r = Rng(22);
    let xs = r.vec(9 * cols);
    let mut scratch = ops::ActScratch::new(cols, 9);
    for w in all.views() {
        let want: Vec<f32> = (0..rows)
            .map(|i| all.f32[i * cols..(i + 1) * cols].iter().zip(&xs[..cols]).map(|(a, b)| a * b).sum())
            .collect();
        for n in [1usize, 2, 3, 4, 5, 7, 9] {
            let mut mm = std::vec![0.0f32; n * rows];
            ops::matmul(&crate::exec::Serial, w, cols, &xs, n, &mut scratch, &mut mm);
            let mut mm4 = std::vec![0.0f32; n * rows];
            ops::matmul(&Reversed(4), w, cols, &xs, n, &mut scratch, &mut mm4);
            assert!(mm.iter().zip(&mm4).all(|(a, b)| a.to_bits() == b.to_bits()), "{} n={n}: threads", w.type_name());
            for j in 0..n {
                let x = &xs[j * cols..(j + 1) * cols];
                let mut mv = std::vec![0.0f32; rows];
                ops::matvec(&crate::exec::Serial, w, cols, x, &mut scratch, &mut mv);
                for (i, (&a, &b)) in mv.iter().zip(&mm[j * rows..(j + 1) * rows]).enumerate() {
                    if matmul_uses_row_octets(&w) {
                        // Within 1e-5 of the size of the terms summed.
                        let terms: f32 =
                            all.f32[i * cols..(i + 1) * cols].iter().zip(x).map(|(p, q)| (p * q).abs()).sum();
                        assert!((a - b).abs() <= 1e-5 * terms, "{} n={n} row {j} col {i}: {a} vs {b}", w.type_name());
                    } else {
                        assert_eq!(a.to_bits(), b.to_bits(), "{} n={n} row {j} col {i}: {a} vs {b}", w.type_name());
                    }
                }
            }
        }
        // And the first activation row's results are near the exact f32 products.
        let mut mv = std::vec![0.0f32; rows];
        ops::matvec(&crate::exec::Serial, w, cols, &xs[..cols], &mut scratch, &mut mv);
        let err = mv.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        // Rows of 512 uniform values: quantization noise grows with the step
        // size (about 2 / 2^bits) times sqrt(512) times the activations' rms.
        let budget = match w.type_name() {
            "F32" => 1e-4,
            "F16" | "BF16" => 0.05,
            "Q8_0" | "Q6_K" => 0.3,
            "Q5_0" | "Q5_1" | "Q5_K" => 1.0,
            _ => 2.5,
        };
        assert!(err < budget, "{}: max error {err} against f32", w.type_name());
    }
}

#[test]
#[should_panic(expected = "too small")]
fn matmul_rejects_a_small_scratch() {
    let all = AllTypes::new(23, 4, 256);
    let xs = std::vec![0.5f32; 3 * 256];
    let mut out = std::vec![0.0f32; 3 * 4];
    ops::matmul(
        &crate::exec::Serial,
        ops::Weights::Q4_0(&all.q4_0),
        256,
        &xs,
        3,
        &mut ops::ActScratch::new(256, 2),
        &mut out,
    );
}

#[test]
fn dequantize_row_matches_whole_matrix_dequantization() {
    let (rows, cols) = (3, 512);
    let all = AllTypes::new(24, rows, cols);
    let mut whole = std::vec![0.0f32; rows * cols];
    crate::quant::dequantize_row_q4_k(&all.q4_k, &mut whole);
    let mut row = std::vec![0.0f32; cols];
    ops::dequantize_row(ops::Weights::Q4_K(&all.q4_k), 2, cols, &mut row);
    assert_eq!(row, whole[2 * cols..]);
    for w in all.views() {
        ops::dequantize_row(w, 1, cols, &mut row);
        let err = row.iter().zip(&all.f32[cols..2 * cols]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err < 0.2, "{}: {err}", w.type_name());
    }
}

#[test]
fn fast_exp_is_within_two_ulp_of_std() {
    let mut worst = 0.0f64;
    let mut x = -103.0f32;
    while x < 88.7 {
        let want = f64::from(x).exp();
        let got = f64::from(ops::exp(x));
        if want > f64::from(f32::MIN_POSITIVE) {
            // Relative error in units of f32 ulps at the result.
            let ulp = f64::from(f32::EPSILON) * want;
            worst = worst.max((got - want).abs() / ulp);
        } else {
            // Subnormal results: within one subnormal step.
            assert!((got - want).abs() <= 1.5e-45, "exp({x}) = {got} vs {want}");
        }
        x += 0.0137;
    }
    assert!(worst <= 2.0, "worst error {worst} ulp");
    assert_eq!(ops::exp(0.0), 1.0);
    assert_eq!(ops::exp(-200.0), 0.0);
    assert_eq!(ops::exp(100.0), f32::INFINITY);
    assert!(ops::exp(f32::NAN).is_nan());
    assert_eq!(ops::exp(f32::NEG_INFINITY), 0.0);
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_softmax_and_swiglu_are_bit_identical_to_scalar() {
    let Some(tok) = simd_token("simd_softmax_and_swiglu_are_bit_identical_to_scalar") else { return };
    let mut r = Rng(41);
    for n in LENGTHS {
        let x: Vec<f32> = r.vec(n).iter().map(|v| v * 30.0).collect();
        let mut a = x.clone();
        let mut b = x.clone();
        scalar::softmax(&mut a);
        simd::softmax(tok, &mut b);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "softmax n={n}");
        if n > 0 {
            let s: f32 = a.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "softmax sums to {s}");
        }
        let u = r.vec(n);
        let mut a = x.clone();
        let mut b = x;
        scalar::swiglu(&mut a, &u);
        simd::swiglu(tok, &mut b, &u);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "swiglu n={n}");
    }
    // Large negative inputs (exp underflows) and huge ones.
    let mut a = [-200.0f32, -90.0, 0.0, 85.0, 88.0, -103.5, 1e-30, -1e-30, 3.0];
    let mut b = a;
    let u = [1.0f32; 9];
    scalar::swiglu(&mut a, &u);
    simd::swiglu(tok, &mut b, &u);
    assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
}

#[test]
fn rope_heads_equals_rope_per_head() {
    let mut r = Rng(42);
    for (head_dim, n_rot, neox) in [(64usize, 64usize, false), (64, 64, true), (80, 32, true), (256, 256, false)] {
        let inv: Vec<f32> =
            (0..n_rot / 2).map(|i| ops::powf_f64(10000.0, -(2.0 * i as f64) / n_rot as f64) as f32).collect();
        let v = r.vec(head_dim * 5);
        for pos in [0usize, 1, 17, 4095] {
            let mut a = v.clone();
            let mut b = v.clone();
            for h in a.chunks_exact_mut(head_dim) {
                ops::rope(h, pos, n_rot, &inv, neox);
            }
            ops::rope_heads(&mut b, head_dim, pos, n_rot, &inv, neox);
            assert_eq!(a, b, "head_dim {head_dim} n_rot {n_rot} pos {pos}");
        }
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_rmsnorm_and_geglu_are_bit_identical_to_scalar() {
    let Some(tok) = simd_token("simd_rmsnorm_and_geglu_are_bit_identical_to_scalar") else { return };
    let mut r = Rng(43);
    for n in LENGTHS {
        let x: Vec<f32> = r.vec(n).iter().map(|v| v * 7.0).collect();
        let w = r.vec(n);
        let v = scalar::sum_squares(&x);
        let exact: f64 = x.iter().map(|&a| f64::from(a) * f64::from(a)).sum();
        assert!((v - exact).abs() <= 1e-7 * exact.max(1e-30), "sum_squares n={n}: {v} vs {exact}");
        let (mut a, mut b) = (std::vec![0.0f32; n], std::vec![0.0f32; n]);
        scalar::scale_mul(&mut a, &x, 0.37, &w);
        simd::scale_mul(tok, &mut b, &x, 0.37, &w);
        assert_eq!(a, b, "scale_mul n={n}");
        for gate in [false, true] {
            let u = gate.then(|| r.vec(n));
            let (mut a, mut b) = (x.clone(), x.clone());
            scalar::geglu(&mut a, u.as_deref());
            simd::geglu(tok, &mut b, u.as_deref());
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "geglu n={n} gate={gate}");
        }
    }
    let mut a = [-200.0f32, -90.0, -10.0, 0.0, 1e-30, -1e-30, 3.0, 60.0, 1e20, f32::NAN];
    let mut b = a;
    scalar::geglu(&mut a, None);
    simd::geglu(tok, &mut b, None);
    assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
    assert_eq!(&a[..9], &[-0.0, -0.0, -0.0, 0.0, 5e-31, -5e-31, a[6], 60.0, 1e20]);
    assert!(a[9].is_nan());
}

#[test]
fn gelu_matches_the_f64_formula() {
    // GELU tanh approximation in f64, as transformers computes it.
    let gelu64 = |x: f64| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
    let mut r = Rng(44);
    for _ in 0..20000 {
        let x = r.next() * 12.0;
        let (g, want) = (ops::gelu_tanh(x), gelu64(f64::from(x)));
        assert!((f64::from(g) - want).abs() <= 3e-7 * (1.0 + want.abs()), "gelu({x}) = {g}, f64 {want}");
    }
    let mut h = std::vec![0.5f32; 37];
    let u = std::vec![2.0f32; 37];
    ops::geglu(&mut h, Some(&u));
    assert!(h.iter().all(|&v| v == 2.0 * ops::gelu_tanh(0.5)));
    let x = 0.5f32;
    let mut rms = [0.0f32; 3];
    ops::rmsnorm(&mut rms, &[x, -x, 2.0 * x], &[1.0, 2.0, 3.0], 0.0);
    let s = 1.0 / ((x * x * 6.0) / 3.0).sqrt();
    assert!(rms.iter().zip([x * s, -2.0 * x * s, 6.0 * x * s]).all(|(a, b)| (a - b).abs() < 1e-6), "{rms:?}");
}

#[test]
fn batched_attention_equals_one_query_at_a_time() {
    let (n_heads, n_kv_heads, head_dim, n_ctx) = (6, 2, 12, 40);
    let kv_dim = n_kv_heads * head_dim;
    let q_dim = n_heads * head_dim;
    let mut r = Rng(45);
    let k = r.vec(n_ctx * kv_dim);
    let v = r.vec(n_ctx * kv_dim);
    let (pos0, n) = (9, 13);
    let q = r.vec(n * q_dim);
    let shape = ops::AttnShape { n_heads, n_kv_heads, head_dim, n_ctx };
    for window in [None, Some(5usize)] {
        let start = |pos: usize| window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let mut att = std::vec![0.0f32; n_heads * n_ctx];
        let mut batched = std::vec![0.0f32; n * q_dim];
        ops::attention_batch(
            &Reversed(3),
            &q,
            ops::KvSlice::F32(&k),
            ops::KvSlice::F32(&v),
            &mut att,
            &mut batched,
            n,
            shape,
            pos0,
            &start,
            0.3,
        );
        for b in 0..n {
            let mut one = std::vec![0.0f32; q_dim];
            let p = pos0 + b;
            ops::attention_batch(
                &crate::exec::Serial,
                &q[b * q_dim..(b + 1) * q_dim],
                ops::KvSlice::F32(&k),
                ops::KvSlice::F32(&v),
                &mut att,
                &mut one,
                1,
                shape,
                p,
                &start,
                0.3,
            );
            assert_eq!(one, batched[b * q_dim..(b + 1) * q_dim], "window {window:?} query {b}");
            // Against the formula in f64 for head 0 (KV head 0).
            let qh = &q[b * q_dim..b * q_dim + head_dim];
            let scores: Vec<f64> = (start(p)..=p)
                .map(|t| {
                    qh.iter()
                        .zip(&k[t * kv_dim..t * kv_dim + head_dim])
                        .map(|(a, c)| f64::from(*a) * f64::from(*c))
                        .sum::<f64>()
                        * 0.3
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
            for d in 0..head_dim {
                let want: f64 =
                    (start(p)..=p).zip(&scores).map(|(t, s)| (s - m).exp() / z * f64::from(v[t * kv_dim + d])).sum();
                assert!((f64::from(one[d]) - want).abs() < 1e-5, "query {b} dim {d}: {} vs {want}", one[d]);
            }
        }
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_rope_rotation_is_bit_identical_to_scalar() {
    let Some(tok) = simd_token("simd_rope_rotation_is_bit_identical_to_scalar") else { return };
    let mut r = Rng(46);
    for n in LENGTHS.iter().copied().filter(|&n| n <= 100) {
        let cos = r.vec(n);
        let sin = r.vec(n);
        for start in [0usize, 3] {
            for neox in [false, true] {
                let off = start + n + 5;
                let len = if neox { off + start + n + 2 } else { 2 * (start + n) + 3 };
                let h = r.vec(len);
                let (mut a, mut b) = (h.clone(), h.clone());
                scalar::rotate_pairs(&mut a, start, &cos, &sin, neox, off);
                simd::rotate_pairs(tok, &mut b, start, &cos, &sin, neox, off);
                assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "n={n} start={start} neox={neox}");
                if n > 0 {
                    assert_ne!(a, h, "n={n}: nothing rotated");
                }
            }
        }
    }
}

/// Says on stderr that `test` did not run its SIMD half: this CPU lacks `feature`.
pub(crate) fn skipped(test: &str, feature: &str) {
    std::eprintln!("SKIPPED: {test}: needs {feature}");
}

/// A std-thread [`Executor`](crate::exec::Executor) for the tests (the host's
/// pool lives in the `host` crate): `.0` scoped threads claim task indices
/// from one counter.
struct Threads(usize);

impl crate::exec::Executor for Threads {
    fn n_threads(&self) -> usize {
        self.0
    }
    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n_tasks {
                break;
            }
            f(i);
        };
        std::thread::scope(|s| {
            for _ in 1..self.0 {
                s.spawn(work);
            }
            work();
        });
    }
}

#[test]
fn matmul_of_every_type_is_identical_on_1_2_and_4_threads() {
    let (rows, cols, n) = (301, 512, 7);
    let all = AllTypes::new(31, rows, cols);
    let xs: Vec<f32> = (0..n * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let mut scratch = ops::ActScratch::new(cols, n);
    let pools = [Threads(1), Threads(2), Threads(4)];
    for w in all.views() {
        let outs: Vec<Vec<f32>> = pools
            .iter()
            .map(|p| {
                let mut out = std::vec![0.0f32; n * rows];
                ops::matmul(p, w, cols, &xs, n, &mut scratch, &mut out);
                out
            })
            .collect();
        for o in &outs[1..] {
            assert!(o.iter().zip(&outs[0]).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", w.type_name());
        }
        let mut mv = std::vec![0.0f32; rows];
        ops::matvec(&pools[2], w, cols, &xs[..cols], &mut scratch, &mut mv);
        if matmul_uses_row_octets(&w) {
            assert!(mv.iter().zip(&outs[0]).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + a.abs())), "{}", w.type_name());
        } else {
            assert!(mv.iter().zip(&outs[0]).all(|(a, b)| a.to_bits() == b.to_bits()), "{} matvec", w.type_name());
        }
    }
}

/// `LBM_EXPECT_SIMD` (set by `cargo xtask test-aarch64` for each QEMU CPU
/// model it runs the tests on) names the level detection must find.
#[test]
fn detected_level_is_the_expected_one() {
    let Ok(want) = std::env::var("LBM_EXPECT_SIMD") else {
        crate::tests::skipped("detected_level_is_the_expected_one", "LBM_EXPECT_SIMD");
        return;
    };
    assert_eq!(detect().best_level().name(), want.trim(), "features detected: {:?}", detect());
}
