//! F32 matmul for prompt processing with AVX-512 (F, VL): register tiles of
//! `R` weight rows x `C` activations in zmm vectors along the columns,
//! bit-identical to matvec. Private to the crate; `ops` calls it only when
//! `cpu::level() >= Avx512Vnni`.
//!
//! Matvec (`tile_f32::<1, 1>`) sums a row in two ymm accumulators: lane l
//! of the first takes columns `16i + l`, of the second `16i + 8 + l`, each a
//! chain of fused multiply-adds; then adds the two, sums the eight lanes in
//! a fixed tree (`avx2::hsum`) and adds the columns from `n8 = cols / 8 * 8`
//! one by one. One zmm accumulator holds both: its lanes 0..8 are the first
//! ymm's, 8..16 the second's, and a load of 16 columns feeds both at once
//! (the last 8 columns of `n8`, if any, go to the low half only, with a
//! mask). So the tiles do the same operations per output as matvec, with
//! half the instructions of the ymm tiles and, in 32 registers, 24 zmm sums
//! (6 rows x 4 activations) for 10 loads per 24 FMAs.
//!
//! The columns go in blocks of [`KC`]: six weight rows' block stays in L1
//! while all activations stream past; the zmm sums wait in scratch between
//! blocks (stored and loaded exactly, so the bits do not change). Meanwhile
//! the tiles prefetch the next block's weights, and the activations come at
//! a stride that keeps their rows out of the weight rows' L1 sets
//! ([`act_stride`]).

use core::arch::x86_64::*;

use crate::arch::x86_64::avx2::hsum;

/// Weight rows per register tile.
pub(crate) const R: usize = 6;
/// Activations per register tile.
pub(crate) const C: usize = 4;
// The tile calls in `rows_impl` spell the shapes out.
const _: () = assert!(R == 6 && C == 4);

/// Columns per block (R rows of it: 24 KiB).
pub(crate) const KC: usize = 1024;
/// The hint for the prefetches of the next block's weights.
const PF_HINT: i32 = _MM_HINT_T0;
const _: () = assert!(KC.is_multiple_of(16));

/// Sums as matvec keeps them for `R2` x `C2` pairs: one zmm each.
type Acc<const R2: usize, const C2: usize> = [[__m512; C2]; R2];

/// Columns `k0..k1` (multiples of 16 apart, `k1 <= cols / 16 * 16`) of `R2`
/// rows (`ws`) against `C2` activations (`xs`), added to `acc`; at each
/// column k, prefetches `pf + k` unless `pf` is null.
///
/// # Safety
/// Every pointer must be valid for reading `k1` floats.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[allow(clippy::needless_range_loop)]
unsafe fn steps<const R2: usize, const C2: usize>(
    ws: [*const f32; R2],
    xs: [*const f32; C2],
    k0: usize,
    k1: usize,
    pf: *const f32,
    mut acc: Acc<R2, C2>,
) -> Acc<R2, C2> {
    let mut k = k0;
    while k < k1 {
        if !pf.is_null() {
            // A prefetch does not fault, whatever the address.
            _mm_prefetch::<PF_HINT>(pf.wrapping_add(k).cast());
        }
        // SAFETY: k + 16 <= k1 floats of each row (caller).
        let wv: [__m512; R2] = core::array::from_fn(|r| unsafe { _mm512_loadu_ps(ws[r].add(k)) });
        for c in 0..C2 {
            // SAFETY: as above.
            let xv = unsafe { _mm512_loadu_ps(xs[c].add(k)) };
            for r in 0..R2 {
                acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
            }
        }
        k += 16;
    }
    acc
}

/// The end of the sums from column `cols / 16 * 16`: the last 8 columns of
/// `n8` into the low half (matvec's first accumulator), the two halves
/// added, the horizontal sum, then the columns from `n8` one by one.
///
/// # Safety
/// Every pointer must be valid for reading `cols` floats.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[allow(clippy::needless_range_loop)]
unsafe fn finish<const R2: usize, const C2: usize>(
    ws: [*const f32; R2],
    xs: [*const f32; C2],
    cols: usize,
    mut acc: Acc<R2, C2>,
) -> [[f32; C2]; R2] {
    let (n8, n16) = (cols / 8 * 8, cols / 16 * 16);
    if n8 > n16 {
        const LO: __mmask16 = 0x00ff;
        // SAFETY: n16 + 8 = n8 <= cols; the masked loads read lanes 0..8 only.
        let wv: [__m512; R2] = core::array::from_fn(|r| unsafe { _mm512_maskz_loadu_ps(LO, ws[r].add(n16)) });
        for c in 0..C2 {
            // SAFETY: as above.
            let xv = unsafe { _mm512_maskz_loadu_ps(LO, xs[c].add(n16)) };
            for r in 0..R2 {
                acc[r][c] = _mm512_mask3_fmadd_ps(wv[r], xv, acc[r][c], LO);
            }
        }
    }
    let mut out = [[0.0f32; C2]; R2];
    for r in 0..R2 {
        for c in 0..C2 {
            let a = acc[r][c];
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
            let mut s = hsum(_mm256_add_ps(_mm512_castps512_ps256(a), hi));
            for j in n8..cols {
                // SAFETY: j < cols.
                s += unsafe { *ws[r].add(j) * *xs[c].add(j) };
            }
            out[r][c] = s;
        }
    }
    out
}

/// The activation row stride [`rows`] reads best for `cols`: rows 4 KiB
/// apart would share L1 sets with each other and with the weight rows (a
/// tile touches the same column of 10 rows at once), so those get one more
/// cache line.
pub(crate) fn act_stride(cols: usize) -> usize {
    if cols.is_multiple_of(1024) {
        cols + 16
    } else {
        cols
    }
}

/// Floats of scratch [`rows`] needs for `n` activations of `cols` (none
/// for a single column block).
pub(crate) fn scratch_len(cols: usize, n: usize) -> usize {
    if cols / 16 * 16 > KC {
        n.div_ceil(C) * R * C * 16
    } else {
        0
    }
}

/// Rows `r0..r1` of `w` (`[_, cols]`) against the `n` activations `xs`
/// (row j at `j * xld`, `cols` each), into `out[j * ld + r]`; `buf` is
/// scratch of [`scratch_len`] floats.
///
/// # Safety
/// The token proves AVX-512 F and VL (and AVX2, FMA); `out` must be valid for writing `out[j * ld + r]` for every
/// j < n and r0 <= r < r1, with no other thread accessing those elements
/// during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rows(
    _: crate::cpu::Avx512VnniToken,
    w: &[f32],
    cols: usize,
    xs: &[f32],
    xld: usize,
    n: usize,
    r0: usize,
    r1: usize,
    out: *mut f32,
    ld: usize,
    buf: &mut [f32],
) {
    // SAFETY: the token proves the features; the caller guarantees the output range.
    unsafe { rows_impl(w, cols, xs, xld, n, r0, r1, out, ld, buf) }
}

/// See [`rows`].
///
/// # Safety
/// As [`rows`], without the features.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_impl(
    w: &[f32],
    cols: usize,
    xs: &[f32],
    xld: usize,
    n: usize,
    r0: usize,
    r1: usize,
    out: *mut f32,
    ld: usize,
    buf: &mut [f32],
) {
    assert!(r0 <= r1 && r1 * cols <= w.len() && buf.len() >= scratch_len(cols, n));
    assert!(xld >= cols && (n == 0 || (n - 1) * xld + cols <= xs.len()));
    let wrow = |r: usize| w[r * cols..].as_ptr();
    let xrow = |j: usize| xs[j * xld..].as_ptr();
    let n16 = cols / 16 * 16;
    let blocks = n16.div_ceil(KC).max(1);
    let bp = buf.as_mut_ptr();
    let mut r = r0;
    while r < r1 {
        let rw = R.min(r1 - r);
        for b in 0..blocks {
            let (k0, k1) = (b * KC, ((b + 1) * KC).min(n16));
            let last = b + 1 == blocks;
            // While activation tile g runs, prefetch weight row g of the next block: this
            // rows' next columns, or the next rows' first.
            let (pf_row, pf_shift) = if last { (r + R, 0) } else { (r, KC) };
            let mut j = 0;
            while j < n {
                let cw = C.min(n - j);
                let g = j / C;
                let pf = if g < R && pf_row + g < r1 {
                    wrow(pf_row + g).wrapping_add(pf_shift).wrapping_sub(k0)
                } else {
                    core::ptr::null()
                };
                // This tile's sums between blocks.
                let sp = j / C * R * C * 16;
                macro_rules! run {
                    ($rr:literal, $cc:literal) => {{
                        let ws: [*const f32; $rr] = core::array::from_fn(|i| wrow(r + i));
                        let xv: [*const f32; $cc] = core::array::from_fn(|i| xrow(j + i));
                        let at = |rr: usize, cc: usize| sp + (rr * $cc + cc) * 16;
                        let acc: Acc<$rr, $cc> = if b == 0 {
                            [[_mm512_setzero_ps(); $cc]; $rr]
                        } else {
                            core::array::from_fn(|rr| {
                                core::array::from_fn(|cc| {
                                    // SAFETY: b > 0, so there are several blocks and at(..) + 16 <=
                                    // scratch_len(cols, n) floats of `buf` (asserted).
                                    unsafe { _mm512_loadu_ps(bp.add(at(rr, cc))) }
                                })
                            })
                        };
                        // SAFETY: rows r..r + $rr < r1 and activations j..j + $cc < n hold cols
                        // floats each (asserted), and k1 <= n16 <= cols.
                        let acc = unsafe { steps::<$rr, $cc>(ws, xv, k0, k1, pf, acc) };
                        if last {
                            // SAFETY: as above.
                            let d = unsafe { finish::<$rr, $cc>(ws, xv, cols, acc) };
                            for (rr, row) in d.iter().enumerate() {
                                for (cc, &v) in row.iter().enumerate() {
                                    // SAFETY: j + cc < n and r + rr < r1: inside `out`, this task's (caller).
                                    unsafe { *out.add((j + cc) * ld + r + rr) = v };
                                }
                            }
                        } else {
                            for (rr, row) in acc.iter().enumerate() {
                                for (cc, &v) in row.iter().enumerate() {
                                    // SAFETY: not the last block, so as for the loads.
                                    unsafe { _mm512_storeu_ps(bp.add(at(rr, cc)), v) };
                                }
                            }
                        }
                    }};
                }
                match (rw, cw) {
                    (6, 4) => run!(6, 4),
                    (6, 3) => run!(6, 3),
                    (6, 2) => run!(6, 2),
                    (6, 1) => run!(6, 1),
                    (_, 4) => run!(1, 4),
                    (_, 3) => run!(1, 3),
                    (_, 2) => run!(1, 2),
                    _ => run!(1, 1),
                }
                j += cw;
            }
        }
        r += if rw == R { R } else { 1 };
    }
}

/// Scalar twin of [`rows`] over a whole matrix, as matvec sums:
/// `out[j * rows + r]` = row r of `w` . activation j, with the 16 lane sums
/// (multiply, then add), the same tree, then the tail columns.
#[cfg(test)]
pub(crate) fn gemm_ref(w: &[f32], cols: usize, xs: &[f32], n: usize, out: &mut [f32]) {
    let rows = out.len() / n.max(1);
    let n8 = cols / 8 * 8;
    for j in 0..n {
        for r in 0..rows {
            let (wr, x) = (&w[r * cols..(r + 1) * cols], &xs[j * cols..(j + 1) * cols]);
            let mut p = [0.0f32; 16];
            for k in 0..n8 {
                p[k % 16] += wr[k] * x[k];
            }
            let v: [f32; 8] = core::array::from_fn(|l| p[l] + p[8 + l]);
            let mut s = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
            for k in n8..cols {
                s += wr[k] * x[k];
            }
            out[j * rows + r] = s;
        }
    }
}
