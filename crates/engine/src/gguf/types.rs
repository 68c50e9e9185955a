//! GGUF data types: ggml tensor types, metadata values and tensor infos.

use alloc::string::String;
use alloc::vec::Vec;

/// A ggml tensor type, with its GGUF type id as discriminant.
///
/// Ids 4, 5 (removed Q4_2/Q4_3), 31..=33 and 36..=38 (removed repacked
/// layouts) are not valid in GGUF files and are rejected.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    /// 32-bit float.
    F32 = 0,
    /// IEEE half float.
    F16 = 1,
    /// 4-bit, blocks of 32 with an f16 scale.
    Q4_0 = 2,
    /// 4-bit, blocks of 32 with f16 scale and min.
    Q4_1 = 3,
    /// 5-bit, blocks of 32 with an f16 scale.
    Q5_0 = 6,
    /// 5-bit, blocks of 32 with f16 scale and min.
    Q5_1 = 7,
    /// 8-bit, blocks of 32 with an f16 scale.
    Q8_0 = 8,
    /// 8-bit, blocks of 32 with f16 scale and sum.
    Q8_1 = 9,
    /// 2-bit K-quant (super-blocks of 256).
    Q2_K = 10,
    /// 3-bit K-quant.
    Q3_K = 11,
    /// 4-bit K-quant.
    Q4_K = 12,
    /// 5-bit K-quant.
    Q5_K = 13,
    /// 6-bit K-quant.
    Q6_K = 14,
    /// 8-bit K-quant (f32 scale and block sums).
    Q8_K = 15,
    /// 2.06 bpw importance quant.
    IQ2_XXS = 16,
    /// 2.31 bpw importance quant.
    IQ2_XS = 17,
    /// 3.06 bpw importance quant.
    IQ3_XXS = 18,
    /// 1.56 bpw importance quant.
    IQ1_S = 19,
    /// 4-bit non-linear, blocks of 32.
    IQ4_NL = 20,
    /// 3.44 bpw importance quant.
    IQ3_S = 21,
    /// 2.56 bpw importance quant.
    IQ2_S = 22,
    /// 4.25 bpw non-linear, super-blocks of 256.
    IQ4_XS = 23,
    /// 8-bit integer.
    I8 = 24,
    /// 16-bit integer.
    I16 = 25,
    /// 32-bit integer.
    I32 = 26,
    /// 64-bit integer.
    I64 = 27,
    /// 64-bit float.
    F64 = 28,
    /// 1.75 bpw importance quant.
    IQ1_M = 29,
    /// bfloat16.
    BF16 = 30,
    /// 1.69 bpw ternary.
    TQ1_0 = 34,
    /// 2.06 bpw ternary.
    TQ2_0 = 35,
    /// 4-bit microscaling float, blocks of 32.
    MXFP4 = 39,
}

impl GgmlType {
    /// Every type, in id order.
    pub const ALL: [GgmlType; 32] = {
        use GgmlType::*;
        [
            F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ2_XXS, IQ2_XS, IQ3_XXS,
            IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, I8, I16, I32, I64, F64, IQ1_M, BF16, TQ1_0, TQ2_0, MXFP4,
        ]
    };

    /// The type with GGUF id `v`, or `None` for unknown or removed ids.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.id() == v)
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Elements per block: 1 for plain numbers, 32 for the legacy quants,
    /// 256 for K-quants and most IQ types.
    pub fn block_size(self) -> u64 {
        self.layout().0
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.layout().1
    }

    /// The kernels' storage type for this GGUF type, if they run it.
    pub fn weight_type(self) -> Option<kernels::types::WType> {
        kernels::types::WType::from_gguf_id(self.id())
    }

    /// (elements per block, bytes per block): from the kernels' table of
    /// types (the `size_of` of their blocks) for the types we run, else
    /// from ggml's block structs.
    fn layout(self) -> (u64, u64) {
        use GgmlType::*;
        if let Some(t) = self.weight_type() {
            return (t.info().block_size as u64, t.info().block_bytes as u64);
        }
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            F64 | I64 => (1, 8),
            Q4_0 | IQ4_NL => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            MXFP4 => (32, 17),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            IQ2_XXS => (256, 66),
            IQ2_XS => (256, 74),
            IQ3_XXS => (256, 98),
            IQ1_S => (256, 50),
            IQ3_S => (256, 110),
            IQ2_S => (256, 82),
            IQ4_XS => (256, 136),
            IQ1_M => (256, 56),
            TQ1_0 => (256, 54),
            TQ2_0 => (256, 66),
        }
    }

    /// The ggml name: "F32", "Q4_K", ...
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
        }
    }

    /// Bytes taken by `n` consecutive elements; `None` if `n` is not a
    /// multiple of [`block_size`](Self::block_size) or the size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let (bs, ts) = self.layout();
        let blocks = n / bs;
        if blocks * bs != n {
            return None;
        }
        blocks.checked_mul(ts)
    }
}

/// GGUF metadata value type ids.
pub(crate) mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// A metadata value. Arrays hold elements of one type (they may nest).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// u8 (type 0).
    U8(u8),
    /// i8 (type 1).
    I8(i8),
    /// u16 (type 2).
    U16(u16),
    /// i16 (type 3).
    I16(i16),
    /// u32 (type 4).
    U32(u32),
    /// i32 (type 5).
    I32(i32),
    /// f32 (type 6).
    F32(f32),
    /// bool, one byte 0 or 1 (type 7).
    Bool(bool),
    /// UTF-8 string (type 8).
    String(String),
    /// Array of one element type (type 9); may nest.
    Array(Vec<Value>),
    /// u64 (type 10).
    U64(u64),
    /// i64 (type 11).
    I64(i64),
    /// f64 (type 12).
    F64(f64),
}

impl Value {
    /// The GGUF type name: "u8", "i32", "f32", "bool", "string", "array", ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }

    /// The GGUF value type id (0..=12).
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => vt::U8,
            Value::I8(_) => vt::I8,
            Value::U16(_) => vt::U16,
            Value::I16(_) => vt::I16,
            Value::U32(_) => vt::U32,
            Value::I32(_) => vt::I32,
            Value::F32(_) => vt::F32,
            Value::Bool(_) => vt::BOOL,
            Value::String(_) => vt::STRING,
            Value::Array(_) => vt::ARRAY,
            Value::U64(_) => vt::U64,
            Value::I64(_) => vt::I64,
            Value::F64(_) => vt::F64,
        }
    }

    /// Any integer that is non-negative, as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Whether this is an integer of any width or signedness.
    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            Value::U8(_)
                | Value::I8(_)
                | Value::U16(_)
                | Value::I16(_)
                | Value::U32(_)
                | Value::I32(_)
                | Value::U64(_)
                | Value::I64(_)
        )
    }

    /// An `F32`, or an `F64` rounded to `f32`.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// A `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An `Array`'s elements.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where a tensor lives in a GGUF file and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor name, e.g. "blk.0.attn_q.weight".
    pub name: String,
    /// Dimensions in GGUF `ne` order: `dims[0]` is the contiguous (row) length.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements (the product of `dims`; checked when parsed).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }
}

/// The product of `dims` and the byte size of a tensor of type `ty`, or the
/// error that names `name`: `Overflow` or `Invalid` (row not a whole number
/// of blocks).
pub(crate) fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> crate::Result<(u64, u64)> {
    use crate::Error;
    use alloc::format;
    let overflow = || Error::overflow(format!("tensor '{name}' with dims {dims:?}"));
    let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?;
    let row = dims.first().copied().unwrap_or(1);
    if row % ty.block_size() != 0 {
        return Err(Error::invalid(
            format!("tensor '{name}'"),
            format!("row length {row} is not a multiple of the {} block size {}", ty.name(), ty.block_size()),
        ));
    }
    let size = ty.row_bytes(n).ok_or_else(overflow)?;
    Ok((n, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_layouts() {
        use GgmlType::*;
        let table = [
            (F32, 1, 4),
            (F16, 1, 2),
            (BF16, 1, 2),
            (Q4_0, 32, 18),
            (Q4_1, 32, 20),
            (Q5_0, 32, 22),
            (Q5_1, 32, 24),
            (Q8_0, 32, 34),
            (Q8_1, 32, 36),
            (Q2_K, 256, 84),
            (Q3_K, 256, 110),
            (Q4_K, 256, 144),
            (Q5_K, 256, 176),
            (Q6_K, 256, 210),
            (Q8_K, 256, 292),
            (I8, 1, 1),
            (I64, 1, 8),
            (F64, 1, 8),
        ];
        for (t, bs, ts) in table {
            assert_eq!((t.block_size(), t.type_size()), (bs, ts), "{}", t.name());
        }
        assert_eq!(Q8_0.row_bytes(64), Some(68));
        assert_eq!(Q8_0.row_bytes(31), None);
        assert_eq!(Q4_K.row_bytes(512), Some(288));
        assert_eq!(Q4_K.row_bytes(32), None);
        assert_eq!(F32.row_bytes(u64::MAX / 2), None);
        assert_eq!(F32.row_bytes(0), Some(0));
    }

    #[test]
    fn ids_and_names() {
        let known: Vec<u32> = (0..=64).filter(|&i| GgmlType::from_u32(i).is_some()).collect();
        let mut want: Vec<u32> = (0..=30).filter(|i| *i != 4 && *i != 5).collect();
        want.extend([34, 35, 39]);
        assert_eq!(known, want);
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_u32(t.id()), Some(t));
            assert_eq!(GgmlType::ALL.iter().filter(|u| u.name() == t.name()).count(), 1);
        }
        assert_eq!(GgmlType::Q6_K.name(), "Q6_K");
        assert_eq!(GgmlType::from_u32(12), Some(GgmlType::Q4_K));
        assert_eq!(GgmlType::from_u32(u32::MAX), None);
    }

    #[test]
    fn value_conversions() {
        assert_eq!(Value::I8(-1).as_u64(), None);
        assert_eq!(Value::I64(5).as_u64(), Some(5));
        assert_eq!(Value::U64(u64::MAX).as_i64(), None);
        assert_eq!(Value::F32(1.0).as_u64(), None);
        assert_eq!(Value::F64(0.5).as_f32(), Some(0.5));
        assert_eq!(Value::U32(1).as_f32(), None);
        assert_eq!(Value::String("x".into()).as_str(), Some("x"));
        assert_eq!(Value::Bool(true).type_name(), "bool");
        assert_eq!(Value::Array(Vec::new()).type_id(), vt::ARRAY);
    }
}
