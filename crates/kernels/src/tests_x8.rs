//! Repacked Q4_0 octets: the packing against the GGUF layout, the SIMD
//! kernels of every level against the scalar twin on odd block counts and
//! activation counts, and matvec/matmul on repacked matrices against the
//! same matrices unpacked.

use std::vec::Vec;

#[cfg(target_arch = "x86_64")]
use crate::cpu::{detect, SimdLevel};
use crate::ops::{self, ActScratch, Weights};
use crate::quant::*;
use crate::scalar;
use crate::tests::{Reversed, Rng};

/// A random Q4_0 matrix in the GGUF layout and repacked.
fn matrix(seed: u64, rows: usize, cols: usize) -> (Vec<BlockQ4_0>, Vec<BlockQ4_0x8>) {
    let mut r = Rng(seed);
    let w = r.vec(rows * cols);
    let mut q = std::vec![BlockQ4_0::default(); rows * cols / 32];
    quantize_row_q4_0(&w, &mut q);
    let mut bytes = crate::cast::bytes_of(&q).to_vec();
    assert!(repack_q4_0x8_in_place(&mut bytes, rows, cols / 32));
    let x8 = bytes
        .chunks_exact(144)
        .map(|b| {
            let mut o = BlockQ4_0x8::default();
            for r in 0..8 {
                o.d[r] = u16::from_le_bytes([b[2 * r], b[2 * r + 1]]);
            }
            o.qs.copy_from_slice(&b[16..]);
            o
        })
        .collect();
    (q, x8)
}

#[test]
fn repacking_in_place_interleaves_the_rows_of_each_octet() {
    let (rows, nb) = (24, 5);
    let (q, x8) = matrix(1, rows, nb * 32);
    assert_eq!(x8.len(), rows / 8 * nb);
    for o in 0..rows / 8 {
        for b in 0..nb {
            let blk = &x8[o * nb + b];
            let want = BlockQ4_0x8::pack(core::array::from_fn(|r| &q[(8 * o + r) * nb + b]));
            assert_eq!(*blk, want);
            for r in 0..8 {
                assert_eq!(blk.row(r), q[(8 * o + r) * nb + b], "octet {o} block {b} row {r}");
                // Group k, lane r holds bytes 4k..4k+4 of the row.
                for k in 0..4 {
                    assert_eq!(
                        blk.qs[32 * k + 4 * r..32 * k + 4 * r + 4],
                        q[(8 * o + r) * nb + b].qs[4 * k..4 * k + 4]
                    );
                }
            }
        }
    }
    // Sizes that do not fit are refused and leave the bytes alone.
    let mut bytes = crate::cast::bytes_of(&q).to_vec();
    let before = bytes.clone();
    assert!(!repack_q4_0x8_in_place(&mut bytes, 20, nb));
    assert!(!repack_q4_0x8_in_place(&mut bytes, rows, nb + 1));
    assert!(!repack_q4_0x8_in_place(&mut bytes[..100], rows, nb));
    assert!(!repack_q4_0x8_in_place(&mut bytes, usize::MAX / 4, usize::MAX / 4));
    assert_eq!(bytes, before);
}

#[test]
fn repacked_rows_dequantize_to_the_original_rows() {
    let (rows, cols) = (16, 7 * 32);
    let (q, x8) = matrix(2, rows, cols);
    let (mut a, mut b) = (std::vec![0.0f32; cols], std::vec![0.0f32; cols]);
    for r in 0..rows {
        ops::dequantize_row(Weights::Q4_0(&q), r, cols, &mut a);
        ops::dequantize_row(Weights::Q4_0x8(&x8), r, cols, &mut b);
        assert_eq!(a, b, "row {r}");
    }
}

/// Activations quantized as ops does: blocks, their f32 scales and sums.
fn acts(seed: u64, n: usize, nb: usize) -> (Vec<BlockQ8_0>, Vec<f32>, Vec<i32>) {
    let x = Rng(seed).vec(n * nb * 32);
    let mut q = std::vec![BlockQ8_0::default(); n * nb];
    quantize_row_q8_0(&x, &mut q);
    let d = q.iter().map(|b| crate::half::f16_to_f32(b.d)).collect();
    let s = q.iter().map(|b| b.qs.iter().map(|&v| i32::from(v)).sum()).collect();
    (q, d, s)
}

#[test]
fn scalar_octet_dot_equals_the_row_dots() {
    for nb in [1usize, 3, 7, 8, 33] {
        let (q, x8) = matrix(3 + nb as u64, 8, nb * 32);
        let (x, _, _) = acts(4, 1, nb);
        let got = scalar::dot_q4_0x8(&x8, &x);
        for r in 0..8 {
            let want = scalar::dot_q4_0(&q[r * nb..(r + 1) * nb], &x);
            assert!((got[r] - want).abs() <= 1e-5 * (1.0 + want.abs()), "nb={nb} row {r}: {} vs {want}", got[r]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_octet_kernels_match_scalar_at_every_level() {
    let best = detect().best_level();
    if best < SimdLevel::Avx2 {
        crate::tests::skipped("simd_octet_kernels_match_scalar_at_every_level", "AVX2+FMA+F16C");
        return;
    }
    for nb in [1usize, 2, 5, 17, 64] {
        let (_, x8) = matrix(10 + nb as u64, 8, nb * 32);
        let (x, d, s) = acts(11, 8, nb);
        let want: Vec<[f32; 8]> = (0..8).map(|c| scalar::dot_q4_0x8(&x8, &x[c * nb..(c + 1) * nb])).collect();
        let xs: [&[BlockQ8_0]; 8] = core::array::from_fn(|c| &x[c * nb..(c + 1) * nb]);
        let ds: [&[f32]; 8] = core::array::from_fn(|c| &d[c * nb..(c + 1) * nb]);
        let ss: [&[i32]; 8] = core::array::from_fn(|c| &s[c * nb..(c + 1) * nb]);
        let a8 = crate::arch::x86_64::x8::avx2::q4_0x8::<8>(
            crate::arch::x86_64::x8::avx2::token().unwrap(),
            &x8,
            xs,
            ds,
            ss,
        );
        let a1 = crate::arch::x86_64::x8::avx2::q4_0x8::<1>(
            crate::arch::x86_64::x8::avx2::token().unwrap(),
            &x8,
            [xs[3]],
            [ds[3]],
            [ss[3]],
        );
        assert_eq!(a1[0], a8[3], "nb={nb}: one activation or eight, the same bits");
        let mut levels = std::vec![("avx2", a8)];
        if best >= SimdLevel::Avx512Vnni {
            let v = crate::arch::x86_64::x8::vnni::token().unwrap();
            levels.push(("vnni", crate::arch::x86_64::x8::vnni::q4_0x8::<8>(v, &x8, xs, ds, ss)));
        }
        for (name, got) in &levels {
            assert_eq!(got, &a8, "{name} nb={nb}: levels differ in bits");
            for c in 0..8 {
                for r in 0..8 {
                    let (g, w) = (got[c][r], want[c][r]);
                    assert!(
                        (g - w).abs() <= 1e-5 * (nb as f32).sqrt() * (1.0 + w.abs()),
                        "{name} nb={nb} c={c} r={r}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn repacked_matvec_and_matmul_agree_with_the_gguf_layout() {
    let (rows, cols) = (40, 9 * 32);
    let (q, x8) = matrix(30, rows, cols);
    let xs = Rng(31).vec(11 * cols);
    let mut s = ActScratch::new(cols, 11);
    for n in [1usize, 2, 3, 8, 9, 11] {
        let mut mm = std::vec![0.0f32; n * rows];
        ops::matmul(&crate::exec::Serial, Weights::Q4_0x8(&x8), cols, &xs, n, &mut s, &mut mm);
        let mut mm3 = std::vec![0.0f32; n * rows];
        ops::matmul(&Reversed(3), Weights::Q4_0x8(&x8), cols, &xs, n, &mut s, &mut mm3);
        assert!(mm.iter().zip(&mm3).all(|(a, b)| a.to_bits() == b.to_bits()), "n={n}: thread count changed bits");
        for j in 0..n {
            let x = &xs[j * cols..(j + 1) * cols];
            let mut mv = std::vec![0.0f32; rows];
            ops::matvec(&Reversed(2), Weights::Q4_0x8(&x8), cols, x, &mut s, &mut mv);
            let mut plain = std::vec![0.0f32; rows];
            ops::matvec(&crate::exec::Serial, Weights::Q4_0(&q), cols, x, &mut s, &mut plain);
            for i in 0..rows {
                let (a, b, p) = (mv[i], mm[j * rows + i], plain[i]);
                assert_eq!(a.to_bits(), b.to_bits(), "n={n} act {j} row {i}: matvec {a} vs matmul {b}");
                assert!((a - p).abs() <= 1e-4 * (1.0 + p.abs()), "n={n} act {j} row {i}: {a} vs Q4_0 {p}");
            }
        }
    }
}

#[test]
#[should_panic(expected = "octets")]
fn repacked_matrices_need_whole_octets() {
    let (_, x8) = matrix(40, 16, 64);
    let mut s = ActScratch::new(64, 1);
    let mut out = std::vec![0.0f32; 12];
    ops::matvec(&crate::exec::Serial, Weights::Q4_0x8(&x8), 64, &[0.5; 64], &mut s, &mut out);
}

// ------------------------------------------------------------------ Q4_K

/// A random Q4_K matrix in the GGUF layout and repacked.
fn matrix_k(seed: u64, rows: usize, cols: usize) -> (Vec<BlockQ4K>, Vec<BlockQ4Kx8>) {
    let mut r = Rng(seed);
    // Offsets per row so the mins matter.
    let w: Vec<f32> = (0..rows * cols).map(|i| r.next() + 0.3 * ((i / cols) % 3) as f32).collect();
    let mut q = std::vec![BlockQ4K { d: 0, dmin: 0, scales: [0; 12], qs: [0; 128] }; rows * cols / QK_K];
    quantize_row_q4_k(&w, &mut q);
    let mut bytes = crate::cast::bytes_of(&q).to_vec();
    assert!(repack_q4_kx8_in_place(&mut bytes, rows, cols / QK_K));
    let x8 = bytes.chunks_exact(1152).map(crate::cast::read_pod::<BlockQ4Kx8>).collect();
    (q, x8)
}

fn acts_k(seed: u64, n: usize, nb: usize) -> Vec<BlockQ8K> {
    let x = Rng(seed).vec(n * nb * QK_K);
    let mut q = std::vec![BlockQ8K { d: 0.0, qs: [0; QK_K], bsums: [0; 16] }; n * nb];
    quantize_row_q8_k(&x, &mut q);
    q
}

#[test]
fn q4_k_repacking_interleaves_and_dequantizes_to_the_original_rows() {
    let (rows, nb) = (16, 3);
    let (q, x8) = matrix_k(50, rows, nb * QK_K);
    for o in 0..rows / 8 {
        for b in 0..nb {
            let blk = &x8[o * nb + b];
            assert_eq!(*blk, BlockQ4Kx8::pack(core::array::from_fn(|r| &q[(8 * o + r) * nb + b])));
            for r in 0..8 {
                assert_eq!(blk.row(r), q[(8 * o + r) * nb + b], "octet {o} block {b} row {r}");
            }
        }
    }
    let cols = nb * QK_K;
    let (mut a, mut b) = (std::vec![0.0f32; cols], std::vec![0.0f32; cols]);
    for r in 0..rows {
        ops::dequantize_row(Weights::Q4_K(&q), r, cols, &mut a);
        ops::dequantize_row(Weights::Q4_Kx8(&x8), r, cols, &mut b);
        assert_eq!(a, b, "row {r}");
    }
    let mut bytes = crate::cast::bytes_of(&q).to_vec();
    assert!(!repack_q4_kx8_in_place(&mut bytes, 12, nb));
    assert!(!repack_q4_kx8_in_place(&mut bytes[..1151], rows, nb));
    assert_eq!(bytes, crate::cast::bytes_of(&q));
}

#[test]
fn scalar_q4_k_octet_dot_equals_the_row_dots() {
    for nb in [1usize, 2, 5] {
        let (q, x8) = matrix_k(60 + nb as u64, 8, nb * QK_K);
        let x = acts_k(61, 1, nb);
        let got = scalar::dot_q4_kx8(&x8, &x);
        for r in 0..8 {
            assert_eq!(got[r].to_bits(), scalar::dot_q4_k(&q[r * nb..(r + 1) * nb], &x).to_bits(), "nb={nb} row {r}");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_q4_k_octet_kernels_match_scalar_at_every_level() {
    let best = detect().best_level();
    if best < SimdLevel::Avx2 {
        crate::tests::skipped("simd_q4_k_octet_kernels_match_scalar_at_every_level", "AVX2+FMA+F16C");
        return;
    }
    for nb in [1usize, 3, 8] {
        let (_, x8) = matrix_k(70 + nb as u64, 8, nb * QK_K);
        let x = acts_k(71, 4, nb);
        let xs: [&[BlockQ8K]; 4] = core::array::from_fn(|c| &x[c * nb..(c + 1) * nb]);
        let a4 = crate::arch::x86_64::x8::avx2::q4_kx8::<4>(crate::arch::x86_64::x8::avx2::token().unwrap(), &x8, xs);
        let a1 =
            crate::arch::x86_64::x8::avx2::q4_kx8::<1>(crate::arch::x86_64::x8::avx2::token().unwrap(), &x8, [xs[2]]);
        assert_eq!(a1[0], a4[2], "nb={nb}: one activation or four, the same bits");
        let mut levels = std::vec![("avx2", a4)];
        if best >= SimdLevel::Avx512Vnni {
            levels.push((
                "vnni",
                crate::arch::x86_64::x8::vnni::q4_kx8::<4>(crate::arch::x86_64::x8::vnni::token().unwrap(), &x8, xs),
            ));
        }
        for (name, got) in &levels {
            assert_eq!(got, &a4, "{name} nb={nb}: levels differ in bits");
            for c in 0..4 {
                let want = scalar::dot_q4_kx8(&x8, xs[c]);
                for r in 0..8 {
                    let (g, w) = (got[c][r], want[r]);
                    assert!(
                        (g - w).abs() <= 2e-5 * (nb as f32).sqrt() * (1.0 + w.abs()),
                        "{name} nb={nb} c={c} r={r}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn repacked_q4_k_matvec_and_matmul_agree_with_the_gguf_layout() {
    let (rows, cols) = (24, 2 * QK_K);
    let (q, x8) = matrix_k(80, rows, cols);
    let xs = Rng(81).vec(11 * cols);
    let mut s = ActScratch::new(cols, 11);
    for n in [1usize, 3, 5, 8, 11] {
        let mut mm = std::vec![0.0f32; n * rows];
        ops::matmul(&crate::exec::Serial, Weights::Q4_Kx8(&x8), cols, &xs, n, &mut s, &mut mm);
        let mut mm3 = std::vec![0.0f32; n * rows];
        ops::matmul(&Reversed(3), Weights::Q4_Kx8(&x8), cols, &xs, n, &mut s, &mut mm3);
        assert!(mm.iter().zip(&mm3).all(|(a, b)| a.to_bits() == b.to_bits()), "n={n}: thread count changed bits");
        for j in 0..n {
            let x = &xs[j * cols..(j + 1) * cols];
            let mut mv = std::vec![0.0f32; rows];
            ops::matvec(&Reversed(2), Weights::Q4_Kx8(&x8), cols, x, &mut s, &mut mv);
            let mut plain = std::vec![0.0f32; rows];
            ops::matvec(&crate::exec::Serial, Weights::Q4_K(&q), cols, x, &mut s, &mut plain);
            for i in 0..rows {
                let (a, b, p) = (mv[i], mm[j * rows + i], plain[i]);
                assert_eq!(a.to_bits(), b.to_bits(), "n={n} act {j} row {i}: matvec {a} vs matmul {b}");
                assert!((a - p).abs() <= 1e-4 * (1.0 + p.abs()), "n={n} act {j} row {i}: {a} vs Q4_K {p}");
            }
        }
    }
}

// ------------------------------------------------------------------ Q6_K

fn matrix_6k(seed: u64, rows: usize, cols: usize) -> (Vec<BlockQ6K>, Vec<BlockQ6Kx8>) {
    let w = Rng(seed).vec(rows * cols);
    let mut q = std::vec![BlockQ6K { ql: [0; 128], qh: [0; 64], scales: [0; 16], d: 0 }; rows * cols / QK_K];
    quantize_row_q6_k(&w, &mut q);
    let mut bytes = crate::cast::bytes_of(&q).to_vec();
    assert!(repack_q6_kx8_in_place(&mut bytes, rows, cols / QK_K));
    let x8 = bytes.chunks_exact(1680).map(crate::cast::read_pod::<BlockQ6Kx8>).collect();
    (q, x8)
}

#[test]
fn q6_k_repacking_interleaves_and_dequantizes_to_the_original_rows() {
    let (rows, nb) = (16, 3);
    let (q, x8) = matrix_6k(90, rows, nb * QK_K);
    for o in 0..rows / 8 {
        for b in 0..nb {
            let blk = &x8[o * nb + b];
            assert_eq!(*blk, BlockQ6Kx8::pack(core::array::from_fn(|r| &q[(8 * o + r) * nb + b])));
            for r in 0..8 {
                assert_eq!(blk.row(r), q[(8 * o + r) * nb + b], "octet {o} block {b} row {r}");
            }
        }
    }
    let cols = nb * QK_K;
    let (mut a, mut b) = (std::vec![0.0f32; cols], std::vec![0.0f32; cols]);
    for r in 0..rows {
        ops::dequantize_row(Weights::Q6_K(&q), r, cols, &mut a);
        ops::dequantize_row(Weights::Q6_Kx8(&x8), r, cols, &mut b);
        assert_eq!(a, b, "row {r}");
    }
    let mut bytes = crate::cast::bytes_of(&q).to_vec();
    assert!(!repack_q6_kx8_in_place(&mut bytes, 15, nb));
    assert_eq!(bytes, crate::cast::bytes_of(&q));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_q6_k_octet_kernels_match_scalar_at_every_level() {
    let best = detect().best_level();
    if best < SimdLevel::Avx2 {
        crate::tests::skipped("simd_q6_k_octet_kernels_match_scalar_at_every_level", "AVX2+FMA+F16C");
        return;
    }
    for nb in [1usize, 3, 8] {
        let (q, x8) = matrix_6k(100 + nb as u64, 8, nb * QK_K);
        let x = acts_k(101, 4, nb);
        let xs: [&[BlockQ8K]; 4] = core::array::from_fn(|c| &x[c * nb..(c + 1) * nb]);
        // The scalar twin is the row dot.
        let want: Vec<[f32; 8]> = (0..4).map(|c| scalar::dot_q6_kx8(&x8, xs[c])).collect();
        for c in 0..4 {
            for r in 0..8 {
                assert_eq!(want[c][r].to_bits(), scalar::dot_q6_k(&q[r * nb..(r + 1) * nb], xs[c]).to_bits());
            }
        }
        let a4 = crate::arch::x86_64::x8::avx2::q6_kx8::<4>(crate::arch::x86_64::x8::avx2::token().unwrap(), &x8, xs);
        let a1 =
            crate::arch::x86_64::x8::avx2::q6_kx8::<1>(crate::arch::x86_64::x8::avx2::token().unwrap(), &x8, [xs[1]]);
        assert_eq!(a1[0], a4[1], "nb={nb}: one activation or four, the same bits");
        let mut levels = std::vec![("avx2", a4)];
        if best >= SimdLevel::Avx512Vnni {
            levels.push((
                "vnni",
                crate::arch::x86_64::x8::vnni::q6_kx8::<4>(crate::arch::x86_64::x8::vnni::token().unwrap(), &x8, xs),
            ));
        }
        for (name, got) in &levels {
            assert_eq!(got, &a4, "{name} nb={nb}: levels differ in bits");
            for c in 0..4 {
                for r in 0..8 {
                    let (g, w) = (got[c][r], want[c][r]);
                    assert!(
                        (g - w).abs() <= 2e-5 * (nb as f32).sqrt() * (1.0 + w.abs()),
                        "{name} nb={nb} c={c} r={r}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn repacked_q6_k_matvec_and_matmul_agree_with_the_gguf_layout() {
    let (rows, cols) = (16, 3 * QK_K);
    let (q, x8) = matrix_6k(110, rows, cols);
    let xs = Rng(111).vec(9 * cols);
    let mut s = ActScratch::new(cols, 9);
    for n in [1usize, 4, 6, 9] {
        let mut mm = std::vec![0.0f32; n * rows];
        ops::matmul(&Reversed(3), Weights::Q6_Kx8(&x8), cols, &xs, n, &mut s, &mut mm);
        for j in 0..n {
            let x = &xs[j * cols..(j + 1) * cols];
            let mut mv = std::vec![0.0f32; rows];
            ops::matvec(&Reversed(2), Weights::Q6_Kx8(&x8), cols, x, &mut s, &mut mv);
            let mut plain = std::vec![0.0f32; rows];
            ops::matvec(&crate::exec::Serial, Weights::Q6_K(&q), cols, x, &mut s, &mut plain);
            for i in 0..rows {
                let (a, b, p) = (mv[i], mm[j * rows + i], plain[i]);
                assert_eq!(a.to_bits(), b.to_bits(), "n={n} act {j} row {i}: matvec {a} vs matmul {b}");
                assert!((a - p).abs() <= 1e-4 * (1.0 + p.abs()), "n={n} act {j} row {i}: {a} vs Q6_K {p}");
            }
        }
    }
}
