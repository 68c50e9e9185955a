//! Quant blocks: quantizer bytes against ggml's documented formulae and
//! hand-worked blocks, dequantization of hand-constructed blocks, RMSE and
//! round-trip bounds, integer dot products against dequantized f64 dots, and
//! every SIMD kernel against its scalar twin.

use std::vec::Vec;

use crate::cpu::{detect, SimdLevel};
use crate::half::{f16_to_f32, f32_to_f16};
use crate::quant::*;
use crate::scalar;

struct Rng(u64);
impl Rng {
    fn u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u1 = ((self.u32() >> 8) as f32 + 1.0) / (1u32 << 24) as f32;
        let u2 = (self.u32() >> 8) as f32 / (1u32 << 24) as f32;
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
    /// Data like real weight rows: mostly normal, some rows with outliers,
    /// some all-positive blocks, an all-zero stretch.
    fn weights(&mut self, n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n).map(|_| self.normal() * 0.02).collect();
        for x in v.iter_mut() {
            match self.u32() % 97 {
                0 => *x *= 12.0,
                1 => *x = x.abs(),
                _ => {}
            }
        }
        if n >= 512 {
            v[256..288].fill(0.0);
        }
        v
    }
}

// ------------------------------------------------------------ Q8_0 / Q4_0 / Q5_0 bytes

/// ggml's documented Q8_0 formula, written out per element: d = amax / 127,
/// q = roundf(x / d) with roundf rounding halves away from zero.
fn formula_q8_0(x: &[f32]) -> (u16, Vec<i8>) {
    let amax = x.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let q = x
        .iter()
        .map(|&v| {
            let s = v * id;
            let r = if s >= 0.0 { (s + 0.5).floor() } else { (s - 0.5).ceil() };
            // floor(s + 0.5) can round up at s = 0.49999997: redo it exactly.
            let r = if (r - s).abs() > 0.5 { r - s.signum() } else { r };
            r as i8
        })
        .collect();
    (f32_to_f16(d), q)
}

/// ggml's documented Q4_0 / Q5_0 formula: m = the signed value of largest
/// magnitude (first on ties), d = m / -2^(bits-1), q = min(2^bits - 1,
/// trunc(x / d + 2^(bits-1) + 0.5)).
fn formula_q_0(x: &[f32], bits: u32) -> (u16, Vec<u8>) {
    let mut m = 0.0f32;
    for &v in x {
        if v.abs() > m.abs() {
            m = v;
        }
    }
    let half = (1u32 << (bits - 1)) as f32;
    let d = m / -half;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let top = (1i32 << bits) - 1;
    let q = x.iter().map(|&v| ((v * id + half + 0.5).trunc() as i32).min(top) as u8).collect();
    (f32_to_f16(d), q)
}

#[test]
fn q8_0_bytes_follow_ggml_formula() {
    let mut r = Rng(11);
    for case in 0..200 {
        let x: Vec<f32> = match case {
            0 => std::vec![0.0; 32],
            // Exact halves after scaling: amax 127 gives d = 1.
            1 => (0..32).map(|i| if i == 0 { 127.0 } else { i as f32 - 15.5 }).collect(),
            2 => (0..32).map(|i| if i == 3 { -127.0 } else { 0.5 - i as f32 * 0.25 }).collect(),
            _ => (0..32).map(|_| r.normal() * (case as f32 * 0.1)).collect(),
        };
        let mut b = [BlockQ8_0::default()];
        quantize_row_q8_0(&x, &mut b);
        let (d, q) = formula_q8_0(&x);
        assert_eq!(b[0].d, d, "case {case}");
        assert_eq!(b[0].qs.to_vec(), q, "case {case}");
    }
    // Hand-worked: amax 127 -> d = 1.0 (f16 0x3c00); -15.5 rounds to -16, 0.5 to 1, 14.5 to 15.
    let x: Vec<f32> = (0..32).map(|i| if i == 0 { 127.0 } else { i as f32 - 15.5 }).collect();
    let mut b = [BlockQ8_0::default()];
    quantize_row_q8_0(&x, &mut b);
    assert_eq!(b[0].d, 0x3c00);
    assert_eq!(&b[0].qs[..4], &[127, -15, -14, -13]);
    assert_eq!(b[0].qs[16], 1);
    assert_eq!(b[0].qs[31], 16);
}

#[test]
fn q4_0_and_q5_0_bytes_follow_ggml_formula() {
    let mut r = Rng(12);
    for case in 0..300 {
        let x: Vec<f32> = match case {
            0 => std::vec![0.0; 32],
            // Equal magnitudes of both signs: the first one sets the sign of d.
            1 => (0..32).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect(),
            2 => (0..32).map(|i| if i % 2 == 0 { -1.0 } else { 1.0 }).collect(),
            3 => (0..32).map(|i| i as f32).collect(),
            _ => (0..32).map(|_| r.normal() * 0.05 + if case % 5 == 0 { 0.03 } else { 0.0 }).collect(),
        };
        let mut b4 = [BlockQ4_0::default()];
        quantize_row_q4_0(&x, &mut b4);
        let (d, q) = formula_q_0(&x, 4);
        assert_eq!(b4[0].d, d, "case {case}");
        for j in 0..16 {
            assert_eq!(b4[0].qs[j], q[j] | (q[j + 16] << 4), "case {case} byte {j}");
        }
        let mut b5 = [BlockQ5_0::default()];
        quantize_row_q5_0(&x, &mut b5);
        let (d, q) = formula_q_0(&x, 5);
        assert_eq!(b5[0].d, d, "case {case}");
        let mut qh = 0u32;
        for j in 0..16 {
            assert_eq!(b5[0].qs[j], (q[j] & 15) | ((q[j + 16] & 15) << 4), "case {case} byte {j}");
        }
        for (j, &v) in q.iter().enumerate() {
            qh |= u32::from(v >> 4) << j;
        }
        assert_eq!(u32::from_le_bytes(b5[0].qh), qh, "case {case}");
    }
}

#[test]
fn q4_0_hand_worked_block() {
    // x = j - 16: the value of largest magnitude is -16 (j = 0), so d = 2 and
    // q = min(15, trunc((j - 16) / 2 + 8.5)) = min(15, trunc(j / 2 + 0.5)).
    let x: Vec<f32> = (0..32).map(|j| j as f32 - 16.0).collect();
    let mut b = [BlockQ4_0::default()];
    quantize_row_q4_0(&x, &mut b);
    assert_eq!(b[0].d, 0x4000); // 2.0
    let want_lo: [u8; 16] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8];
    let want_hi: [u8; 16] = [8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 15];
    for j in 0..16 {
        assert_eq!(b[0].qs[j], want_lo[j] | (want_hi[j] << 4), "byte {j}");
    }
    // An all-zero block has d = 0 / -8 = -0.0 (f16 0x8000, as ggml writes it)
    // and every value at the offset 8.
    quantize_row_q4_0(&[0.0; 32], &mut b);
    assert_eq!(b[0], BlockQ4_0 { d: 0x8000, qs: [0x88; 16] });
}

// ------------------------------------------------------------ dequantization of hand-built blocks

#[test]
fn q4_0_q5_0_dequantize_hand_built_blocks() {
    let mut b = BlockQ4_0 { d: 0x4000, qs: [0; 16] }; // d = 2
    for j in 0..16 {
        b.qs[j] = j as u8 | ((15 - j as u8) << 4);
    }
    let mut y = [0.0f32; 32];
    dequantize_row_q4_0(&[b], &mut y);
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * 2.0);
        assert_eq!(y[j + 16], (7.0 - j as f32) * 2.0);
    }
    // Q5_0: fifth bits on for elements 0 and 31 only.
    let b = BlockQ5_0 { d: 0x3c00, qh: 0x8000_0001u32.to_le_bytes(), qs: b.qs };
    dequantize_row_q5_0(&[b], &mut y);
    assert_eq!(y[0], 0.0 + 16.0 - 16.0);
    assert_eq!(y[1], 1.0 - 16.0);
    assert_eq!(y[15], 15.0 - 16.0);
    assert_eq!(y[16], 15.0 - 16.0);
    assert_eq!(y[30], 1.0 - 16.0);
    assert_eq!(y[31], 0.0 + 16.0 - 16.0 + 0.0);
}

/// Scales bytes whose eight (scale, min) pairs were worked out by hand from
/// ggml's get_scale_min_k4.
const K4_SCALES: [u8; 12] = [0x41, 0x02, 0x83, 0xC4, 0x45, 0x06, 0x87, 0x08, 0x9A, 0xBC, 0xDE, 0xF1];
const K4_PAIRS: [(u8, u8); 8] = [(1, 5), (2, 6), (3, 7), (4, 8), (26, 25), (12, 11), (46, 45), (49, 15)];

#[cfg(target_arch = "x86_64")]
#[test]
fn word_wise_scale_unpacking_equals_scale_min_k4() {
    let mut r = Rng(30);
    for _ in 0..2000 {
        let q: [u8; 12] = core::array::from_fn(|_| r.u32() as u8);
        let (sc, m) = crate::arch::x86_64::avx2::scales_mins(&q);
        for j in 0..8 {
            assert_eq!((sc[j], m[j]), scale_min_k4(j, &q), "{q:?} sub-block {j}");
        }
    }
}

#[test]
fn q4_k_dequantizes_hand_built_block() {
    for (j, &pair) in K4_PAIRS.iter().enumerate() {
        assert_eq!(scale_min_k4(j, &K4_SCALES), pair, "sub-block {j}");
    }
    // d = 1, dmin = 0.5; byte i of each 32-byte chunk: low nibble i % 16, high 15 - i % 16.
    let mut b = BlockQ4K { d: 0x3c00, dmin: 0x3800, scales: K4_SCALES, qs: [0; 128] };
    for (i, q) in b.qs.iter_mut().enumerate() {
        *q = (i % 16) as u8 | ((15 - (i % 16) as u8) << 4);
    }
    let mut y = [0.0f32; 256];
    dequantize_row_q4_k(&[b], &mut y);
    for c in 0..4 {
        let (s0, m0) = K4_PAIRS[2 * c];
        let (s1, m1) = K4_PAIRS[2 * c + 1];
        for i in 0..32 {
            let lo = (i % 16) as f32;
            assert_eq!(y[64 * c + i], f32::from(s0) * lo - 0.5 * f32::from(m0), "element {}", 64 * c + i);
            assert_eq!(
                y[64 * c + 32 + i],
                f32::from(s1) * (15.0 - lo) - 0.5 * f32::from(m1),
                "element {}",
                64 * c + 32 + i
            );
        }
    }
}

#[test]
fn q5_k_dequantizes_hand_built_block() {
    // Low nibbles 1, high nibbles 2; fifth bits set for sub-blocks 0, 2, 5 and 7 (qh = 0b1010_0101).
    let b = BlockQ5K { d: 0x3800, dmin: 0x3c00, scales: K4_SCALES, qh: [0xA5; 32], qs: [0x21; 128] };
    let mut y = [0.0f32; 256];
    dequantize_row_q5_k(&[b], &mut y);
    for (e, &v) in y.iter().enumerate() {
        let sub = e / 32;
        let nib = if sub % 2 == 0 { 1.0 } else { 2.0 };
        let high = if [0, 2, 5, 7].contains(&sub) { 16.0 } else { 0.0 };
        let (s, m) = K4_PAIRS[sub];
        assert_eq!(v, 0.5 * f32::from(s) * (nib + high) - f32::from(m), "element {e}");
    }
}

#[test]
fn q6_k_dequantizes_hand_built_block() {
    // ql bytes 0x21 (low nibble 1, high 2); qh bytes 0b11_10_01_00 give the
    // four 32-element groups of each half high bits 0, 1, 2, 3. So the 6-bit
    // values are 1, 17, 34, 50 in groups 0..4 of each 128: minus 32, that is
    // -31, -15, 2, 18. Scales are s - 8 for sub-block s, d = 0.5.
    let mut b = BlockQ6K { ql: [0x21; 128], qh: [0b11_10_01_00; 64], scales: [0; 16], d: 0x3800 };
    for (s, v) in b.scales.iter_mut().enumerate() {
        *v = s as i8 - 8;
    }
    let mut y = [0.0f32; 256];
    dequantize_row_q6_k(&[b], &mut y);
    let group_value = [-31.0f32, -15.0, 2.0, 18.0];
    for (e, &v) in y.iter().enumerate() {
        let g = (e % 128) / 32;
        let scale = (e / 16) as f32 - 8.0;
        assert_eq!(v, 0.5 * scale * group_value[g], "element {e}");
    }
}

#[test]
fn q8_k_quantizer_matches_ggml_formula() {
    let mut r = Rng(13);
    let mut x: Vec<f32> = (0..512).map(|_| r.normal()).collect();
    x[300] = -9.0; // the value of largest magnitude in block 1 is negative
    x[301] = 9.0; // and a positive one of equal magnitude after it: the first wins
    let mut b = [BlockQ8K::default(); 2];
    quantize_row_q8_k(&x, &mut b);
    // iscale = -127 / -9, so -9 maps to -127 (had 9 won, -9 would map to 127).
    assert_eq!(b[1].d, 1.0 / (-127.0 / -9.0));
    assert_eq!(b[1].qs[300 - 256], -127);
    assert_eq!(b[1].qs[301 - 256], 127);
    for (blk, xs) in b.iter().zip(x.chunks_exact(256)) {
        let iscale = 1.0 / blk.d;
        for (i, &v) in xs.iter().enumerate() {
            // ggml's nearest_int rounds halves to even, as f32::round_ties_even.
            let want = (iscale * v).round_ties_even().min(127.0) as i8;
            assert_eq!(blk.qs[i], want);
        }
        for g in 0..16 {
            assert_eq!(i32::from(blk.bsums[g]), blk.qs[16 * g..16 * g + 16].iter().map(|&q| i32::from(q)).sum::<i32>());
        }
    }
    quantize_row_q8_k(&[0.0; 256], &mut b[..1]);
    assert_eq!(b[0], BlockQ8K::default());
}

// ------------------------------------------------------------ K-quant quantizers: RMSE and bounds

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

/// A plain min/max 4-bit quantizer with ggml's Q4_K storage (6-bit scales
/// and mins): the baseline ggml's search must beat.
fn baseline_q4_k(x: &[f32]) -> Vec<f32> {
    let mut out = std::vec![0.0f32; x.len()];
    for (xs, o) in x.chunks_exact(256).zip(out.chunks_exact_mut(256)) {
        let mut sc = [0f32; 8];
        let mut mn = [0f32; 8];
        for j in 0..8 {
            let s = &xs[32 * j..32 * j + 32];
            let lo = s.iter().copied().fold(0.0f32, f32::min);
            let hi = s.iter().copied().fold(f32::MIN, f32::max);
            sc[j] = (hi - lo) / 15.0;
            mn[j] = -lo;
        }
        let ms = sc.iter().copied().fold(0.0, f32::max);
        let mm = mn.iter().copied().fold(0.0, f32::max);
        let (d, dmin) = (ms / 63.0, mm / 63.0);
        for j in 0..8 {
            let dj = d * (sc[j] / d.max(1e-30)).round().min(63.0);
            let mj = dmin * (mn[j] / dmin.max(1e-30)).round().min(63.0);
            for i in 0..32 {
                let q = if dj > 0.0 { ((xs[32 * j + i] + mj) / dj).round().clamp(0.0, 15.0) } else { 0.0 };
                o[32 * j + i] = dj * q - mj;
            }
        }
    }
    out
}

/// A plain symmetric 6-bit quantizer with Q6_K storage (8-bit scales).
fn baseline_q6_k(x: &[f32]) -> Vec<f32> {
    let mut out = std::vec![0.0f32; x.len()];
    for (xs, o) in x.chunks_exact(256).zip(out.chunks_exact_mut(256)) {
        let sc: Vec<f32> = xs.chunks_exact(16).map(|s| s.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 31.0).collect();
        let ms = sc.iter().copied().fold(0.0, f32::max);
        let d = ms / 127.0;
        for j in 0..16 {
            let dj = d * (sc[j] / d.max(1e-30)).round();
            for i in 0..16 {
                let q = if dj > 0.0 { (xs[16 * j + i] / dj).round().clamp(-32.0, 31.0) } else { 0.0 };
                o[16 * j + i] = dj * q;
            }
        }
    }
    out
}

#[test]
fn k_quants_beat_plain_quantizers_and_stay_within_bounds() {
    let mut r = Rng(14);
    for trial in 0..6 {
        let n = 256 * 64;
        let x: Vec<f32> = if trial % 2 == 0 { r.weights(n) } else { (0..n).map(|_| r.uniform()).collect() };
        let sigma = (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n as f64).sqrt();

        let mut b4 = std::vec![BlockQ4K::default(); n / 256];
        quantize_row_q4_k(&x, &mut b4);
        let mut y4 = std::vec![0.0f32; n];
        dequantize_row_q4_k(&b4, &mut y4);
        let (e4, base4) = (rmse(&x, &y4), rmse(&x, &baseline_q4_k(&x)));
        assert!(e4 <= base4, "trial {trial}: Q4_K rmse {e4} > plain {base4}");
        assert!(e4 < 0.12 * sigma, "trial {trial}: Q4_K rmse {e4} vs sigma {sigma}");

        let mut b5 = std::vec![BlockQ5K::default(); n / 256];
        quantize_row_q5_k(&x, &mut b5);
        let mut y5 = std::vec![0.0f32; n];
        dequantize_row_q5_k(&b5, &mut y5);
        let e5 = rmse(&x, &y5);
        assert!(e5 < 0.55 * e4, "trial {trial}: Q5_K rmse {e5} vs Q4_K {e4}");

        let mut b6 = std::vec![BlockQ6K::default(); n / 256];
        quantize_row_q6_k(&x, &mut b6);
        let mut y6 = std::vec![0.0f32; n];
        dequantize_row_q6_k(&b6, &mut y6);
        let (e6, base6) = (rmse(&x, &y6), rmse(&x, &baseline_q6_k(&x)));
        assert!(e6 <= base6, "trial {trial}: Q6_K rmse {e6} > plain {base6}");
        assert!(e6 < 0.75 * e5, "trial {trial}: Q6_K rmse {e6} vs Q5_K {e5}");

        // Round trip: every value is the nearest level of its sub-block's
        // stored scale (and min), clamped to the range, so unclamped values are
        // off by at most half a step and clamped ones lie beyond the range.
        for (bi, blk) in b4.iter().enumerate() {
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, &blk.scales);
                let d = f16_to_f32(blk.d) * f32::from(sc);
                let dm = f16_to_f32(blk.dmin) * f32::from(m);
                if d == 0.0 {
                    continue;
                }
                for i in 0..32 {
                    let e = bi * 256 + 32 * j + i;
                    let q = blk.qs[32 * (j / 2) + i] >> (4 * (j % 2)) & 0xF;
                    assert_eq!(i32::from(q), nearest_int((x[e] + dm) / d).clamp(0, 15), "Q4_K element {e}");
                    let err = x[e] - y4[e];
                    match q {
                        0 => assert!(err <= 0.5 * d * 1.0001, "Q4_K element {e}"),
                        15 => assert!(err >= -0.5 * d * 1.0001, "Q4_K element {e}"),
                        _ => assert!(err.abs() <= 0.5 * d * 1.0001 + 1e-7, "Q4_K element {e}: {err} vs step {d}"),
                    }
                }
            }
        }
        for (bi, blk) in b6.iter().enumerate() {
            for j in 0..16 {
                let d = f16_to_f32(blk.d) * f32::from(blk.scales[j]);
                if d == 0.0 {
                    continue;
                }
                for i in 0..16 {
                    let e = bi * 256 + 16 * j + i;
                    let q = i32::from(q6_k_value(blk, 16 * j + i)) - 32;
                    assert_eq!(q, nearest_int(x[e] / d).clamp(-32, 31), "Q6_K element {e}");
                    if (-31..31).contains(&q) {
                        assert!((x[e] - y6[e]).abs() <= 0.5 * d.abs() * 1.0001 + 1e-7, "Q6_K element {e}");
                    }
                }
            }
        }
        // The 32-blocks, for the record of their relative quality.
        let mut q40 = std::vec![BlockQ4_0::default(); n / 32];
        quantize_row_q4_0(&x, &mut q40);
        let mut y40 = std::vec![0.0f32; n];
        dequantize_row_q4_0(&q40, &mut y40);
        let e40 = rmse(&x, &y40);
        assert!(e4 < e40 * 1.05, "trial {trial}: Q4_K {e4} should be about as good as Q4_0 {e40} or better");
        let mut q50 = std::vec![BlockQ5_0::default(); n / 32];
        quantize_row_q5_0(&x, &mut q50);
        let mut y50 = std::vec![0.0f32; n];
        dequantize_row_q5_0(&q50, &mut y50);
        assert!(rmse(&x, &y50) < 0.6 * e40);
    }
}

#[test]
fn k_quants_of_degenerate_blocks() {
    for x in [
        std::vec![0.0f32; 256],
        std::vec![0.25f32; 256],
        std::vec![-3.0f32; 256],
        (0..256).map(|i| if i == 7 { 1.0 } else { 0.0 }).collect(),
    ] {
        let mut b4 = [BlockQ4K::default()];
        quantize_row_q4_k(&x, &mut b4);
        let mut b6 = [BlockQ6K::default()];
        quantize_row_q6_k(&x, &mut b6);
        let mut y = [0.0f32; 256];
        dequantize_row_q4_k(&b4, &mut y);
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(rmse(&x, &y) <= 0.05 * f64::from(amax) + 1e-9, "Q4_K {x:?}");
        dequantize_row_q6_k(&b6, &mut y);
        assert!(rmse(&x, &y) <= 0.02 * f64::from(amax) + 1e-9, "Q6_K");
    }
}

// ------------------------------------------------------------ dot products

/// Quantizes random weights and activations of `nb` blocks for every type.
struct Case {
    x: Vec<f32>,
    q8_0: Vec<BlockQ8_0>,
    q8_k: Vec<BlockQ8K>,
    w: Vec<f32>,
    w8: Vec<BlockQ8_0>,
    w4: Vec<BlockQ4_0>,
    w5: Vec<BlockQ5_0>,
    w4k: Vec<BlockQ4K>,
    w5k: Vec<BlockQ5K>,
    w6k: Vec<BlockQ6K>,
}

fn case(r: &mut Rng, n: usize) -> Case {
    let w = r.weights(n);
    let x: Vec<f32> = (0..n).map(|_| r.normal()).collect();
    let mut c = Case {
        q8_0: std::vec![BlockQ8_0::default(); n / 32],
        q8_k: std::vec![BlockQ8K::default(); n / 256],
        w8: std::vec![BlockQ8_0::default(); n / 32],
        w4: std::vec![BlockQ4_0::default(); n / 32],
        w5: std::vec![BlockQ5_0::default(); n / 32],
        w4k: std::vec![BlockQ4K::default(); n / 256],
        w5k: std::vec![BlockQ5K::default(); n / 256],
        w6k: std::vec![BlockQ6K::default(); n / 256],
        x,
        w,
    };
    quantize_row_q8_0(&c.x, &mut c.q8_0);
    quantize_row_q8_k(&c.x, &mut c.q8_k);
    quantize_row_q8_0(&c.w, &mut c.w8);
    quantize_row_q4_0(&c.w, &mut c.w4);
    quantize_row_q5_0(&c.w, &mut c.w5);
    quantize_row_q4_k(&c.w, &mut c.w4k);
    quantize_row_q5_k(&c.w, &mut c.w5k);
    quantize_row_q6_k(&c.w, &mut c.w6k);
    c
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

#[test]
fn scalar_quant_dots_equal_dequantized_dots() {
    let mut r = Rng(15);
    for nb in [1usize, 2, 3, 5] {
        let n = 256 * nb;
        let c = case(&mut r, n);
        let mut xa = std::vec![0.0f32; n];
        let mut xk = std::vec![0.0f32; n];
        dequantize_row_q8_0(&c.q8_0, &mut xa);
        dequantize_row_q8_k(&c.q8_k, &mut xk);
        let mut w = std::vec![0.0f32; n];
        // Integer sums are exact; only the float terms per block round.
        let tol =
            |w: &[f32], x: &[f32]| 1e-5 * w.iter().zip(x).map(|(a, b)| f64::from((a * b).abs())).sum::<f64>() + 1e-9;
        dequantize_row_q8_0(&c.w8, &mut w);
        let want = dot64(&w, &xa);
        assert!((f64::from(scalar::dot_q8_0(&c.w8, &c.q8_0)) - want).abs() <= tol(&w, &xa), "q8_0");
        dequantize_row_q4_0(&c.w4, &mut w);
        let want = dot64(&w, &xa);
        assert!((f64::from(scalar::dot_q4_0(&c.w4, &c.q8_0)) - want).abs() <= tol(&w, &xa), "q4_0");
        dequantize_row_q5_0(&c.w5, &mut w);
        let want = dot64(&w, &xa);
        assert!((f64::from(scalar::dot_q5_0(&c.w5, &c.q8_0)) - want).abs() <= tol(&w, &xa), "q5_0");
        dequantize_row_q4_k(&c.w4k, &mut w);
        let want = dot64(&w, &xk);
        assert!((f64::from(scalar::dot_q4_k(&c.w4k, &c.q8_k)) - want).abs() <= tol(&w, &xk), "q4_k");
        dequantize_row_q5_k(&c.w5k, &mut w);
        let want = dot64(&w, &xk);
        assert!((f64::from(scalar::dot_q5_k(&c.w5k, &c.q8_k)) - want).abs() <= tol(&w, &xk), "q5_k");
        dequantize_row_q6_k(&c.w6k, &mut w);
        let want = dot64(&w, &xk);
        assert!((f64::from(scalar::dot_q6_k(&c.w6k, &c.q8_k)) - want).abs() <= tol(&w, &xk), "q6_k");
        // And the quantized dot is close to the exact f32 one.
        let exact = dot64(&c.w, &c.x);
        let scale = dot64(&c.w, &c.w).sqrt() * dot64(&c.x, &c.x).sqrt();
        assert!((f64::from(scalar::dot_q6_k(&c.w6k, &c.q8_k)) - exact).abs() < 0.02 * scale);
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vnni_row_octets_match_scalar() {
    if detect().best_level() < SimdLevel::Avx512Vnni {
        crate::tests::skipped("vnni_row_octets_match_scalar", "AVX-512 VNNI");
        return;
    }
    let mut r = Rng(19);
    for nb in [1usize, 3, 16] {
        let n = 32 * nb;
        let rows: Vec<Case> = (0..8).map(|_| case32(&mut r, n)).collect();
        let acts: Vec<Case> = (0..8).map(|_| case32(&mut r, n)).collect();
        let sums: Vec<Vec<i32>> =
            acts.iter().map(|a| a.q8_0.iter().map(|b| b.qs.iter().map(|&q| i32::from(q)).sum()).collect()).collect();
        let xs: [&[BlockQ8_0]; 8] = core::array::from_fn(|c| acts[c].q8_0.as_slice());
        let ss: [&[i32]; 8] = core::array::from_fn(|c| sums[c].as_slice());
        macro_rules! check {
            ($f:ident, $field:ident, $scalar:path) => {{
                let ws: [&[_]; 8] = core::array::from_fn(|k| rows[k].$field.as_slice());
                let eight =
                    crate::arch::x86_64::avx512::$f::<8>(crate::arch::x86_64::avx512::token().unwrap(), ws, xs, ss);
                for c in 0..8 {
                    let one = crate::arch::x86_64::avx512::$f::<1>(
                        crate::arch::x86_64::avx512::token().unwrap(),
                        ws,
                        [xs[c]],
                        [ss[c]],
                    )[0];
                    for k in 0..8 {
                        let want = $scalar(ws[k], xs[c]);
                        let scale =
                            (dot64(&rows[k].w, &rows[k].w).sqrt() * dot64(&acts[c].x, &acts[c].x).sqrt()) as f32;
                        assert!(
                            close32(want, eight[c][k], scale * 4.0),
                            "{} nb={nb} row {k} act {c}: {want} vs {}",
                            stringify!($f),
                            eight[c][k]
                        );
                        assert_eq!(one[k].to_bits(), eight[c][k].to_bits(), "{} 1 vs 8 activations", stringify!($f));
                    }
                }
            }};
        }
        check!(oct_q8_0, w8, scalar::dot_q8_0);
        check!(oct_q4_0, w4, scalar::dot_q4_0);
        check!(oct_q5_0, w5, scalar::dot_q5_0);
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vnni_q4_0_row_kernel_has_the_bits_of_the_tiles() {
    if detect().best_level() < SimdLevel::Avx512Vnni {
        crate::tests::skipped("vnni_q4_0_row_kernel_has_the_bits_of_the_tiles", "AVX-512 VNNI");
        return;
    }
    let mut r = Rng(20);
    for nb in [1usize, 2, 3, 7, 8, 64, 65] {
        let c = case32(&mut r, 32 * nb);
        let (v, a) =
            (crate::arch::x86_64::avx512::token().unwrap(), crate::arch::x86_64::avx2::tiles::token().unwrap());
        let xd = c.q8_0.iter().map(|b| f16_to_f32(b.d)).collect::<Vec<f32>>();
        let (row, vnni, avx2) = (
            crate::arch::x86_64::avx512::q4_0_row(v, &c.w4, &c.q8_0, &xd),
            crate::arch::x86_64::avx512::tiles::tile_q4_0::<1, 1>(v, [&c.w4], [&c.q8_0])[0][0],
            crate::arch::x86_64::avx2::tiles::tile_q4_0::<1, 1>(a, [&c.w4], [&c.q8_0])[0][0],
        );
        assert_eq!(row.to_bits(), vnni.to_bits(), "nb={nb}: {row} vs {vnni}");
        assert_eq!(row.to_bits(), avx2.to_bits(), "nb={nb}");
    }
}

/// A [`Case`] of `n` values (a multiple of 32) with the 32-block types only.
#[cfg(target_arch = "x86_64")]
fn case32(r: &mut Rng, n: usize) -> Case {
    let mut c = case(r, n.next_multiple_of(256));
    c.w.truncate(n);
    c.x.truncate(n);
    c.q8_0.truncate(n / 32);
    c.w8.truncate(n / 32);
    c.w4.truncate(n / 32);
    c.w5.truncate(n / 32);
    c
}

/// Relative closeness for 32-block kernels (the float sums run in another order).
fn close32(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-5 * scale.max(a.abs()).max(1e-3)
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
#[allow(unused_assignments)]
fn simd_quant_tiles_match_scalar_at_every_level() {
    let mut r = Rng(16);
    for nb in [1usize, 2, 3, 7] {
        let n = 256 * nb;
        let mut c = case(&mut r, n);
        // A weight of -128 (possible in files) must work in Q8_0.
        c.w8[0].qs[5] = -128;
        let sc = |w: &[f32], x: &[f32]| (dot64(w, w).sqrt() * dot64(x, x).sqrt()) as f32;
        let s = sc(&c.w, &c.x) * 4.0;
        let (x0, xk) = ([c.q8_0.as_slice()], [c.q8_k.as_slice()]);
        let mut first: Option<[u32; 3]> = None;
        crate::tests::for_each_level!(|t, name| {
            let tok = t::token().unwrap();
            let got = [
                t::tile_q8_0::<1, 1>(tok, [&c.w8], x0)[0][0],
                t::tile_q4_0::<1, 1>(tok, [&c.w4], x0)[0][0],
                t::tile_q5_0::<1, 1>(tok, [&c.w5], x0)[0][0],
            ];
            let want =
                [scalar::dot_q8_0(&c.w8, &c.q8_0), scalar::dot_q4_0(&c.w4, &c.q8_0), scalar::dot_q5_0(&c.w5, &c.q8_0)];
            for k in 0..3 {
                assert!(close32(want[k], got[k], s), "{name} 32-block type {k} nb={nb}: {} vs {}", want[k], got[k]);
            }
            // Every x86 level computes the same integer lanes in the same order.
            let bits = got.map(f32::to_bits);
            match first {
                None => first = Some(bits),
                Some(f) => assert_eq!(f, bits, "{name}: 32-block results differ from AVX2"),
            }
            // K-quants reduce each super-block to one integer: bit-identical to scalar.
            let got = [
                t::tile_q4_k::<1, 1>(tok, [&c.w4k], xk)[0][0],
                t::tile_q5_k::<1, 1>(tok, [&c.w5k], xk)[0][0],
                t::tile_q6_k::<1, 1>(tok, [&c.w6k], xk)[0][0],
            ];
            let want = [
                scalar::dot_q4_k(&c.w4k, &c.q8_k),
                scalar::dot_q5_k(&c.w5k, &c.q8_k),
                scalar::dot_q6_k(&c.w6k, &c.q8_k),
            ];
            for k in 0..3 {
                assert_eq!(want[k].to_bits(), got[k].to_bits(), "{name} K type {k} nb={nb}: {} vs {}", want[k], got[k]);
            }
        });
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn tiles_of_every_size_give_the_same_bits() {
    let mut r = Rng(17);
    let n = 512;
    let cs: Vec<Case> = (0..4).map(|_| case(&mut r, n)).collect();
    macro_rules! check {
        ($t:ident, $name:expr, $f:ident, $field:ident, $act:ident) => {{
            let ws: [&[_]; 4] = core::array::from_fn(|k| cs[k].$field.as_slice());
            let xs: [&[_]; 4] = core::array::from_fn(|k| cs[k].$act.as_slice());
            let t44 = $t::$f::<4, 4>($t::token().unwrap(), ws, xs);
            let t24 = $t::$f::<2, 4>($t::token().unwrap(), [ws[2], ws[3]], xs);
            let t31 = $t::$f::<3, 1>($t::token().unwrap(), [ws[1], ws[2], ws[3]], [xs[2]]);
            for a in 0..4 {
                for b in 0..4 {
                    let one = $t::$f::<1, 1>($t::token().unwrap(), [ws[a]], [xs[b]])[0][0].to_bits();
                    assert_eq!(t44[a][b].to_bits(), one, "{} {} 4x4 [{a}][{b}]", $name, stringify!($f));
                    if a >= 2 {
                        assert_eq!(t24[a - 2][b].to_bits(), one, "{} {} 2x4", $name, stringify!($f));
                    }
                    if a >= 1 && b == 2 {
                        assert_eq!(t31[a - 1][0].to_bits(), one, "{} {} 3x1", $name, stringify!($f));
                    }
                }
            }
        }};
    }
    crate::tests::for_each_level!(|t, name| {
        check!(t, name, tile_q8_0, w8, q8_0);
        check!(t, name, tile_q4_0, w4, q8_0);
        check!(t, name, tile_q5_0, w5, q8_0);
        check!(t, name, tile_q4_k, w4k, q8_k);
        check!(t, name, tile_q5_k, w5k, q8_k);
        check!(t, name, tile_q6_k, w6k, q8_k);
        check!(t, name, tile_f32, w, x);
    });
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_activation_quantizers_are_bit_identical() {
    use crate::tests::simd;
    let Some(tok) = crate::tests::simd_token("simd_activation_quantizers_are_bit_identical") else { return };
    let mut r = Rng(18);
    for trial in 0..50 {
        let mut x: Vec<f32> = (0..1024).map(|_| r.normal() * (1.0 + trial as f32)).collect();
        if trial == 1 {
            // Exact halves after scaling (amax 127 -> id = 1), and equal magnitudes of both signs.
            for (i, v) in x.iter_mut().enumerate() {
                *v = (i % 64) as f32 - 31.5;
            }
            x[0] = 127.0;
            x[256] = -127.0;
            x[257] = 127.0;
        }
        if trial == 2 {
            x[..256].fill(0.0);
        }
        let mut a = std::vec![BlockQ8_0::default(); 32];
        let mut b = a.clone();
        quantize_row_q8_0(&x, &mut a);
        simd::quantize_row_q8_0(tok, &x, &mut b);
        assert_eq!(a, b, "q8_0 trial {trial}");
        let mut a = std::vec![BlockQ8K::default(); 4];
        let mut b = a.clone();
        quantize_row_q8_k(&x, &mut a);
        simd::quantize_row_q8_k(tok, &x, &mut b);
        for (p, q) in a.iter().zip(&b) {
            assert_eq!((p.d.to_bits(), p.qs, p.bsums), (q.d.to_bits(), q.qs, q.bsums), "q8_k trial {trial}");
        }
    }
}

// ------------------------------------------------------------ Q4_1 / Q8_1

/// ggml's documented Q4_1 formula, written out per element: m = min, d =
/// (max - min) / 15, q = min(15, trunc((x - m) / d + 0.5)).
fn formula_q4_1(x: &[f32]) -> (u16, u16, Vec<u8>) {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / 15.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let q = x.iter().map(|&v| (((v - min) * id + 0.5).trunc() as i32).min(15) as u8).collect();
    (f32_to_f16(d), f32_to_f16(min), q)
}

#[test]
fn q4_1_bytes_follow_ggml_formula() {
    let mut r = Rng(31);
    for case in 0..300 {
        let x: Vec<f32> = match case {
            0 => std::vec![0.0; 32],
            1 => std::vec![-3.25; 32],
            2 => (0..32).map(|i| i as f32).collect(),
            _ => (0..32).map(|_| r.normal() * 0.05 + if case % 5 == 0 { 0.03 } else { 0.0 }).collect(),
        };
        let mut b = [BlockQ4_1::default()];
        quantize_row_q4_1(&x, &mut b);
        let (d, m, q) = formula_q4_1(&x);
        assert_eq!((b[0].d, b[0].m), (d, m), "case {case}");
        for j in 0..16 {
            assert_eq!(b[0].qs[j], q[j] | (q[j + 16] << 4), "case {case} byte {j}");
        }
    }
    // Hand-worked: x = j (0..32): m = 0, d = 31 / 15, q = trunc(15 j / 31 + 0.5).
    let x: Vec<f32> = (0..32).map(|j| j as f32).collect();
    let mut b = [BlockQ4_1::default()];
    quantize_row_q4_1(&x, &mut b);
    assert_eq!(b[0].m, 0);
    assert_eq!(b[0].d, f32_to_f16(31.0 / 15.0));
    assert_eq!(b[0].qs[0], 8 << 4); // element 0: 0; element 16: trunc(7.74 + 0.5) = 8
    assert_eq!(b[0].qs[15] >> 4, 15); // element 31 is the maximum
}

#[test]
fn q4_1_dequantizes_hand_built_block() {
    // d = 0.5, m = -2: x = 0.5 q - 2.
    let mut b = BlockQ4_1 { d: 0x3800, m: 0xc000, qs: [0; 16] };
    for j in 0..16 {
        b.qs[j] = j as u8 | ((15 - j as u8) << 4);
    }
    let mut y = [0.0f32; 32];
    dequantize_row_q4_1(&[b], &mut y);
    for j in 0..16 {
        assert_eq!(y[j], 0.5 * j as f32 - 2.0, "element {j}");
        assert_eq!(y[j + 16], 0.5 * (15 - j) as f32 - 2.0, "element {}", j + 16);
    }
}

#[test]
fn q8_1_quantizer_matches_llama_cpp_x86_formula() {
    let mut r = Rng(32);
    for case in 0..200 {
        let x: Vec<f32> = match case {
            0 => std::vec![0.0; 32],
            // Exact halves after scaling: amax 127 gives id = 1; 0.5 and 2.5 round to even.
            1 => (0..32).map(|i| if i == 0 { 127.0 } else { i as f32 - 15.5 }).collect(),
            _ => (0..32).map(|_| r.normal() * (case as f32 * 0.1)).collect(),
        };
        let mut b = [BlockQ8_1::default()];
        quantize_row_q8_1(&x, &mut b);
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax == 0.0 { 0.0 } else { 127.0 / amax };
        let q: Vec<i8> = x.iter().map(|&v| (v * id).round_ties_even() as i8).collect();
        let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
        assert_eq!(b[0].d, f32_to_f16(d), "case {case}");
        assert_eq!(b[0].qs.to_vec(), q, "case {case}");
        assert_eq!(b[0].s, f32_to_f16(d * sum as f32), "case {case}");
    }
    // Hand-worked: -15.5 -> -16 (even), 0.5 -> 0, 1.5 -> 2, 14.5 -> 14.
    let x: Vec<f32> = (0..32).map(|i| if i == 0 { 127.0 } else { i as f32 - 15.5 }).collect();
    let mut b = [BlockQ8_1::default()];
    quantize_row_q8_1(&x, &mut b);
    assert_eq!(&b[0].qs[..3], &[127, -14, -14]);
    assert_eq!((b[0].qs[16], b[0].qs[17], b[0].qs[30]), (0, 2, 14));
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simd_q8_1_quantizer_is_bit_identical() {
    use crate::tests::simd;
    let Some(tok) = crate::tests::simd_token("simd_q8_1_quantizer_is_bit_identical") else { return };
    let mut r = Rng(33);
    for trial in 0..50 {
        let mut x: Vec<f32> = (0..1024).map(|_| r.normal() * (1.0 + trial as f32)).collect();
        if trial == 1 {
            for (i, v) in x.iter_mut().enumerate() {
                *v = (i % 64) as f32 - 31.5;
            }
            x[0] = 127.0;
        }
        if trial == 2 {
            x[..64].fill(0.0);
        }
        let mut a = std::vec![BlockQ8_1::default(); 32];
        let mut b = a.clone();
        quantize_row_q8_1(&x, &mut a);
        simd::quantize_row_q8_1(tok, &x, &mut b);
        assert_eq!(a, b, "trial {trial}");
    }
}

/// Q4_1 weights and Q8_1 activations of `n` random values (a multiple of 32).
fn case_q4_1(r: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>, Vec<BlockQ4_1>, Vec<BlockQ8_1>) {
    let w = r.weights(n);
    let x: Vec<f32> = (0..n).map(|_| r.normal()).collect();
    let mut wq = std::vec![BlockQ4_1::default(); n / 32];
    let mut xq = std::vec![BlockQ8_1::default(); n / 32];
    quantize_row_q4_1(&w, &mut wq);
    quantize_row_q8_1(&x, &mut xq);
    (w, x, wq, xq)
}

#[test]
fn scalar_q4_1_dot_equals_dequantized_dot() {
    let mut r = Rng(34);
    for nb in [1usize, 2, 3, 5, 17] {
        let (w, x, wq, xq) = case_q4_1(&mut r, 32 * nb);
        let (mut wd, mut xd) = (std::vec![0.0f32; 32 * nb], std::vec![0.0f32; 32 * nb]);
        dequantize_row_q4_1(&wq, &mut wd);
        dequantize_row_q8_1(&xq, &mut xd);
        // m4 * s8 stands for m4 * d8 * sum(q8) with s8 rounded to f16: a
        // relative error of 2^-11 of that term per block.
        let want = dot64(&wd, &xd);
        let terms: f64 = wd.iter().zip(&xd).map(|(a, b)| f64::from((a * b).abs())).sum::<f64>();
        let sterm: f64 =
            wq.iter().zip(&xq).map(|(a, b)| f64::from((f16_to_f32(a.m) * f16_to_f32(b.s)).abs())).sum::<f64>();
        let got = f64::from(scalar::dot_q4_1(&wq, &xq));
        assert!((got - want).abs() <= 1e-5 * terms + sterm / 1024.0 + 1e-9, "nb={nb}: {got} vs {want}");
        // And close to the exact f32 dot.
        let scale = dot64(&w, &w).sqrt() * dot64(&x, &x).sqrt();
        assert!((got - dot64(&w, &x)).abs() < 0.1 * scale, "nb={nb}");
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
#[allow(unused_assignments)]
fn simd_q4_1_tiles_match_scalar_and_each_other() {
    let mut r = Rng(35);
    for nb in [1usize, 2, 3, 7, 9, 33] {
        let cs: Vec<_> = (0..4).map(|_| case_q4_1(&mut r, 32 * nb)).collect();
        let ws: [&[BlockQ4_1]; 4] = core::array::from_fn(|k| cs[k].2.as_slice());
        let xs: [&[BlockQ8_1]; 4] = core::array::from_fn(|k| cs[k].3.as_slice());
        let mut first: Option<u32> = None;
        crate::tests::for_each_level!(|t, name| {
            let t44 = t::tile_q4_1::<4, 4>(t::token().unwrap(), ws, xs);
            let t18 = t::tile_q4_1::<1, 4>(t::token().unwrap(), [ws[1]], xs);
            for a in 0..4 {
                for b in 0..4 {
                    let one = t::tile_q4_1::<1, 1>(t::token().unwrap(), [ws[a]], [xs[b]])[0][0];
                    assert_eq!(t44[a][b].to_bits(), one.to_bits(), "{name} nb={nb} 4x4 [{a}][{b}]");
                    if a == 1 {
                        assert_eq!(t18[0][b].to_bits(), one.to_bits(), "{name} nb={nb} 1x4");
                    }
                    let want = scalar::dot_q4_1(ws[a], xs[b]);
                    let s = (dot64(&cs[a].0, &cs[a].0).sqrt() * dot64(&cs[b].1, &cs[b].1).sqrt()) as f32;
                    assert!(close32(want, one, s * 4.0), "{name} nb={nb}: {want} vs {one}");
                }
            }
            // Every x86 level gives the same bits.
            match first {
                None => first = Some(t44[2][3].to_bits()),
                Some(f) => assert_eq!(f, t44[2][3].to_bits(), "{name}: differs from AVX2"),
            }
        });
    }
}

// ------------------------------------------------------------ Q5_1

#[test]
fn q5_1_bytes_follow_ggml_formula() {
    let mut r = Rng(41);
    for case in 0..300 {
        let x: Vec<f32> = match case {
            0 => std::vec![0.0; 32],
            1 => std::vec![1.5; 32],
            2 => (0..32).map(|i| i as f32).collect(),
            _ => (0..32).map(|_| r.normal() * 0.05 + if case % 5 == 0 { 0.03 } else { 0.0 }).collect(),
        };
        let mut b = [BlockQ5_1::default()];
        quantize_row_q5_1(&x, &mut b);
        // m = min, d = (max - min) / 31, q = trunc((x - m) / d + 0.5).
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 31.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        assert_eq!((b[0].d, b[0].m), (f32_to_f16(d), f32_to_f16(min)), "case {case}");
        for (j, &v) in x.iter().enumerate() {
            assert_eq!(q5_1_value(&b[0], j), ((v - min) * id + 0.5).trunc() as u8, "case {case} element {j}");
        }
    }
    // x = j: d = 1, every element its own value; elements 16..32 set their fifth bits.
    let x: Vec<f32> = (0..32).map(|j| j as f32).collect();
    let mut b = [BlockQ5_1::default()];
    quantize_row_q5_1(&x, &mut b);
    assert_eq!((b[0].d, b[0].m), (0x3c00, 0));
    assert_eq!(u32::from_le_bytes(b[0].qh), 0xffff_0000);
    assert_eq!(b[0].qs[3], 3 | (3 << 4));
}

#[test]
fn q5_1_dequantizes_hand_built_block() {
    // d = 0.5, m = -2; fifth bits on for elements 0 and 31.
    let mut b = BlockQ5_1 { d: 0x3800, m: 0xc000, qh: 0x8000_0001u32.to_le_bytes(), qs: [0; 16] };
    for j in 0..16 {
        b.qs[j] = j as u8 | ((15 - j as u8) << 4);
    }
    let mut y = [0.0f32; 32];
    dequantize_row_q5_1(&[b], &mut y);
    assert_eq!(y[0], 0.5 * 16.0 - 2.0);
    assert_eq!(y[1], 0.5 * 1.0 - 2.0);
    assert_eq!(y[16], 0.5 * 15.0 - 2.0);
    assert_eq!(y[31], 0.5 * 16.0 - 2.0);
}

#[test]
fn scalar_q5_1_dot_equals_dequantized_dot() {
    let mut r = Rng(42);
    for nb in [1usize, 2, 3, 5, 17] {
        let n = 32 * nb;
        let (w, x) = (r.weights(n), (0..n).map(|_| r.normal()).collect::<Vec<f32>>());
        let mut wq = std::vec![BlockQ5_1::default(); nb];
        let mut xq = std::vec![BlockQ8_1::default(); nb];
        quantize_row_q5_1(&w, &mut wq);
        quantize_row_q8_1(&x, &mut xq);
        let (mut wd, mut xd) = (std::vec![0.0f32; n], std::vec![0.0f32; n]);
        dequantize_row_q5_1(&wq, &mut wd);
        dequantize_row_q8_1(&xq, &mut xd);
        // As for Q4_1: s8 is rounded to f16.
        let want = dot64(&wd, &xd);
        let terms: f64 = wd.iter().zip(&xd).map(|(a, b)| f64::from((a * b).abs())).sum();
        let sterm: f64 = wq.iter().zip(&xq).map(|(a, b)| f64::from((f16_to_f32(a.m) * f16_to_f32(b.s)).abs())).sum();
        let got = f64::from(scalar::dot_q5_1(&wq, &xq));
        assert!((got - want).abs() <= 1e-5 * terms + sterm / 1024.0 + 1e-9, "nb={nb}: {got} vs {want}");
        let scale = dot64(&w, &w).sqrt() * dot64(&x, &x).sqrt();
        assert!((got - dot64(&w, &x)).abs() < 0.05 * scale, "nb={nb}");
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
#[allow(unused_assignments)]
fn simd_q5_1_tiles_match_scalar_and_each_other() {
    let mut r = Rng(43);
    for nb in [1usize, 2, 3, 7, 9, 33] {
        let n = 32 * nb;
        let ws_f: Vec<Vec<f32>> = (0..4).map(|_| r.weights(n)).collect();
        let xs_f: Vec<Vec<f32>> = (0..4).map(|_| (0..n).map(|_| r.normal()).collect()).collect();
        let wq: Vec<Vec<BlockQ5_1>> = ws_f
            .iter()
            .map(|w| {
                let mut b = std::vec![BlockQ5_1::default(); nb];
                quantize_row_q5_1(w, &mut b);
                b
            })
            .collect();
        let xq: Vec<Vec<BlockQ8_1>> = xs_f
            .iter()
            .map(|x| {
                let mut b = std::vec![BlockQ8_1::default(); nb];
                quantize_row_q8_1(x, &mut b);
                b
            })
            .collect();
        let ws: [&[BlockQ5_1]; 4] = core::array::from_fn(|k| wq[k].as_slice());
        let xs: [&[BlockQ8_1]; 4] = core::array::from_fn(|k| xq[k].as_slice());
        let mut first: Option<u32> = None;
        crate::tests::for_each_level!(|t, name| {
            let t44 = t::tile_q5_1::<4, 4>(t::token().unwrap(), ws, xs);
            for a in 0..4 {
                for b in 0..4 {
                    let one = t::tile_q5_1::<1, 1>(t::token().unwrap(), [ws[a]], [xs[b]])[0][0];
                    assert_eq!(t44[a][b].to_bits(), one.to_bits(), "{name} nb={nb} 4x4 [{a}][{b}]");
                    let want = scalar::dot_q5_1(ws[a], xs[b]);
                    let s = (dot64(&ws_f[a], &ws_f[a]).sqrt() * dot64(&xs_f[b], &xs_f[b]).sqrt()) as f32;
                    assert!(close32(want, one, s * 4.0), "{name} nb={nb}: {want} vs {one}");
                }
            }
            match first {
                None => first = Some(t44[1][2].to_bits()),
                Some(f) => assert_eq!(f, t44[1][2].to_bits(), "{name}: differs from AVX2"),
            }
        });
    }
}

// ------------------------------------------------------------ IQ4_NL

#[test]
fn iq4_nl_quantizer_picks_nearest_table_values_and_a_good_scale() {
    let mut r = Rng(51);
    // An all-zero block: d = 0 and every index at the table's 1 (index 8).
    let mut b = [BlockIQ4NL::default()];
    quantize_row_iq4_nl(&[0.0; 32], &mut b);
    assert_eq!(b[0], BlockIQ4NL { d: 0, qs: [0x88; 16] });
    for case in 0..200 {
        let x: Vec<f32> = (0..32).map(|_| r.normal() * 0.05 + if case % 3 == 0 { 0.02 } else { 0.0 }).collect();
        quantize_row_iq4_nl(&x, &mut b);
        let d = f16_to_f32(b[0].d);
        let mut y = [0.0f32; 32];
        dequantize_row_iq4_nl(&b, &mut y);
        // Every element is the nearest table value at the stored scale.
        for (j, (&v, &q)) in x.iter().zip(&y).enumerate() {
            let best = KVALUES_IQ4NL.iter().map(|&k| (d * f32::from(k) - v).abs()).fold(f32::INFINITY, f32::min);
            assert!((q - v).abs() <= best * (1.0 + 1e-5) + 1e-9, "case {case} element {j}: {q} for {v}");
        }
        // The chosen scale does at least as well (weights x^2) as the plain
        // one from the value of largest magnitude.
        let (_, max) = x.iter().fold((0.0f32, 0.0f32), |(a, m), &v| if v.abs() > a { (v.abs(), v) } else { (a, m) });
        let plain = max / -127.0;
        let err = |d: f32| -> f32 {
            x.iter()
                .map(|&v| {
                    let q = KVALUES_IQ4NL.iter().map(|&k| d * f32::from(k)).fold(f32::NAN, |b, c| {
                        if b.is_nan() || (c - v).abs() < (b - v).abs() {
                            c
                        } else {
                            b
                        }
                    });
                    v * v * (q - v) * (q - v)
                })
                .sum()
        };
        assert!(err(d) <= err(plain) * 1.01 + 1e-12, "case {case}: {} vs {}", err(d), err(plain));
    }
}

#[test]
#[allow(unused_assignments)]
fn iq4_nl_dots_match_scalar_and_dequantized_at_every_level() {
    let mut r = Rng(52);
    for nb in [1usize, 2, 3, 7, 9, 16] {
        let n = 32 * nb;
        type Nl = (Vec<f32>, Vec<f32>, Vec<BlockIQ4NL>, Vec<BlockQ8_0>);
        let cs: Vec<Nl> = (0..8)
            .map(|_| {
                let (w, x) = (r.weights(n), (0..n).map(|_| r.normal()).collect::<Vec<f32>>());
                let (mut wq, mut xq) = (std::vec![BlockIQ4NL::default(); nb], std::vec![BlockQ8_0::default(); nb]);
                quantize_row_iq4_nl(&w, &mut wq);
                quantize_row_q8_0(&x, &mut xq);
                (w, x, wq, xq)
            })
            .collect();
        let scale = |a: usize, b: usize| (dot64(&cs[a].0, &cs[a].0).sqrt() * dot64(&cs[b].1, &cs[b].1).sqrt()) as f32;
        for (a, c) in cs.iter().enumerate() {
            // Scalar: the integer dot per block equals the dequantized one.
            let (mut wd, mut xd) = (std::vec![0.0f32; n], std::vec![0.0f32; n]);
            dequantize_row_iq4_nl(&c.2, &mut wd);
            dequantize_row_q8_0(&c.3, &mut xd);
            let got = scalar::dot_iq4_nl(&c.2, &c.3);
            let terms: f64 = wd.iter().zip(&xd).map(|(p, q)| f64::from((p * q).abs())).sum();
            assert!((f64::from(got) - dot64(&wd, &xd)).abs() <= 1e-5 * terms + 1e-9, "nb={nb}");
            assert!((f64::from(got) - dot64(&c.0, &c.1)).abs() < 0.1 * f64::from(scale(a, a)), "nb={nb}");
        }
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            let ws: [&[BlockIQ4NL]; 4] = core::array::from_fn(|k| cs[k].2.as_slice());
            let xs: [&[BlockQ8_0]; 4] = core::array::from_fn(|k| cs[k].3.as_slice());
            let mut first: Option<u32> = None;
            crate::tests::for_each_level!(|t, name| {
                let t44 = t::tile_iq4_nl::<4, 4>(t::token().unwrap(), ws, xs);
                for a in 0..4 {
                    for b in 0..4 {
                        let one = t::tile_iq4_nl::<1, 1>(t::token().unwrap(), [ws[a]], [xs[b]])[0][0];
                        assert_eq!(t44[a][b].to_bits(), one.to_bits(), "{name} nb={nb}");
                        let want = scalar::dot_iq4_nl(ws[a], xs[b]);
                        assert!(close32(want, one, scale(a, b) * 4.0), "{name} nb={nb}: {want} vs {one}");
                    }
                }
                match first {
                    None => first = Some(t44[3][0].to_bits()),
                    Some(f) => assert_eq!(f, t44[3][0].to_bits(), "{name}: differs from AVX2"),
                }
            });
            #[cfg(target_arch = "x86_64")]
            if detect().best_level() >= SimdLevel::Avx512Vnni {
                let w8: [&[BlockIQ4NL]; 8] = core::array::from_fn(|k| cs[k].2.as_slice());
                let x8: [&[BlockQ8_0]; 8] = core::array::from_fn(|k| cs[k].3.as_slice());
                let sums: Vec<Vec<i32>> =
                    cs.iter().map(|c| c.3.iter().map(|b| b.qs.iter().map(|&q| i32::from(q)).sum()).collect()).collect();
                let s8: [&[i32]; 8] = core::array::from_fn(|k| sums[k].as_slice());
                let o = crate::arch::x86_64::avx512::oct_iq4_nl::<8>(
                    crate::arch::x86_64::avx512::token().unwrap(),
                    w8,
                    x8,
                    s8,
                );
                for c in 0..8 {
                    for k in 0..8 {
                        let want = scalar::dot_iq4_nl(w8[k], x8[c]);
                        assert!(close32(want, o[c][k], scale(k, c) * 4.0), "oct nb={nb}: {want} vs {}", o[c][k]);
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------ Q2_K, Q3_K, IQ4_XS

/// `n` blocks of random bytes, then `fix` (which sets sane f16 scales).
fn random_blocks<T: crate::cast::Pod>(r: &mut Rng, n: usize, fix: impl Fn(&mut T, &mut Rng)) -> Vec<T> {
    let size = core::mem::size_of::<T>();
    (0..n)
        .map(|_| {
            let bytes: Vec<u8> = (0..size).map(|_| r.u32() as u8).collect();
            let mut b: T = crate::cast::read_pod(&bytes);
            fix(&mut b, r);
            b
        })
        .collect()
}

/// A random f16 with magnitude in [lo, 2 lo), of either sign if `signed`.
fn f16_scale(r: &mut Rng, lo: f32, signed: bool) -> u16 {
    let v = lo * (1.0 + r.uniform().abs());
    f32_to_f16(if signed && r.u32().is_multiple_of(2) { -v } else { v })
}

/// Random Q2_K, Q3_K and IQ4_XS rows of `nb` super-blocks.
fn k_rows(r: &mut Rng, nb: usize) -> (Vec<BlockQ2K>, Vec<BlockQ3K>, Vec<BlockIQ4XS>) {
    (
        random_blocks(r, nb, |b: &mut BlockQ2K, r| {
            b.d = f16_scale(r, 0.01, false);
            b.dmin = f16_scale(r, 0.01, false);
        }),
        random_blocks(r, nb, |b: &mut BlockQ3K, r| b.d = f16_scale(r, 0.002, true)),
        random_blocks(r, nb, |b: &mut BlockIQ4XS, r| b.d = f16_scale(r, 0.001, true)),
    )
}

#[test]
fn q2_k_q3_k_iq4_xs_scalar_dots_equal_dequantized_dots() {
    let mut r = Rng(61);
    for nb in [1usize, 2, 3, 5] {
        let n = 256 * nb;
        let (w2, w3, wx) = k_rows(&mut r, nb);
        let x: Vec<f32> = (0..n).map(|_| r.normal()).collect();
        let mut xq = std::vec![BlockQ8K::default(); nb];
        quantize_row_q8_k(&x, &mut xq);
        let mut xd = std::vec![0.0f32; n];
        dequantize_row_q8_k(&xq, &mut xd);
        let mut wd = std::vec![0.0f32; n];
        // Integer sums are exact; only the float terms per super-block round.
        let tol = |w: &[f32]| 1e-5 * w.iter().zip(&xd).map(|(a, b)| f64::from((a * b).abs())).sum::<f64>() + 1e-9;
        dequantize_row_q2_k(&w2, &mut wd);
        let got = f64::from(scalar::dot_q2_k(&w2, &xq));
        assert!((got - dot64(&wd, &xd)).abs() <= tol(&wd), "q2_k nb={nb}: {got} vs {}", dot64(&wd, &xd));
        dequantize_row_q3_k(&w3, &mut wd);
        let got = f64::from(scalar::dot_q3_k(&w3, &xq));
        assert!((got - dot64(&wd, &xd)).abs() <= tol(&wd), "q3_k nb={nb}: {got} vs {}", dot64(&wd, &xd));
        dequantize_row_iq4_xs(&wx, &mut wd);
        let got = f64::from(scalar::dot_iq4_xs(&wx, &xq));
        assert!((got - dot64(&wd, &xd)).abs() <= tol(&wd), "iq4_xs nb={nb}: {got} vs {}", dot64(&wd, &xd));
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn q2_k_q3_k_iq4_xs_tiles_are_bit_identical_to_scalar() {
    let mut r = Rng(62);
    for nb in [1usize, 2, 3, 7] {
        let rows: Vec<_> = (0..4).map(|_| k_rows(&mut r, nb)).collect();
        let acts: Vec<Vec<BlockQ8K>> = (0..4)
            .map(|_| {
                let x: Vec<f32> = (0..256 * nb).map(|_| r.normal()).collect();
                let mut q = std::vec![BlockQ8K::default(); nb];
                quantize_row_q8_k(&x, &mut q);
                q
            })
            .collect();
        let xs: [&[BlockQ8K]; 4] = core::array::from_fn(|k| acts[k].as_slice());
        macro_rules! check {
            ($t:ident, $name:expr, $f:ident, $field:tt, $scalar:path) => {{
                let ws: [&[_]; 4] = core::array::from_fn(|k| rows[k].$field.as_slice());
                let t44 = $t::$f::<4, 4>($t::token().unwrap(), ws, xs);
                let t18 = $t::$f::<1, 4>($t::token().unwrap(), [ws[2]], xs);
                for a in 0..4 {
                    for b in 0..4 {
                        let want = $scalar(ws[a], xs[b]).to_bits();
                        assert_eq!(t44[a][b].to_bits(), want, "{} {} nb={nb} [{a}][{b}]", $name, stringify!($f));
                        if a == 2 {
                            assert_eq!(t18[0][b].to_bits(), want, "{} {} 1x4", $name, stringify!($f));
                        }
                    }
                }
            }};
        }
        crate::tests::for_each_level!(|t, name| {
            check!(t, name, tile_q2_k, 0, scalar::dot_q2_k);
            check!(t, name, tile_q3_k, 1, scalar::dot_q3_k);
            check!(t, name, tile_iq4_xs, 2, scalar::dot_iq4_xs);
        });
    }
}

#[test]
fn q2_k_q3_k_iq4_xs_matmul_equals_matvec() {
    use crate::ops::{self, Weights};
    let mut r = Rng(63);
    let (rows, nb) = (19, 2);
    let cols = 256 * nb;
    let ms: Vec<_> = (0..rows).map(|_| k_rows(&mut r, nb)).collect();
    let w2: Vec<BlockQ2K> = ms.iter().flat_map(|m| m.0.clone()).collect();
    let w3: Vec<BlockQ3K> = ms.iter().flat_map(|m| m.1.clone()).collect();
    let wx: Vec<BlockIQ4XS> = ms.iter().flat_map(|m| m.2.clone()).collect();
    let n = 5;
    let xs: Vec<f32> = (0..n * cols).map(|_| r.normal()).collect();
    let mut scratch = ops::ActScratch::new(cols, n);
    for w in [Weights::Q2_K(&w2), Weights::Q3_K(&w3), Weights::IQ4_XS(&wx)] {
        let mut mm = std::vec![0.0f32; n * rows];
        ops::matmul(&crate::exec::Serial, w, cols, &xs, n, &mut scratch, &mut mm);
        for j in 0..n {
            let x = &xs[j * cols..(j + 1) * cols];
            let mut mv = std::vec![0.0f32; rows];
            ops::matvec(&crate::exec::Serial, w, cols, x, &mut scratch, &mut mv);
            let mut row = std::vec![0.0f32; cols];
            for (i, (&a, &b)) in mv.iter().zip(&mm[j * rows..(j + 1) * rows]).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{} act {j} row {i}", w.type_name());
                // And near the dequantized row's f64 dot (activations rounded to Q8_K).
                ops::dequantize_row(w, i, cols, &mut row);
                let exact = dot64(&row, x);
                let size: f64 = row.iter().zip(x).map(|(p, q)| f64::from((p * q).abs())).sum();
                assert!(
                    (f64::from(a) - exact).abs() <= 0.02 * size + 1e-6,
                    "{} row {i}: {a} vs {exact}",
                    w.type_name()
                );
            }
        }
    }
}

#[test]
fn q2_k_q3_k_iq4_xs_quantizers_requantize_against_their_stored_scales() {
    let mut r = Rng(64);
    for case in 0..6 {
        let mut x = r.weights(512);
        if case == 1 {
            x[..256].fill(0.0);
        }
        if case == 2 {
            x.iter_mut().for_each(|v| *v = v.abs());
        }
        let mut b2 = [BlockQ2K::default(); 2];
        let mut b3 = [BlockQ3K::default(); 2];
        let mut bx = [BlockIQ4XS::default(); 2];
        quantize_row_q2_k(&x, &mut b2);
        quantize_row_q3_k(&x, &mut b3);
        quantize_row_iq4_xs(&x, &mut bx);
        for (k, xs) in x.chunks_exact(256).enumerate() {
            // Q2_K: every value the nearest of its group's 4 levels d*sc*q - dmin*m.
            let b = &b2[k];
            for (i, &v) in xs.iter().enumerate() {
                let sc = b.scales[i / 16];
                let d = f16_to_f32(b.d) * f32::from(sc & 0xF);
                if d == 0.0 {
                    continue;
                }
                let dm = f16_to_f32(b.dmin) * f32::from(sc >> 4);
                assert_eq!(k2_value(&b.qs, i) as i32, nearest_int((v + dm) / d).clamp(0, 3), "q2_k case {case} {i}");
            }
            // Q3_K: the nearest of d*(sc-32)*(-4..4).
            let b = &b3[k];
            for (i, &v) in xs.iter().enumerate() {
                let d = f16_to_f32(b.d) * (i32::from(q3_k_scale(&b.scales, i / 16)) - 32) as f32;
                if d == 0.0 {
                    continue;
                }
                assert_eq!(i32::from(q3_k_value(b, i)), nearest_int(v / d).clamp(-4, 3), "q3_k case {case} {i}");
            }
            // IQ4_XS: every value at the nearest table entry of its sub-block's scale.
            let mut y = [0.0f32; 256];
            dequantize_row_iq4_xs(core::slice::from_ref(&bx[k]), &mut y);
            for (i, (&v, &q)) in xs.iter().zip(&y).enumerate() {
                let dl = f16_to_f32(bx[k].d) * (i32::from(iq4_xs_scale(&bx[k], i / 32)) - 32) as f32;
                let best = KVALUES_IQ4NL.iter().map(|&t| (dl * f32::from(t) - v).abs()).fold(f32::INFINITY, f32::min);
                // The index comes from the f32 scale, the stored one is its f16
                // (relative error 2^-11): each level moves by up to 127 |dl| 2^-11.
                let slack = 2.0 * 127.0 * dl.abs() / 2048.0;
                assert!((q - v).abs() <= best + slack + 1e-9, "iq4_xs case {case} {i}: {q} for {v} (best {best})");
            }
        }
        // And the reconstruction is as good as these bit widths give.
        let mut y = std::vec![0.0f32; 512];
        let rms = rmse(&x, &std::vec![0.0; 512]);
        dequantize_row_q2_k(&b2, &mut y);
        assert!(rmse(&x, &y) < 0.6 * rms + 1e-9, "q2_k case {case}: {} of {rms}", rmse(&x, &y));
        dequantize_row_q3_k(&b3, &mut y);
        assert!(rmse(&x, &y) < 0.3 * rms + 1e-9, "q3_k case {case}: {} of {rms}", rmse(&x, &y));
        dequantize_row_iq4_xs(&bx, &mut y);
        assert!(rmse(&x, &y) < 0.15 * rms + 1e-9, "iq4_xs case {case}: {} of {rms}", rmse(&x, &y));
    }
    // All-zero super-blocks: zero scales.
    let mut b2 = [BlockQ2K::default()];
    quantize_row_q2_k(&[0.0; 256], &mut b2);
    assert_eq!((b2[0].d, b2[0].dmin, b2[0].scales), (0, 0, [0; 16]));
    let mut b3 = [BlockQ3K::default()];
    quantize_row_q3_k(&[0.0; 256], &mut b3);
    assert_eq!(b3[0].d, 0);
}
