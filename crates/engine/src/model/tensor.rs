//! Weight tensors: typed views into the model file, or owned data when a
//! loader had to convert (e.g. llama2.c int8 groups).

use alloc::string::String;
use alloc::vec::Vec;

use kernels::ops::{self, Weights};
use kernels::quant::{BlockQ8_0, QK8_0};
use kernels::store::{Store, View};

use crate::{Error, Result};

/// Storage types the model can run (GGUF's names and layouts): the
/// kernels' table of types (`kernels::types`), which gives each one's block
/// size, bytes, GGUF id and name.
pub use kernels::types::WType as DType;

/// Where a tensor's bytes live. Loaders make `File` ranges; the model
/// repacks some into `Octets` and then resolves both into `View`s of its
/// [`Store`], which is all the forward pass reads.
#[derive(Debug, Clone)]
pub(crate) enum Data {
    /// A byte range of the model file, not yet resolved.
    File { offset: usize, len: usize },
    /// A Q4_0, Q4_K or Q6_K byte range of the model file, repacked in place
    /// into row octets (`kernels::quant::BlockQ4_0x8`, `BlockQ4Kx8`,
    /// `BlockQ6Kx8`) at load, not yet resolved.
    Octets { offset: usize, len: usize },
    /// Resolved once at load: a kernel view into the model's store (the
    /// file offset kept for messages).
    View { view: View, offset: usize },
    /// Converted at load time.
    OwnedF32(Vec<f32>),
    /// Converted at load time to Q8_0 blocks (llama2.c v2 int8 groups).
    OwnedQ8_0(Vec<BlockQ8_0>),
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
    pub(crate) fn in_file(
        name: &str,
        dtype: DType,
        rows: usize,
        cols: usize,
        offset: u64,
        file: &[u8],
    ) -> Result<Self> {
        let n = rows.checked_mul(cols).ok_or_else(|| Error::overflow(alloc::format!("tensor '{name}' shape")))?;
        let len = dtype.bytes(n).ok_or_else(|| {
            Error::invalid(
                alloc::format!("tensor '{name}'"),
                alloc::format!("{n} elements do not fit {} blocks", dtype.name()),
            )
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
        // Alignment is checked here, and again when the model resolves it.
        t.weights_in(file)?;
        Ok(t)
    }

    /// A tensor owning f32 data.
    pub(crate) fn owned(name: &str, rows: usize, cols: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Tensor { name: name.into(), dtype: DType::F32, rows, cols, data: Data::OwnedF32(data) }
    }

    /// A tensor owning Q8_0 blocks (`rows * cols / 32` of them).
    pub(crate) fn owned_q8_0(name: &str, rows: usize, cols: usize, data: Vec<BlockQ8_0>) -> Self {
        debug_assert_eq!(data.len() * QK8_0, rows * cols);
        Tensor { name: name.into(), dtype: DType::Q8_0, rows, cols, data: Data::OwnedQ8_0(data) }
    }

    /// Keeps only the first `rows` rows (a prefix of the data).
    pub(crate) fn truncate_rows(&mut self, rows: usize) {
        let rows = rows.min(self.rows);
        let keep = self.dtype.bytes(rows * self.cols).unwrap_or(0);
        match &mut self.data {
            Data::File { len, .. } => *len = keep.min(*len),
            // Octets are repacked (and views resolved) after the loaders cut rows; never cut them.
            Data::Octets { .. } | Data::View { .. } => return,
            Data::OwnedF32(v) => v.truncate(rows * self.cols),
            Data::OwnedQ8_0(v) => v.truncate(rows * self.cols / QK8_0),
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
            Data::File { len, .. } | Data::Octets { len, .. } => *len,
            Data::View { view, .. } => view.byte_len(),
            Data::OwnedF32(v) => v.len() * 4,
            Data::OwnedQ8_0(v) => v.len() * core::mem::size_of::<BlockQ8_0>(),
        }
    }

    /// The kernel view of the data, from the file bytes `file` (while
    /// loading: checks the range and the alignment).
    pub(crate) fn weights_in<'a>(&'a self, file: &'a [u8]) -> Result<Weights<'a>> {
        let (offset, len) = match &self.data {
            Data::OwnedF32(v) => return Ok(Weights::F32(v)),
            Data::OwnedQ8_0(v) => return Ok(Weights::Q8_0(v)),
            Data::View { .. } => return Err(self.not("read from the file: it is resolved in a model")),
            Data::File { offset, len } | Data::Octets { offset, len } => (*offset, *len),
        };
        let bytes = file.get(offset..offset + len).ok_or_else(|| Error::TensorOutOfBounds {
            name: self.name.clone(),
            offset: offset as u64,
            size: len as u64,
            file_len: file.len() as u64,
        })?;
        let octets = matches!(self.data, Data::Octets { .. });
        Weights::from_bytes(self.dtype, bytes, octets).ok_or_else(|| self.not("aligned in memory"))
    }

    /// Resolves a file range into a view of `store` (which holds the file's
    /// bytes), once, at load.
    pub(crate) fn resolve(&mut self, store: &Store) -> Result<()> {
        let (offset, len, octets) = match self.data {
            Data::File { offset, len } => (offset, len, false),
            Data::Octets { offset, len } => (offset, len, true),
            Data::View { .. } | Data::OwnedF32(_) | Data::OwnedQ8_0(_) => return Ok(()),
        };
        let end = offset.checked_add(len).ok_or_else(|| Error::overflow(alloc::format!("tensor '{}'", self.name)))?;
        let view =
            store.view(self.dtype, offset..end, octets).ok_or_else(|| self.not("inside the file and aligned"))?;
        self.data = Data::View { view, offset };
        Ok(())
    }

    /// The kernel view of the data, in a loaded model's `store`: no checks
    /// but that the view is of this store.
    #[inline]
    pub(crate) fn weights<'a>(&'a self, store: &'a Store) -> Result<Weights<'a>> {
        match &self.data {
            Data::View { view, .. } => store.get(view).ok_or_else(|| self.not("a view of this model")),
            Data::OwnedF32(v) => Ok(Weights::F32(v)),
            Data::OwnedQ8_0(v) => Ok(Weights::Q8_0(v)),
            Data::File { .. } | Data::Octets { .. } => Err(self.not("resolved")),
        }
    }

    fn not(&self, what: &str) -> Error {
        Error::invalid(alloc::format!("tensor '{}'", self.name), alloc::format!("data is not {what}"))
    }

    /// The file byte range of a tensor read from the file.
    pub(crate) fn file_range(&self) -> Option<core::ops::Range<usize>> {
        match &self.data {
            Data::File { offset, len } | Data::Octets { offset, len } => Some(*offset..*offset + *len),
            Data::View { view, offset } => Some(*offset..*offset + view.byte_len()),
            Data::OwnedF32(_) | Data::OwnedQ8_0(_) => None,
        }
    }

    /// Repacks a Q4_0, Q4_K or Q6_K matrix of whole row octets in `file` into the
    /// row-octet layout the kernels stream (in place, same bytes); other
    /// tensors are left alone. Returns whether it repacked.
    pub(crate) fn repack_octets(&mut self, file: &mut [u8]) -> bool {
        let Data::File { offset, len } = self.data else { return false };
        let info = self.dtype.info();
        let Some(oct) = info.octets else { return false };
        let (repack, bs) = (oct.repack, info.block_size);
        if !self.rows.is_multiple_of(8) || !self.cols.is_multiple_of(bs) {
            return false;
        }
        let Some(bytes) = file.get_mut(offset..offset + len) else { return false };
        if !repack(bytes, self.rows, self.cols / bs) {
            return false;
        }
        self.data = Data::Octets { offset, len };
        true
    }

    /// Row `r` converted to f32 into `out` (`cols` values), from a loaded
    /// model's store.
    pub(crate) fn row_f32(&self, store: &Store, r: usize, out: &mut [f32]) -> Result<()> {
        self.check_row(r, out)?;
        ops::dequantize_row(self.weights(store)?, r, self.cols, out);
        Ok(())
    }

    fn check_row(&self, r: usize, out: &[f32]) -> Result<()> {
        if r >= self.rows || out.len() < self.cols {
            return Err(Error::invalid(alloc::format!("row {r} of tensor '{}'", self.name), "out of range"));
        }
        Ok(())
    }

    /// The whole tensor as f32 from the file bytes, while loading (for
    /// norms and biases, which are small).
    pub(crate) fn to_f32(&self, file: &[u8]) -> Result<Vec<f32>> {
        let w = self.weights_in(file)?;
        let mut v = alloc::vec![0.0; self.len()];
        for r in 0..self.rows {
            let out = &mut v[r * self.cols..(r + 1) * self.cols];
            self.check_row(r, out)?;
            ops::dequantize_row(w, r, self.cols, out);
        }
        Ok(v)
    }
}
