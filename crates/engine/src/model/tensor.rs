//! Weight tensors: typed views into the model file, or owned data when a
//! loader had to convert (e.g. llama2.c int8 groups).

use alloc::string::String;
use alloc::vec::Vec;

use kernels::cast;
use kernels::half::{bf16_to_f32, f16_to_f32};
use kernels::ops::Weights;
use kernels::quant::{dequantize_row_q8_0, QK8_0};

use crate::{Error, Result};

/// Storage types the model can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q8_0,
}

impl DType {
    /// Bytes for `n` elements (n must be a multiple of the block size for quant types).
    pub fn bytes(self, n: usize) -> Option<usize> {
        match self {
            DType::F32 => n.checked_mul(4),
            DType::F16 | DType::BF16 => n.checked_mul(2),
            DType::Q8_0 => n.is_multiple_of(QK8_0).then(|| n / QK8_0 * 34),
        }
    }
    /// The GGUF name of the type.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q8_0 => "Q8_0",
        }
    }
}

/// Where a tensor's bytes live.
#[derive(Debug, Clone)]
pub(crate) enum Data {
    /// A byte range of the model file.
    File { offset: usize, len: usize },
    /// Converted at load time.
    OwnedF32(Vec<f32>),
}

/// A 2-D weight, row-major `[rows, cols]` (a 1-D tensor has rows = 1).
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub(crate) data: Data,
}

impl Tensor {
    /// A tensor stored in the file at `offset`. Checks that the byte range
    /// matches the shape and lies inside the file.
    pub(crate) fn in_file(name: &str, dtype: DType, rows: usize, cols: usize, offset: u64, file: &[u8]) -> Result<Self> {
        let n = rows.checked_mul(cols).ok_or_else(|| Error::overflow(alloc::format!("tensor '{name}' shape")))?;
        let len = dtype.bytes(n).ok_or_else(|| {
            Error::invalid(alloc::format!("tensor '{name}'"), alloc::format!("{n} elements do not fit {} blocks", dtype.name()))
        })?;
        let offset = usize::try_from(offset).map_err(|_| Error::overflow(alloc::format!("tensor '{name}' offset")))?;
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > file.len()) {
            return Err(Error::TensorOutOfBounds {
                name: name.into(),
                offset: offset as u64,
                size: len as u64,
                file_len: file.len() as u64,
            });
        }
        let t = Tensor { name: name.into(), dtype, rows, cols, data: Data::File { offset, len } };
        // Alignment is checked once here, so forward passes cannot fail on it.
        t.weights(file)?;
        Ok(t)
    }

    /// A tensor owning f32 data.
    pub(crate) fn owned(name: &str, rows: usize, cols: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Tensor { name: name.into(), dtype: DType::F32, rows, cols, data: Data::OwnedF32(data) }
    }

    /// Keeps only the first `rows` rows (a prefix of the data).
    pub(crate) fn truncate_rows(&mut self, rows: usize) {
        let rows = rows.min(self.rows);
        let keep = self.dtype.bytes(rows * self.cols).unwrap_or(0);
        match &mut self.data {
            Data::File { len, .. } => *len = keep.min(*len),
            Data::OwnedF32(v) => v.truncate(rows * self.cols),
        }
        self.rows = rows;
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory or file the tensor occupies.
    pub fn byte_len(&self) -> usize {
        match &self.data {
            Data::File { len, .. } => *len,
            Data::OwnedF32(v) => v.len() * 4,
        }
    }

    /// The kernel view of the data.
    pub(crate) fn weights<'a>(&'a self, file: &'a [u8]) -> Result<Weights<'a>> {
        let bytes = match &self.data {
            Data::OwnedF32(v) => return Ok(Weights::F32(v)),
            Data::File { offset, len } => file.get(*offset..*offset + *len).ok_or_else(|| Error::TensorOutOfBounds {
                name: self.name.clone(),
                offset: *offset as u64,
                size: *len as u64,
                file_len: file.len() as u64,
            })?,
        };
        let misaligned = || Error::invalid(alloc::format!("tensor '{}'", self.name), "data is not aligned in memory");
        Ok(match self.dtype {
            DType::F32 => Weights::F32(cast::as_f32(bytes).ok_or_else(misaligned)?),
            DType::F16 => Weights::F16(cast::as_u16(bytes).ok_or_else(misaligned)?),
            DType::BF16 => Weights::BF16(cast::as_u16(bytes).ok_or_else(misaligned)?),
            DType::Q8_0 => Weights::Q8_0(cast::as_q8_0(bytes).ok_or_else(misaligned)?),
        })
    }

    /// Row `r` converted to f32 into `out` (`cols` values).
    pub(crate) fn row_f32(&self, file: &[u8], r: usize, out: &mut [f32]) -> Result<()> {
        if r >= self.rows || out.len() < self.cols {
            return Err(Error::invalid(alloc::format!("row {r} of tensor '{}'", self.name), "out of range"));
        }
        let c = self.cols;
        let out = &mut out[..c];
        match self.weights(file)? {
            Weights::F32(m) => out.copy_from_slice(&m[r * c..(r + 1) * c]),
            Weights::F16(m) => out.iter_mut().zip(&m[r * c..(r + 1) * c]).for_each(|(o, &h)| *o = f16_to_f32(h)),
            Weights::BF16(m) => out.iter_mut().zip(&m[r * c..(r + 1) * c]).for_each(|(o, &h)| *o = bf16_to_f32(h)),
            Weights::Q8_0(m) => {
                let nb = c / QK8_0;
                dequantize_row_q8_0(&m[r * nb..(r + 1) * nb], out)
            }
        }
        Ok(())
    }

    /// The whole tensor as f32 (for norms and biases, which are small).
    pub(crate) fn to_f32(&self, file: &[u8]) -> Result<Vec<f32>> {
        let mut v = alloc::vec![0.0; self.len()];
        for r in 0..self.rows {
            self.row_f32(file, r, &mut v[r * self.cols..(r + 1) * self.cols])?;
        }
        Ok(v)
    }
}

