//! The kernels the engine calls: each picks its implementation from the
//! cached SIMD level, so callers never see `#[target_feature]` functions.

use alloc::vec::Vec;

use crate::cast::{bytes_of, view};
#[cfg(target_arch = "x86_64")]
use crate::cpu::Avx512VnniToken;
use crate::cpu::{caps, Caps};
use crate::exec::Executor;
pub use crate::math::{exp, exp_f64, gelu_tanh, libm_sqrt, ln_f64, powf_f64, silu, sin_cos, sin_cos_f64};
use crate::quant::{
    self, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4Kx8, BlockQ4_0, BlockQ4_0x8, BlockQ4_1,
    BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ6Kx8, BlockQ8K, BlockQ8_0, BlockQ8_1, QK8_0, QK8_1, QK_K,
};
use crate::scalar;
use crate::types::WType;

/// A weight matrix, row-major `[rows, cols]`, in one of the storage types.
/// Quantized rows are whole blocks: `cols` is a multiple of the block size.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    BF16(&'a [u16]),
    Q8_0(&'a [BlockQ8_0]),
    Q4_0(&'a [BlockQ4_0]),
    /// Q4_0 repacked into row octets ([`BlockQ4_0x8`]): `rows` must be a
    /// multiple of 8; octet o holds rows 8o..8o+8.
    Q4_0x8(&'a [BlockQ4_0x8]),
    Q4_1(&'a [BlockQ4_1]),
    Q5_0(&'a [BlockQ5_0]),
    Q5_1(&'a [BlockQ5_1]),
    IQ4_NL(&'a [BlockIQ4NL]),
    Q2_K(&'a [BlockQ2K]),
    Q3_K(&'a [BlockQ3K]),
    IQ4_XS(&'a [BlockIQ4XS]),
    Q4_K(&'a [BlockQ4K]),
    /// Q4_K repacked into row octets ([`BlockQ4Kx8`]), as [`Weights::Q4_0x8`].
    Q4_Kx8(&'a [BlockQ4Kx8]),
    Q5_K(&'a [BlockQ5K]),
    Q6_K(&'a [BlockQ6K]),
    /// Q6_K repacked into row octets ([`BlockQ6Kx8`]), as [`Weights::Q4_0x8`].
    Q6_Kx8(&'a [BlockQ6Kx8]),
}

/// How matvec and matmul feed activations to a weight type.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    /// f32 as they are.
    F32,
    /// Quantized to Q8_0 blocks of 32 (for Q8_0, Q4_0, Q5_0 and IQ4_NL weights).
    Q8_0,
    /// Quantized to Q8_1 blocks of 32 (for Q4_1 and Q5_1).
    Q8_1,
    /// Quantized to Q8_K super-blocks of 256 (for the K-quants).
    Q8_K,
}

impl<'a> Weights<'a> {
    /// The storage type (for a repacked layout, the type it was repacked from).
    pub fn ty(&self) -> WType {
        self.raw().0
    }

    /// Whether the blocks are repacked into row octets.
    pub fn is_octets(&self) -> bool {
        self.raw().1
    }

    /// (type, repacked into octets, the blocks' bytes).
    fn raw(&self) -> (WType, bool, &'a [u8]) {
        match *self {
            Weights::F32(m) => (WType::F32, false, bytes_of(m)),
            Weights::F16(m) => (WType::F16, false, bytes_of(m)),
            Weights::BF16(m) => (WType::BF16, false, bytes_of(m)),
            Weights::Q8_0(m) => (WType::Q8_0, false, bytes_of(m)),
            Weights::Q4_0(m) => (WType::Q4_0, false, bytes_of(m)),
            Weights::Q4_0x8(m) => (WType::Q4_0, true, bytes_of(m)),
            Weights::Q4_1(m) => (WType::Q4_1, false, bytes_of(m)),
            Weights::Q5_0(m) => (WType::Q5_0, false, bytes_of(m)),
            Weights::Q5_1(m) => (WType::Q5_1, false, bytes_of(m)),
            Weights::IQ4_NL(m) => (WType::IQ4_NL, false, bytes_of(m)),
            Weights::Q2_K(m) => (WType::Q2_K, false, bytes_of(m)),
            Weights::Q3_K(m) => (WType::Q3_K, false, bytes_of(m)),
            Weights::IQ4_XS(m) => (WType::IQ4_XS, false, bytes_of(m)),
            Weights::Q4_K(m) => (WType::Q4_K, false, bytes_of(m)),
            Weights::Q4_Kx8(m) => (WType::Q4_K, true, bytes_of(m)),
            Weights::Q5_K(m) => (WType::Q5_K, false, bytes_of(m)),
            Weights::Q6_K(m) => (WType::Q6_K, false, bytes_of(m)),
            Weights::Q6_Kx8(m) => (WType::Q6_K, true, bytes_of(m)),
        }
    }

    /// The view of `bytes` (whole blocks of `ty`, or of its octets when
    /// `octets`) as weights; `None` if they are not aligned for the block
    /// type or not whole blocks, or `ty` has no octet layout.
    pub fn from_bytes(ty: WType, bytes: &'a [u8], octets: bool) -> Option<Self> {
        if octets {
            return match ty {
                WType::Q4_0 => Some(Weights::Q4_0x8(view(bytes)?)),
                WType::Q4_K => Some(Weights::Q4_Kx8(view(bytes)?)),
                WType::Q6_K => Some(Weights::Q6_Kx8(view(bytes)?)),
                _ => None,
            };
        }
        Some(match ty {
            WType::F32 => Weights::F32(view(bytes)?),
            WType::F16 => Weights::F16(view(bytes)?),
            WType::BF16 => Weights::BF16(view(bytes)?),
            WType::Q8_0 => Weights::Q8_0(view(bytes)?),
            WType::Q4_0 => Weights::Q4_0(view(bytes)?),
            WType::Q4_1 => Weights::Q4_1(view(bytes)?),
            WType::Q5_0 => Weights::Q5_0(view(bytes)?),
            WType::Q5_1 => Weights::Q5_1(view(bytes)?),
            WType::IQ4_NL => Weights::IQ4_NL(view(bytes)?),
            WType::Q2_K => Weights::Q2_K(view(bytes)?),
            WType::Q3_K => Weights::Q3_K(view(bytes)?),
            WType::IQ4_XS => Weights::IQ4_XS(view(bytes)?),
            WType::Q4_K => Weights::Q4_K(view(bytes)?),
            WType::Q5_K => Weights::Q5_K(view(bytes)?),
            WType::Q6_K => Weights::Q6_K(view(bytes)?),
        })
    }

    /// The activation format the dot products of this type take.
    pub fn act_kind(&self) -> ActKind {
        self.ty().info().act
    }

    /// Whether matvec needs the activations quantized to Q8_0 first.
    pub fn needs_q8_0_activations(&self) -> bool {
        self.act_kind() == ActKind::Q8_0
    }

    /// Elements per block of the storage type (1 for plain floats).
    pub fn block_size(&self) -> usize {
        self.ty().block_size()
    }

    /// Bytes the view covers.
    pub fn byte_len(&self) -> usize {
        self.raw().2.len()
    }

    /// Number of elements the view holds.
    pub fn n_elements(&self) -> usize {
        let (ty, _, b) = self.raw();
        b.len() / ty.info().block_bytes * ty.block_size()
    }

    /// The GGUF name of the storage type (of the repacked layout for octets).
    pub fn type_name(&self) -> &'static str {
        let (ty, oct, _) = self.raw();
        match ty.info().octets {
            Some(o) if oct => o.name,
            _ => ty.name(),
        }
    }
}

/// Row `r` of `w` (with `cols` columns) converted to f32 into `out[..cols]`.
/// Panics if the row is outside the matrix or `cols` is not whole blocks.
pub fn dequantize_row(w: Weights<'_>, r: usize, cols: usize, out: &mut [f32]) {
    let out = &mut out[..cols];
    let (ty, oct, bytes) = w.raw();
    let info = ty.info();
    assert!(cols.is_multiple_of(info.block_size), "{cols} columns are not whole {} blocks", info.name);
    let row = cols / info.block_size * info.block_bytes;
    match info.octets {
        Some(o) if oct => (o.dequantize_row)(&bytes[r / 8 * 8 * row..(r / 8 + 1) * 8 * row], r % 8, out),
        _ => (info.dequantize)(&bytes[r * row..(r + 1) * row], out),
    }
}

/// Scratch for quantized activations: room for `max_rows` rows of at most
/// `max_cols` values in both Q8_0 and Q8_K form. Allocated once, so matvec
/// and matmul never allocate.
#[derive(Debug, Clone, Default)]
pub struct ActScratch {
    q8_0: Vec<BlockQ8_0>,
    /// Sum of each Q8_0 block's values (for the row-octet kernels).
    q8_0_sums: Vec<i32>,
    /// Each Q8_0 block's scale as f32.
    q8_0_d: Vec<f32>,
    q8_1: Vec<BlockQ8_1>,
    q8_k: Vec<BlockQ8K>,
    /// The F32 tiles' padded activations and per-task sums (AVX-512 only):
    /// grown, fallibly, on first use, then reused.
    f32_buf: Vec<f32>,
    max_cols: usize,
    max_rows: usize,
}

impl ActScratch {
    /// Scratch for `max_rows` activation rows of up to `max_cols` values.
    pub fn new(max_cols: usize, max_rows: usize) -> Self {
        let rows = max_rows.max(1);
        ActScratch {
            q8_0: alloc::vec![BlockQ8_0::default(); rows * max_cols.div_ceil(QK8_0)],
            q8_0_sums: alloc::vec![0; rows * max_cols.div_ceil(QK8_0)],
            q8_0_d: alloc::vec![0.0; rows * max_cols.div_ceil(QK8_0)],
            q8_1: alloc::vec![BlockQ8_1::default(); rows * max_cols.div_ceil(QK8_1)],
            q8_k: alloc::vec![BlockQ8K::default(); rows * max_cols.div_ceil(QK_K)],
            f32_buf: Vec::new(),
            max_cols,
            max_rows: rows,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        core::mem::size_of_val(self.q8_0.as_slice())
            + core::mem::size_of_val(self.q8_0_sums.as_slice())
            + core::mem::size_of_val(self.q8_0_d.as_slice())
            + core::mem::size_of_val(self.q8_1.as_slice())
            + core::mem::size_of_val(self.q8_k.as_slice())
            + core::mem::size_of_val(self.f32_buf.as_slice())
    }

    /// `len` floats of scratch for the F32 tiles; None if they cannot be
    /// allocated (the caller then takes a path that needs none).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn f32_buf(&mut self, len: usize) -> Option<&mut [f32]> {
        if self.f32_buf.len() < len {
            self.f32_buf.try_reserve_exact(len - self.f32_buf.len()).ok()?;
            self.f32_buf.resize(len, 0.0);
        }
        Some(&mut self.f32_buf[..len])
    }

    fn check(&self, cols: usize, n: usize) {
        assert!(
            cols <= self.max_cols && n <= self.max_rows,
            "activation scratch for {} x {} is too small for {n} x {cols}",
            self.max_rows,
            self.max_cols
        );
    }
}

/// Quantizes `n` rows of `cols` activations (`xs` is `[n, cols]`) into the
/// scratch in the format `kind` needs, and returns the view the dot kernels take.
fn quantize_acts<'s>(kind: ActKind, xs: &'s [f32], cols: usize, n: usize, s: &'s mut ActScratch) -> Acts<'s> {
    s.check(cols, n);
    match kind {
        ActKind::F32 => Acts::F32(&xs[..n * cols]),
        ActKind::Q8_0 => {
            let nb = cols / QK8_0;
            assert_eq!(nb * QK8_0, cols, "{cols} columns are not whole Q8_0 blocks");
            let q = &mut s.q8_0[..n * nb];
            for (x, o) in xs[..n * cols].chunks_exact(cols).zip(q.chunks_exact_mut(nb)) {
                quantize_row_q8_0(x, o);
            }
            let sums = &mut s.q8_0_sums[..n * nb];
            let ds = &mut s.q8_0_d[..n * nb];
            for ((sum, d), b) in sums.iter_mut().zip(ds.iter_mut()).zip(q.iter()) {
                *sum = b.qs.iter().map(|&v| i32::from(v)).sum();
                *d = crate::half::f16_to_f32(b.d);
            }
            Acts::Q8_0(q, sums, ds, nb)
        }
        ActKind::Q8_1 => {
            let nb = cols / QK8_1;
            assert_eq!(nb * QK8_1, cols, "{cols} columns are not whole Q8_1 blocks");
            let q = &mut s.q8_1[..n * nb];
            for (x, o) in xs[..n * cols].chunks_exact(cols).zip(q.chunks_exact_mut(nb)) {
                quantize_row_q8_1(x, o);
            }
            Acts::Q8_1(q, nb)
        }
        ActKind::Q8_K => {
            let nb = cols / QK_K;
            assert_eq!(nb * QK_K, cols, "{cols} columns are not whole Q8_K blocks");
            let q = &mut s.q8_k[..n * nb];
            for (x, o) in xs[..n * cols].chunks_exact(cols).zip(q.chunks_exact_mut(nb)) {
                quantize_row_q8_k(x, o);
            }
            Acts::Q8K(q, nb)
        }
    }
}

/// Activations ready for the dot kernels: rows of `cols` f32, or rows of
/// `nb` blocks.
#[derive(Clone, Copy)]
enum Acts<'a> {
    F32(&'a [f32]),
    Q8_0(&'a [BlockQ8_0], &'a [i32], &'a [f32], usize),
    Q8_1(&'a [BlockQ8_1], usize),
    Q8K(&'a [BlockQ8K], usize),
}

/// Quantizes activations to Q8_0 (bit-identical at every SIMD level).
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::quantize_row_q8_0(t, x, out);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::quantize_row_q8_0(t, x, out);
    }
    quant::quantize_row_q8_0(x, out)
}

/// Quantizes activations to Q8_1 (bit-identical at every SIMD level).
pub fn quantize_row_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::quantize_row_q8_1(t, x, out);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::quantize_row_q8_1(t, x, out);
    }
    quant::quantize_row_q8_1(x, out)
}

/// Quantizes activations to Q8_K (bit-identical at every SIMD level).
pub fn quantize_row_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::quantize_row_q8_k(t, x, out);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::quantize_row_q8_k(t, x, out);
    }
    quant::quantize_row_q8_k(x, out)
}

/// Dot product of two f32 rows.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::dot_f32(t, a, b);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::dot_f32(t, a, b);
    }
    scalar::dot_f32(a, b)
}

/// out += a * x
#[inline]
pub fn axpy(out: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::axpy(t, out, a, x);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::axpy(t, out, a, x);
    }
    scalar::axpy(out, a, x)
}

/// The dot kernels of each storage type, one line per type: its weights'
/// activation format, its scalar twin and its tile kernel (the same name in
/// `avx2::tiles` and `avx512::tiles`). `$go!(weights, acts, len, scalar,
/// tile)` is the caller's way of running them.
macro_rules! dot_kernels {
    ($w:expr, $acts:expr, $cols:expr, $go:ident) => {
        match ($w, $acts) {
            (Weights::F32(m), Acts::F32(x)) => $go!(m, x, $cols, scalar::dot_f32, tile_f32),
            (Weights::F16(m), Acts::F32(x)) => $go!(m, x, $cols, scalar::dot_f16, tile_f16),
            (Weights::BF16(m), Acts::F32(x)) => $go!(m, x, $cols, scalar::dot_bf16, tile_bf16),
            (Weights::Q8_0(m), Acts::Q8_0(q, _, _, nb)) => $go!(m, q, nb, scalar::dot_q8_0, tile_q8_0),
            (Weights::Q4_0(m), Acts::Q8_0(q, _, _, nb)) => $go!(m, q, nb, scalar::dot_q4_0, tile_q4_0),
            (Weights::Q4_1(m), Acts::Q8_1(q, nb)) => $go!(m, q, nb, scalar::dot_q4_1, tile_q4_1),
            (Weights::Q5_0(m), Acts::Q8_0(q, _, _, nb)) => $go!(m, q, nb, scalar::dot_q5_0, tile_q5_0),
            (Weights::Q5_1(m), Acts::Q8_1(q, nb)) => $go!(m, q, nb, scalar::dot_q5_1, tile_q5_1),
            (Weights::IQ4_NL(m), Acts::Q8_0(q, _, _, nb)) => $go!(m, q, nb, scalar::dot_iq4_nl, tile_iq4_nl),
            (Weights::Q2_K(m), Acts::Q8K(q, nb)) => $go!(m, q, nb, scalar::dot_q2_k, tile_q2_k),
            (Weights::Q3_K(m), Acts::Q8K(q, nb)) => $go!(m, q, nb, scalar::dot_q3_k, tile_q3_k),
            (Weights::IQ4_XS(m), Acts::Q8K(q, nb)) => $go!(m, q, nb, scalar::dot_iq4_xs, tile_iq4_xs),
            (Weights::Q4_K(m), Acts::Q8K(q, nb)) => $go!(m, q, nb, scalar::dot_q4_k, tile_q4_k),
            (Weights::Q5_K(m), Acts::Q8K(q, nb)) => $go!(m, q, nb, scalar::dot_q5_k, tile_q5_k),
            (Weights::Q6_K(m), Acts::Q8K(q, nb)) => $go!(m, q, nb, scalar::dot_q6_k, tile_q6_k),
            _ => unreachable!("activations are quantized for the weight type"),
        }
    };
}

/// Dots of weight rows `r0..r0 + R` with activation rows `j0..j0 + C`:
/// `out[r][c]`. Every pair goes through the same operations whatever the
/// tile size (see `avx2`), so results do not depend on how rows are tiled.
#[inline]
fn tile<const R: usize, const C: usize>(
    w: Weights<'_>,
    r0: usize,
    cols: usize,
    acts: Acts<'_>,
    j0: usize,
) -> [[f32; C]; R] {
    let level = caps();
    macro_rules! go {
        ($m:expr, $x:expr, $len:expr, $scalar:path, $name:ident) => {{
            let len = $len;
            let ws: [&[_]; R] = core::array::from_fn(|r| &$m[(r0 + r) * len..(r0 + r + 1) * len]);
            let xs: [&[_]; C] = core::array::from_fn(|c| &$x[(j0 + c) * len..(j0 + c + 1) * len]);
            match level {
                #[cfg(target_arch = "x86_64")]
                Caps::Vnni(t) => crate::arch::x86_64::avx512::tiles::$name::<R, C>(t, ws, xs),
                #[cfg(target_arch = "x86_64")]
                Caps::Avx2(t) => crate::arch::x86_64::avx2::tiles::$name::<R, C>(t, ws, xs),
                #[cfg(target_arch = "aarch64")]
                Caps::I8mm(t) => crate::arch::aarch64::i8mm::tiles::$name::<R, C>(t, ws, xs),
                #[cfg(target_arch = "aarch64")]
                Caps::Dotprod(t) => crate::arch::aarch64::dotprod::tiles::$name::<R, C>(t, ws, xs),
                #[cfg(target_arch = "aarch64")]
                Caps::Neon(t) => crate::arch::aarch64::neon::tiles::$name::<R, C>(t, ws, xs),
                Caps::Scalar => core::array::from_fn(|r| core::array::from_fn(|c| $scalar(ws[r], xs[c]))),
            }
        }};
    }
    // Decoding Q4_0 with AVX-512: two blocks per vector, the same bits.
    #[cfg(target_arch = "x86_64")]
    if let (1, 1, Caps::Vnni(t)) = (R, C, level) {
        if let (Weights::Q4_0(m), Acts::Q8_0(q, _, d, nb)) = (w, acts) {
            let (x, xd) = (&q[j0 * nb..(j0 + 1) * nb], &d[j0 * nb..(j0 + 1) * nb]);
            let v = crate::arch::x86_64::avx512::q4_0_row(t, &m[r0 * nb..(r0 + 1) * nb], x, xd);
            return [[v; C]; R];
        }
    }
    dot_kernels!(w, acts, cols, go)
}

/// A pointer that tasks on other cores may write through, each to its own
/// disjoint range.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: used only by `par_rows`, `matmul` and `attention`, whose tasks write disjoint index ranges.
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

/// A pointer to the start of a slice whose disjoint pieces tasks may take.
struct SharedSlice<T>(*mut T);
impl<T> Clone for SharedSlice<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedSlice<T> {}
// SAFETY: used only by `par_chunks_mut`, whose tasks take disjoint pieces of a
// slice of `T: Send`, so sending the pieces to other threads is sound.
unsafe impl<T: Send> Sync for SharedSlice<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SharedSlice<T> {}

/// Calls `f(i, piece)` for the `i`-th piece of `chunk_len` elements of `data`
/// (the last piece may be shorter), spreading the pieces over the executor.
pub fn par_chunks_mut<T: Send>(
    exec: &dyn Executor,
    data: &mut [T],
    chunk_len: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    let chunk_len = chunk_len.max(1);
    let n = data.len();
    let tasks = n.div_ceil(chunk_len);
    if exec.n_threads() <= 1 || tasks <= 1 {
        for (i, piece) in data.chunks_mut(chunk_len).enumerate() {
            f(i, piece);
        }
        return;
    }
    let ptr = SharedSlice(data.as_mut_ptr());
    exec.run(tasks, &|t| {
        let p = ptr;
        let start = t * chunk_len;
        let len = chunk_len.min(n - start);
        // SAFETY: start + len <= n = data.len(); pieces of different tasks are
        // disjoint; `data` is borrowed mutably for the whole call and exec.run
        // returns only after every task has finished.
        let piece = unsafe { core::slice::from_raw_parts_mut(p.0.add(start), len) };
        f(t, piece);
    });
}

/// Checks that `w` holds `rows` whole rows of `cols`.
fn check_shape(w: &Weights<'_>, cols: usize, rows: usize) {
    let bs = w.block_size();
    assert!(cols.is_multiple_of(bs), "{cols} columns are not whole {} blocks", w.type_name());
    if w.is_octets() {
        assert!(rows.is_multiple_of(8), "{rows} rows are not whole {} octets", w.type_name());
    }
    assert!(
        rows.checked_mul(cols).is_some_and(|n| n <= w.n_elements()),
        "{rows} x {cols} is larger than the {} matrix",
        w.type_name()
    );
}

/// Weight rows per tile of the drivers: their blocks stay in L1/L2 while
/// every activation row streams past.
const ROW_TILE: usize = 16;

/// `out[j * rows + r]` = row r of `w` . activation j, for `n` activation rows,
/// in `R` x `C` register tiles; tasks take whole row tiles.
fn drive<const R: usize, const C: usize>(
    exec: &dyn Executor,
    w: Weights<'_>,
    cols: usize,
    acts: Acts<'_>,
    n: usize,
    out: &mut [f32],
) {
    let rows = out.len() / n;
    let tiles = rows.div_ceil(ROW_TILE);
    let threads = exec.n_threads().max(1);
    // A few tasks per thread balance uneven cores.
    let per_task = tiles.div_ceil(threads * 4).max(1);
    let tasks = tiles.div_ceil(per_task);
    let ptr = SharedOut(out.as_mut_ptr());
    let task = |t: usize| {
        let p = ptr;
        let store = |r: usize, j: usize, v: f32| {
            // SAFETY: r < rows and j < n, so j * rows + r < out.len(); only this
            // task writes rows r0..r1 (of every activation); `out` outlives
            // exec.run, which returns only after every task has finished.
            unsafe { *p.0.add(j * rows + r) = v };
        };
        let r0 = t * per_task * ROW_TILE;
        let r1 = (r0 + per_task * ROW_TILE).min(rows);
        for rt in (r0..r1).step_by(ROW_TILE) {
            let rt1 = (rt + ROW_TILE).min(r1);
            let mut j = 0;
            while j < n {
                let cw = C.min(n - j);
                let mut r = rt;
                while r < rt1 {
                    let rw = R.min(rt1 - r);
                    if rw == R && cw == C {
                        let d = tile::<R, C>(w, r, cols, acts, j);
                        for (rr, row) in d.iter().enumerate() {
                            for (cc, &v) in row.iter().enumerate() {
                                store(r + rr, j + cc, v);
                            }
                        }
                    } else if rw == R {
                        // Fewer activations left than a tile: R x 1 tiles.
                        for cc in 0..cw {
                            let d = tile::<R, 1>(w, r, cols, acts, j + cc);
                            for (rr, row) in d.iter().enumerate() {
                                store(r + rr, j + cc, row[0]);
                            }
                        }
                    } else {
                        for rr in 0..rw {
                            for cc in 0..cw {
                                store(r + rr, j + cc, tile::<1, 1>(w, r + rr, cols, acts, j + cc)[0][0]);
                            }
                        }
                    }
                    r += rw;
                }
                j += cw;
            }
        }
    };
    if tasks > 1 && threads > 1 {
        exec.run(tasks, &task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// Row-octet kernels (AVX-512 VNNI) for the Q8_0-activation types: eight
/// weight rows (in the lanes) against 8 activations. For the leftover rows
/// and activations, smaller calls of the same kernel or 1 x 1 tiles.
#[cfg(target_arch = "x86_64")]
fn drive_oct(t: Avx512VnniToken, exec: &dyn Executor, w: Weights<'_>, acts: Acts<'_>, n: usize, out: &mut [f32]) {
    const C: usize = 8;
    let Acts::Q8_0(q, sums, _, nb) = acts else { unreachable!("row octets take Q8_0 activations") };
    let rows = out.len() / n;
    let kernel = |r0: usize, j: usize, cw: usize| -> [[f32; 8]; C] {
        macro_rules! call {
            ($m:expr, $f:ident) => {{
                let ws: [&[_]; 8] = core::array::from_fn(|r| &$m[(r0 + r) * nb..(r0 + r + 1) * nb]);
                let x = |c: usize| &q[(j + c) * nb..(j + c + 1) * nb];
                let s = |c: usize| &sums[(j + c) * nb..(j + c + 1) * nb];
                let mut o = [[0.0f32; 8]; C];
                if cw == C {
                    o = crate::arch::x86_64::avx512::$f::<C>(t, ws, core::array::from_fn(x), core::array::from_fn(s));
                } else {
                    for c in 0..cw {
                        o[c] = crate::arch::x86_64::avx512::$f::<1>(t, ws, [x(c)], [s(c)])[0];
                    }
                }
                o
            }};
        }
        match w {
            Weights::Q8_0(m) => call!(m, oct_q8_0),
            Weights::Q4_0(m) => call!(m, oct_q4_0),
            Weights::Q5_0(m) => call!(m, oct_q5_0),
            Weights::IQ4_NL(m) => call!(m, oct_iq4_nl),
            _ => unreachable!("row octets are for the Q8_0-activation types"),
        }
    };
    drive_octets(exec, rows / 8, n, &kernel, out);
    // Rows past the last whole octet.
    for r in rows / 8 * 8..rows {
        for jj in 0..n {
            out[jj * rows + r] = tile::<1, 1>(w, r, nb * QK8_0, acts, jj)[0][0];
        }
    }
}

/// Whether `drive_oct` has a row-octet kernel for `w`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_oct_kernel(w: &Weights<'_>) -> bool {
    matches!(w, Weights::Q8_0(_) | Weights::Q4_0(_) | Weights::Q5_0(_) | Weights::IQ4_NL(_))
}

/// Repacked Q4_0, Q4_K or Q6_K octets against `n` activation rows (`n` = 1
/// decodes), at every level; the result for a (row, activation) pair does
/// not depend on `n`, the tiling or the thread count.
fn drive_x8(exec: &dyn Executor, w: Weights<'_>, acts: Acts<'_>, n: usize, out: &mut [f32]) {
    const C: usize = 8;
    let rows = out.len() / n;
    let level = caps();
    let kernel = |r0: usize, j: usize, cw: usize| -> [[f32; 8]; C] {
        let mut o = [[0.0f32; 8]; C];
        match (w, acts) {
            (Weights::Q4_0x8(m), Acts::Q8_0(q, sums, d, nb)) => {
                let w = &m[r0 / 8 * nb..(r0 / 8 + 1) * nb];
                let x = |c: usize| &q[(j + c) * nb..(j + c + 1) * nb];
                #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
                let xd = |c: usize| &d[(j + c) * nb..(j + c + 1) * nb];
                #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
                let s = |c: usize| &sums[(j + c) * nb..(j + c + 1) * nb];
                #[cfg_attr(not(target_arch = "x86_64"), allow(unused_macros))]
                macro_rules! call {
                    ($m:ident, $t:expr) => {{
                        if cw == C {
                            o = crate::arch::x86_64::x8::$m::q4_0x8::<C>(
                                $t,
                                w,
                                core::array::from_fn(x),
                                core::array::from_fn(xd),
                                core::array::from_fn(s),
                            );
                        } else {
                            for c in 0..cw {
                                o[c] = crate::arch::x86_64::x8::$m::q4_0x8::<1>($t, w, [x(c)], [xd(c)], [s(c)])[0];
                            }
                        }
                    }};
                }
                match level {
                    #[cfg(target_arch = "x86_64")]
                    Caps::Vnni(t) => call!(vnni, t),
                    #[cfg(target_arch = "x86_64")]
                    Caps::Avx2(t) => call!(avx2, t),
                    _ => {
                        for (c, oc) in o.iter_mut().enumerate().take(cw) {
                            *oc = scalar::dot_q4_0x8(w, x(c));
                        }
                    }
                }
            }
            (Weights::Q4_Kx8(_) | Weights::Q6_Kx8(_), Acts::Q8K(q, nb)) => {
                let x = |c: usize| &q[(j + c) * nb..(j + c + 1) * nb];
                // Four activations at a time keep the sums in registers.
                #[cfg_attr(not(target_arch = "x86_64"), allow(unused_macros))]
                macro_rules! call {
                    ($m:ident, $t:expr, $f:ident, $w:expr) => {{
                        let w = $w;
                        let mut c = 0;
                        while c + 4 <= cw {
                            let r = crate::arch::x86_64::x8::$m::$f::<4>($t, w, core::array::from_fn(|k| x(c + k)));
                            o[c..c + 4].copy_from_slice(&r);
                            c += 4;
                        }
                        for c in c..cw {
                            o[c] = crate::arch::x86_64::x8::$m::$f::<1>($t, w, [x(c)])[0];
                        }
                    }};
                }
                let oct = r0 / 8 * nb..(r0 / 8 + 1) * nb;
                match (level, w) {
                    #[cfg(target_arch = "x86_64")]
                    (Caps::Vnni(t), Weights::Q4_Kx8(m)) => call!(vnni, t, q4_kx8, &m[oct]),
                    #[cfg(target_arch = "x86_64")]
                    (Caps::Avx2(t), Weights::Q4_Kx8(m)) => call!(avx2, t, q4_kx8, &m[oct]),
                    #[cfg(target_arch = "x86_64")]
                    (Caps::Vnni(t), Weights::Q6_Kx8(m)) => call!(vnni, t, q6_kx8, &m[oct]),
                    #[cfg(target_arch = "x86_64")]
                    (Caps::Avx2(t), Weights::Q6_Kx8(m)) => call!(avx2, t, q6_kx8, &m[oct]),
                    (_, Weights::Q4_Kx8(m)) => {
                        for (c, oc) in o.iter_mut().enumerate().take(cw) {
                            *oc = scalar::dot_q4_kx8(&m[oct.clone()], x(c));
                        }
                    }
                    (_, Weights::Q6_Kx8(m)) => {
                        for (c, oc) in o.iter_mut().enumerate().take(cw) {
                            *oc = scalar::dot_q6_kx8(&m[oct.clone()], x(c));
                        }
                    }
                    _ => unreachable!("matched above"),
                }
            }
            _ => unreachable!("octets take the activations of their type"),
        }
        o
    };
    drive_octets(exec, rows / 8, n, &kernel, out);
}

/// Runs `kernel(r0, j, cw)` (rows r0..r0+8 against activations j..j+cw,
/// `out[c][r]`) over `octs` whole row octets and `n` activation rows,
/// storing into `out` (`[n, rows]`). Tasks take runs of octets; two octets
/// stay in L1 while all activations stream past.
fn drive_octets(
    exec: &dyn Executor,
    octs: usize,
    n: usize,
    kernel: &(dyn Fn(usize, usize, usize) -> [[f32; 8]; 8] + Sync),
    out: &mut [f32],
) {
    const C: usize = 8;
    let rows = out.len() / n;
    assert!(octs * 8 <= rows);
    let threads = exec.n_threads().max(1);
    // Whole octets per task; a few tasks per thread.
    let per_task = octs.div_ceil(threads * 4).max(1);
    let tasks = octs.div_ceil(per_task);
    let ptr = SharedOut(out.as_mut_ptr());
    let task = |t: usize| {
        let p = ptr;
        let o0 = t * per_task;
        let o1 = (o0 + per_task).min(octs);
        for pair in (o0..o1).step_by(2) {
            let mut j = 0;
            while j < n {
                let cw = C.min(n - j);
                for o in pair..(pair + 2).min(o1) {
                    let r0 = o * 8;
                    let d = kernel(r0, j, cw);
                    for (c, lanes) in d.iter().enumerate().take(cw) {
                        for (r, &v) in lanes.iter().enumerate() {
                            // SAFETY: r0 + r < octs * 8 <= rows and j + c < n, so the index is inside
                            // `out`; only this task writes these rows; `out` outlives exec.run.
                            unsafe { *p.0.add((j + c) * rows + r0 + r) = v };
                        }
                    }
                }
                j += cw;
            }
        }
    };
    if tasks > 1 && threads > 1 {
        exec.run(tasks, &task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// `out = W x` for W row-major `[rows, cols]` with `rows = out.len()`.
/// `xq` is scratch for the quantized activations. The result for each row
/// does not depend on the thread count, and equals row 0 of [`matmul`].
pub fn matvec(exec: &dyn Executor, w: Weights<'_>, cols: usize, x: &[f32], xq: &mut ActScratch, out: &mut [f32]) {
    check_shape(&w, cols, out.len());
    let acts = quantize_acts(w.act_kind(), &x[..cols], cols, 1, xq);
    matvec_drive(exec, w, cols, acts, out)
}

/// One activation row: one weight row at a time (streaming rows one after
/// the other lets the hardware prefetcher keep up; tiles of several rows
/// interleave the streams and read at a fraction of the speed). Tasks take
/// runs of rows; the kernel and level are chosen once per run.
fn matvec_drive(exec: &dyn Executor, w: Weights<'_>, cols: usize, acts: Acts<'_>, out: &mut [f32]) {
    if w.is_octets() {
        return drive_x8(exec, w, acts, 1, out);
    }
    let rows = out.len();
    let threads = exec.n_threads().max(1);
    let chunk = rows.div_ceil(threads * 4).max(16);
    par_chunks_mut(exec, out, chunk, &|i, o| matvec_rows(w, cols, acts, i * chunk, o));
}

/// `out[k]` = row `r0 + k` of `w` . the activation row, with the 1 x 1 tiles
/// (the same bits as [`tile`]`::<1, 1>`).
fn matvec_rows(w: Weights<'_>, cols: usize, acts: Acts<'_>, r0: usize, out: &mut [f32]) {
    let level = caps();
    macro_rules! go {
        ($m:expr, $x:expr, $len:expr, $scalar:path, $name:ident) => {{
            let len = $len;
            let x = &$x[..len];
            let n = out.len();
            let rows = $m[r0 * len..(r0 + n) * len].chunks_exact(len);
            match level {
                #[cfg(target_arch = "x86_64")]
                Caps::Vnni(t) => {
                    for (o, row) in out.iter_mut().zip(rows) {
                        *o = crate::arch::x86_64::avx512::tiles::$name::<1, 1>(t, [row], [x])[0][0];
                    }
                }
                #[cfg(target_arch = "x86_64")]
                Caps::Avx2(t) => {
                    for (o, row) in out.iter_mut().zip(rows) {
                        *o = crate::arch::x86_64::avx2::tiles::$name::<1, 1>(t, [row], [x])[0][0];
                    }
                }
                // Decoding: the DotProd tiles (one row, one activation: i8mm has nothing to pair).
                #[cfg(target_arch = "aarch64")]
                Caps::I8mm(t) => {
                    for (o, row) in out.iter_mut().zip(rows) {
                        *o = crate::arch::aarch64::dotprod::tiles::$name::<1, 1>(t.dotprod(), [row], [x])[0][0];
                    }
                }
                #[cfg(target_arch = "aarch64")]
                Caps::Dotprod(t) => {
                    for (o, row) in out.iter_mut().zip(rows) {
                        *o = crate::arch::aarch64::dotprod::tiles::$name::<1, 1>(t, [row], [x])[0][0];
                    }
                }
                #[cfg(target_arch = "aarch64")]
                Caps::Neon(t) => {
                    for (o, row) in out.iter_mut().zip(rows) {
                        *o = crate::arch::aarch64::neon::tiles::$name::<1, 1>(t, [row], [x])[0][0];
                    }
                }
                Caps::Scalar => {
                    for (o, row) in out.iter_mut().zip(rows) {
                        *o = $scalar(row, x);
                    }
                }
            }
        }};
    }
    // Decoding Q4_0 with AVX-512: two blocks per vector, the same bits.
    #[cfg(target_arch = "x86_64")]
    if let (Weights::Q4_0(m), Acts::Q8_0(q, _, d, nb), Caps::Vnni(t)) = (w, acts, level) {
        let (x, xd, n) = (&q[..nb], &d[..nb], out.len());
        for (o, row) in out.iter_mut().zip(m[r0 * nb..(r0 + n) * nb].chunks_exact(nb)) {
            *o = crate::arch::x86_64::avx512::q4_0_row(t, row, x, xd);
        }
        return;
    }
    dot_kernels!(w, acts, cols, go)
}

/// `out[j] = W xs[j]` for the `n` activation rows of `xs` (`[n, cols]`), with
/// `out` `[n, rows]`: the batched form of [`matvec`] for prompt processing.
/// Weight rows are read once per tile of 16 rows for all `n` activations; in
/// registers, each weight block is unpacked once for several activations and
/// each activation block loaded once for several rows. Results are
/// bit-identical to `n` calls of [`matvec`].
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    exec: &dyn Executor,
    w: Weights<'_>,
    cols: usize,
    xs: &[f32],
    n: usize,
    xq: &mut ActScratch,
    out: &mut [f32],
) {
    if n == 0 {
        return;
    }
    assert!(out.len().is_multiple_of(n), "output length {} is not a multiple of {n} rows", out.len());
    let rows = out.len() / n;
    check_shape(&w, cols, rows);
    assert!(xs.len() >= n * cols, "{n} activation rows of {cols} need {} values, got {}", n * cols, xs.len());
    #[cfg(target_arch = "x86_64")]
    if let (Caps::Vnni(t), Weights::F32(m), true) = (caps(), w, n > 1) {
        xq.check(cols, n);
        if drive_f32(t, exec, m, cols, &xs[..n * cols], n, xq, out) {
            return;
        }
    }
    let acts = quantize_acts(w.act_kind(), xs, cols, n, xq);
    if n == 1 {
        return matvec_drive(exec, w, cols, acts, out);
    }
    if w.is_octets() {
        return drive_x8(exec, w, acts, n, out);
    }
    // Tile shapes measured best on an AMD Zen 4 (examples/bandwidth):
    // K-quants reduce each super-block to an integer per pair, so one row
    // against 8 activations; 32-blocks and floats share activation loads over
    // rows as well.
    match (caps(), w.act_kind()) {
        (Caps::Scalar, _) => drive::<1, 1>(exec, w, cols, acts, n, out),
        #[cfg(target_arch = "x86_64")]
        (_, ActKind::Q8_K) => drive::<1, 8>(exec, w, cols, acts, n, out),
        #[cfg(target_arch = "x86_64")]
        (Caps::Vnni(t), ActKind::Q8_0) if has_oct_kernel(&w) => drive_oct(t, exec, w, acts, n, out),
        #[cfg(target_arch = "x86_64")]
        (Caps::Vnni(_), _) => drive::<2, 4>(exec, w, cols, acts, n, out),
        #[cfg(target_arch = "x86_64")]
        (Caps::Avx2(_), ActKind::Q8_0 | ActKind::Q8_1) => drive::<1, 8>(exec, w, cols, acts, n, out),
        #[cfg(target_arch = "x86_64")]
        (Caps::Avx2(_), ActKind::F32) => drive::<4, 2>(exec, w, cols, acts, n, out),
        // NEON's 32 registers: 2 x 2 tiles for the 32-blocks and floats (16
        // accumulator vectors); one row against 4 activations for the K-quants,
        // whose i8mm tiles take row pairs.
        #[cfg(target_arch = "aarch64")]
        (Caps::I8mm(_), ActKind::Q8_K) => drive::<2, 4>(exec, w, cols, acts, n, out),
        #[cfg(target_arch = "aarch64")]
        (_, ActKind::Q8_K) => drive::<1, 4>(exec, w, cols, acts, n, out),
        #[cfg(target_arch = "aarch64")]
        (_, _) => drive::<2, 2>(exec, w, cols, acts, n, out),
    }
}

/// RMSNorm: out = (x * (1 / sqrt(mean(x^2) + eps))) * w, with the mean as
/// ggml takes it (squares summed in f64, see [`scalar::sum_squares`]); the
/// scaling is vectorised, the same bits at every level.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let mean = (scalar::sum_squares(x) / x.len().max(1) as f64) as f32;
    let s = 1.0 / libm_sqrt(mean + eps);
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::scale_mul(t, out, x, s, w);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::scale_mul(t, out, x, s, w);
    }
    scalar::scale_mul(out, x, s, w)
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

/// In-place softmax. The sum runs in eight lanes combined as the SIMD
/// twin does, so both give the same bits.
pub fn softmax(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::softmax(t, x);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::softmax(t, x);
    }
    scalar::softmax(x)
}

/// `h[i] = silu(h[i]) * u[i]` (SwiGLU), vectorised; the same bits as the
/// scalar [`silu`] per element.
pub fn swiglu(h: &mut [f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::swiglu(t, h, u);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::swiglu(t, h, u);
    }
    scalar::swiglu(h, u)
}

/// `h[i] = gelu_tanh(h[i]) * u[i]` (GeGLU), or `h[i] = gelu_tanh(h[i])`
/// without `u`; vectorised, the same bits as [`gelu_tanh`] per element.
pub fn geglu(h: &mut [f32], u: Option<&[f32]>) {
    if let Some(u) = u {
        assert!(u.len() >= h.len(), "geglu: {} gates for {} values", u.len(), h.len());
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::cpu::avx2() {
        return crate::arch::x86_64::avx2::geglu(t, h, u);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(t) = crate::cpu::neon() {
        return crate::arch::aarch64::neon::geglu(t, h, u);
    }
    scalar::geglu(h, u)
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

/// [`rope`] on every head of `v` (`v.len() / head_dim` heads) at the same
/// position: the sines and cosines are computed once for all heads.
pub fn rope_heads(v: &mut [f32], head_dim: usize, pos: usize, n_rot: usize, inv_freq: &[f32], neox: bool) {
    let half = (n_rot / 2).min(inv_freq.len());
    // Angles in chunks of 64 pairs, on the stack.
    let mut start = 0;
    while start < half {
        let end = (start + 64).min(half);
        let (mut cos, mut sin) = ([0.0f32; 64], [0.0f32; 64]);
        for (k, i) in (start..end).enumerate() {
            (sin[k], cos[k]) = sin_cos(pos as f32 * inv_freq[i]);
        }
        let (cos, sin) = (&cos[..end - start], &sin[..end - start]);
        for h in v.chunks_exact_mut(head_dim) {
            #[cfg(target_arch = "x86_64")]
            if let Some(t) = crate::cpu::avx2() {
                crate::arch::x86_64::avx2::rotate_pairs(t, h, start, cos, sin, neox, n_rot / 2);
                continue;
            }
            #[cfg(target_arch = "aarch64")]
            if let Some(t) = crate::cpu::neon() {
                crate::arch::aarch64::neon::rotate_pairs(t, h, start, cos, sin, neox, n_rot / 2);
                continue;
            }
            scalar::rotate_pairs(h, start, cos, sin, neox, n_rot / 2);
        }
        start = end;
    }
}

/// Head counts and sizes for [`attention_batch`].
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Positions the KV cache holds.
    pub n_ctx: usize,
}

/// A KV cache's keys or values: `[n_ctx, kv_dim]` in f32, or in f16 (half
/// the memory; llama.cpp's default).
#[derive(Clone, Copy, Debug)]
pub enum KvSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
}

impl KvSlice<'_> {
    fn len(&self) -> usize {
        match self {
            KvSlice::F32(s) => s.len(),
            KvSlice::F16(s) => s.len(),
        }
    }
}

/// Rounds to the nearest f16 and back.
#[inline]
pub fn round_f16(x: f32) -> f32 {
    crate::half::f16_to_f32(crate::half::f32_to_f16(x))
}

/// Causal attention for `n` consecutive query positions `pos0..pos0 + n`
/// (a prompt batch, or one decoded token) over the KV cache of one layer,
/// which must already hold positions up to `pos0 + n - 1`: query `b` sees
/// positions `start(pos0 + b)..=pos0 + b`.
///
/// - `q`, `out`: `[n, n_heads * head_dim]`
/// - `k_cache`, `v_cache`: `[n_ctx, n_kv_heads * head_dim]`
/// - `att`: scratch `[n_heads, n_ctx]`
///
/// One parallel job over the heads for the whole batch; query head h reads
/// KV head `h / (n_heads / n_kv_heads)`. Each (query, head) pair goes
/// through the same operations whatever `n`.
///
/// With an f16 cache it computes as ggml's CPU path does: the caller rounds
/// the queries to f16, scores and softmax are f32, and the probabilities
/// are rounded to f16 before they weight the values.
#[allow(clippy::too_many_arguments)]
pub fn attention_batch(
    exec: &dyn Executor,
    q: &[f32],
    k_cache: KvSlice<'_>,
    v_cache: KvSlice<'_>,
    att: &mut [f32],
    out: &mut [f32],
    n: usize,
    shape: AttnShape,
    pos0: usize,
    start: &(dyn Fn(usize) -> usize + Sync),
    scale: f32,
) {
    let AttnShape { n_heads, n_kv_heads, head_dim, n_ctx } = shape;
    let kv_dim = n_kv_heads * head_dim;
    let q_dim = n_heads * head_dim;
    let group = n_heads / n_kv_heads;
    let att_ptr = SharedOut(att.as_mut_ptr());
    let out_ptr = SharedOut(out.as_mut_ptr());
    assert!(n >= 1 && pos0 + n <= n_ctx, "{n} queries from position {pos0} do not fit {n_ctx} positions");
    assert!(att.len() >= n_heads * n_ctx && out.len() >= n * q_dim && q.len() >= n * q_dim);
    assert!(k_cache.len() >= (pos0 + n) * kv_dim && v_cache.len() >= (pos0 + n) * kv_dim);
    for b in 0..n {
        assert!(start(pos0 + b) <= pos0 + b, "attention window starts after its query");
    }
    let task = |h: usize| {
        let (ap, op) = (att_ptr, out_ptr);
        // SAFETY: head h owns att[h*n_ctx..(h+1)*n_ctx] and, for every query b,
        // out[b*q_dim + h*head_dim..][..head_dim]; these ranges are in bounds
        // (asserted above) and disjoint across heads; the slices outlive
        // exec.run, which returns only after every task finished.
        let a = unsafe { core::slice::from_raw_parts_mut(ap.0.add(h * n_ctx), n_ctx) };
        let kvh = h / group;
        for b in 0..n {
            let pos = pos0 + b;
            let st = start(pos);
            // SAFETY: as above.
            let o = unsafe { core::slice::from_raw_parts_mut(op.0.add(b * q_dim + h * head_dim), head_dim) };
            let qh = &q[b * q_dim + h * head_dim..][..head_dim];
            let a = &mut a[st..=pos];
            for (t, s) in (st..=pos).zip(a.iter_mut()) {
                let at = t * kv_dim + kvh * head_dim;
                *s = match k_cache {
                    KvSlice::F32(kc) => dot_f32(qh, &kc[at..][..head_dim]),
                    KvSlice::F16(kc) => {
                        qh.iter().zip(&kc[at..][..head_dim]).map(|(&x, &h)| x * crate::half::f16_to_f32(h)).sum()
                    }
                } * scale;
            }
            softmax(a);
            o.fill(0.0);
            for (t, &w) in (st..=pos).zip(a.iter()) {
                let at = t * kv_dim + kvh * head_dim;
                match v_cache {
                    KvSlice::F32(vc) => axpy(o, w, &vc[at..][..head_dim]),
                    KvSlice::F16(vc) => {
                        let w = round_f16(w);
                        o.iter_mut()
                            .zip(&vc[at..][..head_dim])
                            .for_each(|(o, &h)| *o += w * crate::half::f16_to_f32(h));
                    }
                }
            }
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

/// F32 weights with AVX-512: the zmm register tiles of `avx512_f32` (the
/// same bits as matvec); tasks take runs of whole row tiles. Its scratch
/// (padded activations, per-task sums) comes from `xq`; returns false,
/// doing nothing, if that memory cannot be had.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn drive_f32(
    tok: Avx512VnniToken,
    exec: &dyn Executor,
    w: &[f32],
    cols: usize,
    xs: &[f32],
    n: usize,
    xq: &mut ActScratch,
    out: &mut [f32],
) -> bool {
    use crate::arch::x86_64::avx512_f32::{act_stride, rows as f32_rows, scratch_len, R};
    let rows = out.len() / n;
    let tiles = rows.div_ceil(R);
    let threads = exec.n_threads().max(1);
    // A few tasks per thread balance uneven cores.
    let per_task = tiles.div_ceil(threads * 4).max(1);
    let tasks = tiles.div_ceil(per_task);
    // The activations at the stride the tiles read best.
    let xld = act_stride(cols);
    let pad = if xld == cols { 0 } else { n * xld };
    // Each task's sums between column blocks (worker stacks are small).
    let len = scratch_len(cols, n);
    let Some(buf) = xq.f32_buf(pad + tasks * len) else { return false };
    let (padded, scratch) = buf.split_at_mut(pad);
    let xs = if pad == 0 {
        xs
    } else {
        for (dst, src) in padded.chunks_exact_mut(xld).zip(xs.chunks_exact(cols)) {
            dst[..cols].copy_from_slice(src);
        }
        &padded[..]
    };
    let (po, ps) = (SharedOut(out.as_mut_ptr()), SharedSlice(scratch.as_mut_ptr()));
    let task = |t: usize| {
        let (po, ps) = (po, ps);
        // SAFETY: t < tasks, so the piece is inside `scratch`; each task takes its own piece;
        // `scratch` outlives exec.run, which returns only after every task has finished.
        let buf = unsafe { core::slice::from_raw_parts_mut(ps.0.add(t * len), len) };
        let r0 = t * per_task * R;
        let r1 = (r0 + per_task * R).min(rows);
        // SAFETY: the token `tok` proves AVX-512 F/VL, AVX2 and FMA present and enabled. out[j * rows + r] for j < n, r < r1 <= rows is inside `out`; only this task
        // writes rows r0..r1; `out` outlives exec.run, which returns after every task.
        unsafe { f32_rows(tok, w, cols, xs, xld, n, r0, r1, po.0, rows, buf) };
    };
    if tasks > 1 && threads > 1 {
        exec.run(tasks, &task);
    } else {
        (0..tasks).for_each(task);
    }
    true
}
