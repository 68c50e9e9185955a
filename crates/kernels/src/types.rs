//! The weight storage types, in one table: for each, its GGUF id and name,
//! block size and bytes (from `size_of` of its `#[repr(C)]` block), the
//! activation format its dot kernels take, its reference dequantizer and
//! quantizer, and whether the engine repacks it into row octets. Everything
//! else (the engine's tensor types, GGUF type sizes, `lbm quantize`, type
//! names in messages) reads this table; only the kernel dispatch in `ops`
//! (which needs the typed blocks) matches on the type.
//!
//! Adding a type:
//! 1. `quant`: its `#[repr(C)]` block (with size checks), reference
//!    dequantizer and, where ggml has one, quantizer; `cast`: its `Pod` impl.
//! 2. Its dot kernels: the `scalar` twin and the tile in `avx2::tile_kernels`
//!    (which builds the AVX-512 tiles too), for the activation kind it takes.
//! 3. Here: a [`WType`] variant and its row in [`TYPES`].
//! 4. `ops`: its [`crate::ops::Weights`] variant, with its arms in
//!    `Weights::raw` and `Weights::from_bytes`, and its line in
//!    `ops::dot_kernels!`.
//!
//! The engine (tensor types, GGUF sizes and type mapping, `lbm quantize`'s
//! encoder) needs no change: it reads this table.
//!
//! As ggml's `type_traits` table and candle's `GgmlType` trait do, one
//! entry per type; the byte-level functions here take and give the blocks'
//! bytes, so callers need not know the block type.

use alloc::vec::Vec;

use crate::cast::{bytes_of, read_pod, view, Pod};
use crate::half::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
use crate::ops::ActKind;
use crate::quant::{self, *};

/// A storage type the kernels run (GGUF's names and layouts).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    IQ4_NL,
    Q2_K,
    Q3_K,
    IQ4_XS,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// A type repacked at load into octets of eight rows (see `quant`): the
/// in-place repacker (bytes, rows, blocks per row) and one row's
/// dequantizer (an octet's `nb` blocks, row 0..8, out).
///
/// `repack` declines (returns false, changing nothing) where the kernels
/// have no SIMD path for the octets, so the engine keeps the GGUF layout:
/// on aarch64 the NEON row tiles decode the plain rows.
#[derive(Debug, Clone, Copy)]
pub struct Octets {
    /// Name of the repacked layout ("Q4_0x8").
    pub name: &'static str,
    pub repack: fn(&mut [u8], usize, usize) -> bool,
    pub dequantize_row: fn(&[u8], usize, &mut [f32]),
}

/// A reference quantizer: floats (whole blocks) to the blocks' bytes.
pub type QuantizeFn = fn(&[f32], &mut [u8]);

/// What there is to know about one storage type.
#[derive(Debug, Clone, Copy)]
pub struct TypeInfo {
    pub ty: WType,
    /// The GGUF (ggml) name.
    pub name: &'static str,
    /// The GGUF type id.
    pub gguf_id: u32,
    /// Elements per block (1 for plain floats).
    pub block_size: usize,
    /// Bytes per block: `size_of` of the block type.
    pub block_bytes: usize,
    /// The activations the dot kernels take.
    pub act: ActKind,
    /// Whole blocks (their bytes, any alignment) to floats.
    pub dequantize: fn(&[u8], &mut [f32]),
    /// Floats (whole blocks) to blocks' bytes with ggml's reference
    /// quantizer, where there is one.
    pub quantize: Option<QuantizeFn>,
    /// Repacked into row octets at load, when the rows allow.
    pub octets: Option<Octets>,
}

/// Runs `f` on `b` viewed as `T`s, through an aligned copy if `b` is not
/// aligned for `T`.
fn with_blocks<T: Pod>(b: &[u8], f: impl FnOnce(&[T])) {
    match view::<T>(b) {
        Some(v) => f(v),
        None => {
            let v: Vec<T> = b.chunks_exact(core::mem::size_of::<T>()).map(read_pod).collect();
            f(&v)
        }
    }
}

/// Runs the typed quantizer `q` into the bytes `out` (whole blocks).
fn quantize_into<T: Pod + Default>(x: &[f32], out: &mut [u8], q: fn(&[f32], &mut [T])) {
    let mut v = alloc::vec![T::default(); out.len() / core::mem::size_of::<T>()];
    q(x, &mut v);
    out.copy_from_slice(bytes_of(&v));
}

/// Whether matrices are repacked into octets at load on this architecture:
/// the octet kernels are x86 (AVX2, AVX-512 VNNI) kernels; elsewhere the row
/// tiles read the GGUF layout at least as fast as the scalar octet twins.
pub const REPACK_OCTETS: bool = cfg!(target_arch = "x86_64");

/// `repack` where [`REPACK_OCTETS`], else a refusal.
fn repack_if(bytes: &mut [u8], rows: usize, nb: usize, repack: fn(&mut [u8], usize, usize) -> bool) -> bool {
    REPACK_OCTETS && repack(bytes, rows, nb)
}

/// Row `r` of an octet, through an aligned copy if needed.
fn octet_row<T: Pod>(b: &[u8], r: usize, out: &mut [f32], f: fn(&[T], usize, &mut [f32])) {
    with_blocks::<T>(b, |v| f(v, r, out))
}

macro_rules! quant_entry {
    ($ty:ident, $blk:ty, $bs:expr, $id:expr, $act:ident, $deq:path, $q:expr, $oct:expr) => {
        TypeInfo {
            ty: WType::$ty,
            name: stringify!($ty),
            gguf_id: $id,
            block_size: $bs,
            block_bytes: core::mem::size_of::<$blk>(),
            act: ActKind::$act,
            dequantize: |b, o| with_blocks::<$blk>(b, |v| $deq(v, o)),
            quantize: $q,
            octets: $oct,
        }
    };
}

/// The table, in [`WType`] order (checked at compile time).
pub static TYPES: [TypeInfo; 15] = [
    TypeInfo {
        ty: WType::F32,
        name: "F32",
        gguf_id: 0,
        block_size: 1,
        block_bytes: core::mem::size_of::<f32>(),
        act: ActKind::F32,
        dequantize: |b, o| with_blocks::<f32>(b, |v| o[..v.len()].copy_from_slice(v)),
        quantize: Some(|x, o| o.copy_from_slice(bytes_of(x))),
        octets: None,
    },
    TypeInfo {
        ty: WType::F16,
        name: "F16",
        gguf_id: 1,
        block_size: 1,
        block_bytes: core::mem::size_of::<u16>(),
        act: ActKind::F32,
        dequantize: |b, o| with_blocks::<u16>(b, |v| o.iter_mut().zip(v).for_each(|(y, &h)| *y = f16_to_f32(h))),
        quantize: Some(|x, o| {
            o.chunks_exact_mut(2).zip(x).for_each(|(b, &v)| b.copy_from_slice(&f32_to_f16(v).to_le_bytes()))
        }),
        octets: None,
    },
    TypeInfo {
        ty: WType::BF16,
        name: "BF16",
        gguf_id: 30,
        block_size: 1,
        block_bytes: core::mem::size_of::<u16>(),
        act: ActKind::F32,
        dequantize: |b, o| with_blocks::<u16>(b, |v| o.iter_mut().zip(v).for_each(|(y, &h)| *y = bf16_to_f32(h))),
        quantize: Some(|x, o| {
            o.chunks_exact_mut(2).zip(x).for_each(|(b, &v)| b.copy_from_slice(&f32_to_bf16(v).to_le_bytes()))
        }),
        octets: None,
    },
    quant_entry!(
        Q8_0,
        BlockQ8_0,
        QK8_0,
        8,
        Q8_0,
        quant::dequantize_row_q8_0,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q8_0)),
        None
    ),
    quant_entry!(
        Q4_0,
        BlockQ4_0,
        QK4_0,
        2,
        Q8_0,
        quant::dequantize_row_q4_0,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q4_0)),
        Some(Octets {
            name: "Q4_0x8",
            repack: |b, r, nb| repack_if(b, r, nb, quant::repack_q4_0x8_in_place),
            dequantize_row: |b, r, o| octet_row(b, r, o, quant::dequantize_row_q4_0x8),
        })
    ),
    quant_entry!(
        Q4_1,
        BlockQ4_1,
        QK4_1,
        3,
        Q8_1,
        quant::dequantize_row_q4_1,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q4_1)),
        None
    ),
    quant_entry!(
        Q5_0,
        BlockQ5_0,
        QK5_0,
        6,
        Q8_0,
        quant::dequantize_row_q5_0,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q5_0)),
        None
    ),
    quant_entry!(
        Q5_1,
        BlockQ5_1,
        QK5_1,
        7,
        Q8_1,
        quant::dequantize_row_q5_1,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q5_1)),
        None
    ),
    quant_entry!(
        IQ4_NL,
        BlockIQ4NL,
        QK4_NL,
        20,
        Q8_0,
        quant::dequantize_row_iq4_nl,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_iq4_nl)),
        None
    ),
    quant_entry!(
        Q2_K,
        BlockQ2K,
        QK_K,
        10,
        Q8_K,
        quant::dequantize_row_q2_k,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q2_k)),
        None
    ),
    quant_entry!(
        Q3_K,
        BlockQ3K,
        QK_K,
        11,
        Q8_K,
        quant::dequantize_row_q3_k,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q3_k)),
        None
    ),
    quant_entry!(
        IQ4_XS,
        BlockIQ4XS,
        QK_K,
        23,
        Q8_K,
        quant::dequantize_row_iq4_xs,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_iq4_xs)),
        None
    ),
    quant_entry!(
        Q4_K,
        BlockQ4K,
        QK_K,
        12,
        Q8_K,
        quant::dequantize_row_q4_k,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q4_k)),
        Some(Octets {
            name: "Q4_Kx8",
            repack: |b, r, nb| repack_if(b, r, nb, quant::repack_q4_kx8_in_place),
            dequantize_row: |b, r, o| octet_row(b, r, o, quant::dequantize_row_q4_kx8),
        })
    ),
    quant_entry!(
        Q5_K,
        BlockQ5K,
        QK_K,
        13,
        Q8_K,
        quant::dequantize_row_q5_k,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q5_k)),
        None
    ),
    quant_entry!(
        Q6_K,
        BlockQ6K,
        QK_K,
        14,
        Q8_K,
        quant::dequantize_row_q6_k,
        Some(|x, o| quantize_into(x, o, quant::quantize_row_q6_k)),
        Some(Octets {
            name: "Q6_Kx8",
            repack: |b, r, nb| repack_if(b, r, nb, quant::repack_q6_kx8_in_place),
            dequantize_row: |b, r, o| octet_row(b, r, o, quant::dequantize_row_q6_kx8),
        })
    ),
];

const _: () = {
    let mut i = 0;
    while i < TYPES.len() {
        assert!(TYPES[i].ty as usize == i, "TYPES is not in WType order");
        let mut j = 0;
        while j < i {
            assert!(TYPES[j].gguf_id != TYPES[i].gguf_id, "two types with one GGUF id");
            j += 1;
        }
        i += 1;
    }
};

impl WType {
    /// Every type, in table order.
    pub fn all() -> impl Iterator<Item = WType> {
        TYPES.iter().map(|t| t.ty)
    }

    /// The type's row of the table.
    pub fn info(self) -> &'static TypeInfo {
        &TYPES[self as usize]
    }

    /// The type with GGUF id `id`, if the kernels run it.
    pub fn from_gguf_id(id: u32) -> Option<WType> {
        TYPES.iter().find(|t| t.gguf_id == id).map(|t| t.ty)
    }

    /// The type named `name` (GGUF's names, any case).
    pub fn parse(name: &str) -> Option<WType> {
        TYPES.iter().find(|t| t.name.eq_ignore_ascii_case(name)).map(|t| t.ty)
    }

    /// The GGUF name.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Elements per block (1 for plain floats).
    pub fn block_size(self) -> usize {
        self.info().block_size
    }

    /// Bytes for `n` elements; `None` if `n` is not whole blocks or overflows.
    pub fn bytes(self, n: usize) -> Option<usize> {
        let t = self.info();
        if !n.is_multiple_of(t.block_size) {
            return None;
        }
        (n / t.block_size).checked_mul(t.block_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sizes_ids_and_names_are_ggmls() {
        // ggml's block sizes and type sizes (ggml.c type_traits), by id.
        let ggml: [(u32, &str, usize, usize); 15] = [
            (0, "F32", 1, 4),
            (1, "F16", 1, 2),
            (30, "BF16", 1, 2),
            (8, "Q8_0", 32, 34),
            (2, "Q4_0", 32, 18),
            (3, "Q4_1", 32, 20),
            (6, "Q5_0", 32, 22),
            (7, "Q5_1", 32, 24),
            (20, "IQ4_NL", 32, 18),
            (10, "Q2_K", 256, 84),
            (11, "Q3_K", 256, 110),
            (23, "IQ4_XS", 256, 136),
            (12, "Q4_K", 256, 144),
            (13, "Q5_K", 256, 176),
            (14, "Q6_K", 256, 210),
        ];
        assert_eq!(WType::all().count(), ggml.len());
        for (id, name, bs, bytes) in ggml {
            let t = WType::from_gguf_id(id).unwrap_or_else(|| panic!("id {id}"));
            assert_eq!((t.name(), t.block_size(), t.info().block_bytes), (name, bs, bytes));
            assert_eq!(WType::parse(&name.to_ascii_lowercase()), Some(t));
            assert_eq!(t.bytes(3 * bs), Some(3 * bytes));
            assert_eq!(t.bytes(bs + 1).is_some(), bs == 1);
        }
        assert_eq!(WType::from_gguf_id(9), None, "Q8_1 is for activations only");
    }

    #[test]
    fn octets_are_repacked_at_load_only_where_they_have_simd_kernels() {
        let x: Vec<f32> = (0..8 * 256).map(|i| ((i as f32) * 0.61).sin()).collect();
        for t in [WType::Q4_0, WType::Q4_K, WType::Q6_K] {
            let info = t.info();
            let mut buf = alloc::vec![0u8; t.bytes(x.len()).unwrap()];
            (info.quantize.unwrap())(&x, &mut buf);
            let before = buf.clone();
            let oct = info.octets.expect("an octet layout");
            assert_eq!((oct.repack)(&mut buf, 8, 256 / info.block_size), REPACK_OCTETS, "{}", info.name);
            assert_eq!(buf == before, !REPACK_OCTETS, "{}", info.name);
        }
        assert_eq!(REPACK_OCTETS, cfg!(target_arch = "x86_64"));
    }

    #[test]
    fn byte_functions_equal_the_typed_ones_at_any_alignment() {
        let x: Vec<f32> = (0..512).map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 7) as f32)).collect();
        for t in WType::all() {
            let info = t.info();
            let n = t.bytes(x.len()).unwrap();
            // One byte in, so that the blocks are not aligned.
            let mut buf = alloc::vec![0u8; n + 1];
            (info.quantize.unwrap())(&x, &mut buf[1..]);
            let mut a = alloc::vec![0.0f32; x.len()];
            (info.dequantize)(&buf[1..], &mut a);
            let aligned = buf[1..].to_vec();
            let mut b = alloc::vec![0.0f32; x.len()];
            (info.dequantize)(&aligned, &mut b);
            assert_eq!(a, b, "{}", info.name);
            // The values (|x| < 7) survive within a step of the type: 4 bits
            // and up, Q4_0's 7 / 8 (a full step where it clamps at 15); Q3_K
            // 8 levels over 14, Q2_K 4 levels over 14 (half a step, plus the
            // rounding of 4-bit scales and mins).
            let bound = match t {
                WType::Q2_K => 0.5 * 14.0 / 3.0 * 1.1,
                WType::Q3_K => 14.0 / 7.0,
                _ => 0.875,
            };
            let err = x.iter().zip(&a).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
            assert!(err <= bound, "{}: {err}", info.name);
        }
    }
}
