//! SIMD kernels against their scalar twins on odd lengths and random data,
//! and the libm-free math against std.

use std::vec::Vec;

use crate::cpu::{detect, SimdLevel};
use crate::half::{f32_to_bf16, f32_to_f16};
use crate::ops;
use crate::quant::{quantize_row_q8_0, BlockQ8_0};
use crate::scalar;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

const LENGTHS: [usize; 12] = [0, 1, 3, 7, 8, 9, 15, 17, 31, 33, 100, 1027];

fn close(a: f32, b: f32, n: usize) -> bool {
    (a - b).abs() <= 1e-5 * (n as f32).sqrt().max(1.0) * (1.0 + a.abs().max(b.abs()))
}

#[cfg(target_arch = "x86_64")]
fn have_avx2() -> bool {
    let ok = detect().best_level() >= SimdLevel::Avx2;
    if !ok {
        std::eprintln!("AVX2 not available on this CPU: comparing scalar only");
    }
    ok
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_dot_f32_matches_scalar() {
    if !have_avx2() {
        return;
    }
    let mut r = Rng(1);
    for n in LENGTHS {
        let (a, b) = (r.vec(n), r.vec(n));
        let s = scalar::dot_f32(&a, &b);
        // SAFETY: AVX2 checked above.
        let v = unsafe { crate::avx2::dot_f32(&a, &b) };
        assert!(close(s, v, n), "n={n}: {s} vs {v}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_dot_f16_bf16_match_scalar() {
    if !have_avx2() {
        return;
    }
    let mut r = Rng(2);
    for n in LENGTHS {
        let (w, x) = (r.vec(n), r.vec(n));
        let h: Vec<u16> = w.iter().map(|&v| f32_to_f16(v)).collect();
        let b: Vec<u16> = w.iter().map(|&v| f32_to_bf16(v)).collect();
        let s = scalar::dot_f16(&h, &x);
        // SAFETY: AVX2 + F16C checked above.
        let v = unsafe { crate::avx2::dot_f16(&h, &x) };
        assert!(close(s, v, n), "f16 n={n}: {s} vs {v}");
        let s = scalar::dot_bf16(&b, &x);
        // SAFETY: AVX2 checked above.
        let v = unsafe { crate::avx2::dot_bf16(&b, &x) };
        assert!(close(s, v, n), "bf16 n={n}: {s} vs {v}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_dot_q8_0_matches_scalar() {
    if !have_avx2() {
        return;
    }
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
        // SAFETY: AVX2 checked above.
        let v = unsafe { crate::avx2::dot_q8_0(&wq, &xq) };
        assert!(close(s, v, nb * 32), "nb={nb}: {s} vs {v}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_axpy_matches_scalar() {
    if !have_avx2() {
        return;
    }
    let mut r = Rng(4);
    for n in LENGTHS {
        let x = r.vec(n);
        let mut a = r.vec(n);
        let mut b = a.clone();
        scalar::axpy(&mut a, 0.7, &x);
        // SAFETY: AVX2 checked above.
        unsafe { crate::avx2::axpy(&mut b, 0.7, &x) };
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
    let mut xq = std::vec![BlockQ8_0::default(); cols / 32];
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
        assert!((ops::tanh(xf) - xf.tanh()).abs() < 1e-6);
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
