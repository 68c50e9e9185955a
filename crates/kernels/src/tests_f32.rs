//! The zmm F32 tiles (`avx512_f32`) against their scalar twin on odd shapes,
//! and the F32 matmul against matvec (bit for bit) and across thread counts.

#[cfg(target_arch = "x86_64")]
use std::vec::Vec;

#[cfg(target_arch = "x86_64")]
use crate::cpu::SimdLevel;
use crate::ops;
use crate::tests::Rng;

#[cfg(target_arch = "x86_64")]
/// `|a - b|` within `1e-5` of the sum of the magnitudes of the terms of
/// `out[j * rows + r]`.
fn check_close(w: &[f32], xs: &[f32], cols: usize, rows: usize, a: &[f32], b: &[f32], what: &str) {
    for (i, (&p, &q)) in a.iter().zip(b).enumerate() {
        let (j, r) = (i / rows, i % rows);
        let terms: f32 =
            w[r * cols..(r + 1) * cols].iter().zip(&xs[j * cols..(j + 1) * cols]).map(|(u, v)| (u * v).abs()).sum();
        assert!((p - q).abs() <= 1e-5 * terms + 1e-30, "{what}: activation {j} row {r}: {p} vs {q}");
    }
}

#[cfg(target_arch = "x86_64")]
fn have_avx512() -> bool {
    let ok = cfg!(target_arch = "x86_64") && crate::cpu::level() >= SimdLevel::Avx512Vnni;
    if !ok {
        std::eprintln!("AVX-512 VNNI not available on this CPU: skipping the packed F32 GEMM");
    }
    ok
}

#[cfg(target_arch = "x86_64")]
#[test]
fn zmm_f32_tiles_match_scalar_twin() {
    use crate::arch::x86_64::avx512_f32::{gemm_ref, rows as f32_rows, scratch_len};
    if !have_avx512() {
        crate::tests::skipped("zmm_f32_tiles_match_scalar_twin", "AVX-512 VNNI");
        return;
    }
    let tok = crate::cpu::avx512_vnni().expect("AVX-512 VNNI detected");
    let mut rng = Rng(0x5eed);
    for &rows in &[1usize, 3, 5, 6, 7, 12, 13, 33] {
        for &cols in &[0usize, 1, 7, 8, 9, 15, 16, 17, 24, 127, 128, 129, 300, 1030, 1048] {
            for &n in &[1usize, 2, 3, 4, 5, 6, 7, 11, 13, 25] {
                let w = rng.vec(rows * cols);
                let xs = rng.vec(n * cols);
                let mut want = std::vec![0.0f32; n * rows];
                gemm_ref(&w, cols, &xs, n, &mut want);
                // Row runs starting at every offset `step` apart: the bits must not
                // depend on how rows are split.
                let mut first: Option<Vec<f32>> = None;
                for step in [rows, 5, 1] {
                    let mut got = std::vec![f32::NAN; n * rows];
                    let mut buf = std::vec![f32::NAN; scratch_len(cols, n)];
                    let mut r0 = 0;
                    while r0 < rows {
                        let r1 = (r0 + step).min(rows);
                        // SAFETY: the token proves the features; out[j * rows + r]
                        // for j < n, r < r1 is inside `got`; one thread.
                        unsafe { f32_rows(tok, &w, cols, &xs, cols, n, r0, r1, got.as_mut_ptr(), rows, &mut buf) };
                        r0 = r1;
                    }
                    let what = std::format!("rows {rows} cols {cols} n {n} step {step}");
                    check_close(&w, &xs, cols, rows, &got, &want, &what);
                    match &first {
                        None => first = Some(got),
                        Some(f) => assert!(f.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{what}"),
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn scalar_twin_is_near_exact() {
    let mut rng = Rng(7);
    let (rows, cols, n) = (9, 301, 4);
    let (w, xs) = (rng.vec(rows * cols), rng.vec(n * cols));
    let mut got = std::vec![0.0f32; n * rows];
    crate::arch::x86_64::avx512_f32::gemm_ref(&w, cols, &xs, n, &mut got);
    let want: Vec<f32> = (0..n * rows)
        .map(|i| {
            let (j, r) = (i / rows, i % rows);
            let s: f64 = (0..cols).map(|k| w[r * cols + k] as f64 * xs[j * cols + k] as f64).sum();
            s as f32
        })
        .collect();
    check_close(&w, &xs, cols, rows, &got, &want, "twin vs f64");
}

/// The same bits as matvec (which the engine's prefill relies on: its KV
/// cache must equal token-by-token decoding's), for any thread count.
#[test]
fn f32_matmul_equals_matvec_for_any_thread_count() {
    let mut rng = Rng(99);
    let shapes = [
        (100usize, 200usize, 30usize),
        (33, 129, 13),
        (64, 256, 2),
        (5, 8, 3),
        (70, 7, 25),
        (40, 1000, 32),
        (45, 2056, 9),
        (13, 2048, 7),
        (7, 1024, 5),
    ];
    for &(rows, cols, n) in &shapes {
        let (w, xs) = (rng.vec(rows * cols), rng.vec(n * cols));
        let wv = ops::Weights::F32(&w);
        let mut scratch = ops::ActScratch::new(cols, n);
        let mut a = std::vec![0.0f32; n * rows];
        ops::matmul(&crate::exec::Serial, wv, cols, &xs, n, &mut scratch, &mut a);
        for threads in [2, 3, 4] {
            let mut b = std::vec![0.0f32; n * rows];
            ops::matmul(&crate::tests::Reversed(threads), wv, cols, &xs, n, &mut scratch, &mut b);
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{rows}x{cols} n={n} t={threads}");
        }
        for j in 0..n {
            let mut mv = std::vec![0.0f32; rows];
            ops::matvec(&crate::exec::Serial, wv, cols, &xs[j * cols..(j + 1) * cols], &mut scratch, &mut mv);
            for (r, (&p, &q)) in mv.iter().zip(&a[j * rows..(j + 1) * rows]).enumerate() {
                assert_eq!(p.to_bits(), q.to_bits(), "{rows}x{cols} n={n}: activation {j} row {r}: {p} vs {q}");
            }
        }
    }
}
