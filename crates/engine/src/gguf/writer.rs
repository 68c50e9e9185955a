//! GGUF v3 writer, laid out as llama.cpp's `gguf_write_to_file` does: header,
//! metadata, tensor infos, zero padding to the alignment, then each tensor's
//! data followed by zero padding to the alignment.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::reader::Gguf;
use super::types::{tensor_size, vt, GgmlType, Value};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
use crate::{Error, Result};

const ALIGNMENT_KEY: &str = "general.alignment";

/// A tensor waiting to be written.
#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF v3 file from metadata and tensors.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    alignment: u64,
    kvs: Vec<(String, Value)>,
    kv_index: BTreeMap<String, usize>,
    tensors: Vec<PendingTensor>,
    tensor_index: BTreeMap<String, usize>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// Buffers small writes on their way to the sink and counts bytes.
struct Out<'s> {
    sink: &'s mut dyn FnMut(&[u8]) -> Result<()>,
    buf: Vec<u8>,
    written: u64,
}

const OUT_BUF: usize = 64 * 1024;

impl Out<'_> {
    fn put(&mut self, b: &[u8]) -> Result<()> {
        if self.buf.len() + b.len() > OUT_BUF {
            self.flush()?;
        }
        if b.len() >= OUT_BUF {
            (self.sink)(b)?;
        } else {
            self.buf.extend_from_slice(b);
        }
        self.written += b.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            (self.sink)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<()> {
        self.put(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<()> {
        self.put(&v.to_le_bytes())
    }

    fn str(&mut self, s: &str) -> Result<()> {
        self.u64(s.len() as u64)?;
        self.put(s.as_bytes())
    }

    fn pad(&mut self, alignment: u64) -> Result<()> {
        const ZEROS: [u8; 64] = [0; 64];
        let mut n = self.written.next_multiple_of(alignment) - self.written;
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            self.put(&ZEROS[..k as usize])?;
            n -= k;
        }
        Ok(())
    }

    /// A value's payload (without its top-level type id).
    fn value(&mut self, v: &Value) -> Result<()> {
        match v {
            Value::U8(x) => self.put(&[*x]),
            Value::I8(x) => self.put(&x.to_le_bytes()),
            Value::U16(x) => self.put(&x.to_le_bytes()),
            Value::I16(x) => self.put(&x.to_le_bytes()),
            Value::U32(x) => self.u32(*x),
            Value::I32(x) => self.put(&x.to_le_bytes()),
            Value::F32(x) => self.put(&x.to_le_bytes()),
            Value::Bool(b) => self.put(&[u8::from(*b)]),
            Value::String(s) => self.str(s),
            Value::U64(x) => self.u64(*x),
            Value::I64(x) => self.put(&x.to_le_bytes()),
            Value::F64(x) => self.put(&x.to_le_bytes()),
            Value::Array(a) => {
                self.u32(array_elem_type(a))?;
                self.u64(a.len() as u64)?;
                a.iter().try_for_each(|e| self.value(e))
            }
        }
    }
}

impl Out<'_> {
    /// Magic, version, counts, metadata, tensor infos (offsets from the
    /// sizes, each padded to `align`) and the padding before the data.
    fn header(&mut self, kvs: &[(String, Value)], tensors: &[TensorEntry<'_>], align: u64) -> Result<()> {
        self.u32(GGUF_MAGIC)?;
        self.u32(3)?;
        self.u64(tensors.len() as u64)?;
        self.u64(kvs.len() as u64)?;
        for (k, v) in kvs {
            self.str(k)?;
            self.u32(v.type_id())?;
            self.value(v)?;
        }
        let mut rel = 0u64;
        for t in tensors {
            self.str(t.name)?;
            self.u32(t.dims.len() as u32)?;
            t.dims.iter().try_for_each(|&d| self.u64(d))?;
            self.u32(t.ty.id())?;
            self.u64(rel)?;
            rel = t
                .size
                .checked_next_multiple_of(align)
                .and_then(|s| rel.checked_add(s))
                .ok_or_else(|| Error::overflow("GGUF data section size"))?;
        }
        self.pad(align)
    }
}

/// A tensor's entry in a GGUF header: its data follows later.
#[derive(Debug, Clone, Copy)]
pub struct TensorEntry<'a> {
    pub name: &'a str,
    /// GGUF `ne` order: `dims[0]` is the row length.
    pub dims: &'a [u64],
    pub ty: GgmlType,
    /// Bytes of data.
    pub size: u64,
}

/// Writes a GGUF v3 header for `tensors` whose data will follow, for
/// writers that stream data too large to hold (the random-weight
/// generator): everything [`GgufWriter::write`] puts before the first
/// tensor's data, the padding included. The caller then writes each
/// tensor's `size` bytes, in order, each followed by zeros up to a
/// multiple of `alignment`. Returns the bytes written.
pub fn write_header(
    kvs: &[(String, Value)],
    tensors: &[TensorEntry<'_>],
    alignment: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    if !alignment.is_power_of_two() || alignment > u64::from(u32::MAX) {
        return Err(Error::invalid("GGUF alignment", format!("{alignment} is not a power of two that fits in u32")));
    }
    for (k, v) in kvs {
        check_value(k, v, 0)?;
    }
    let mut out = Out { sink, buf: Vec::with_capacity(OUT_BUF), written: 0 };
    out.header(kvs, tensors, alignment)?;
    out.flush()?;
    Ok(out.written)
}

/// The element type written for an array; an empty array is written as `u8`.
fn array_elem_type(a: &[Value]) -> u32 {
    a.first().map_or(vt::U8, Value::type_id)
}

/// Checks that arrays are homogeneous and not nested too deeply for readers.
fn check_value(key: &str, v: &Value, depth: usize) -> Result<()> {
    let Value::Array(a) = v else { return Ok(()) };
    if depth >= MAX_ARRAY_DEPTH {
        return Err(Error::invalid(
            format!("metadata key '{key}'"),
            format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
        ));
    }
    let ty = array_elem_type(a);
    for (i, e) in a.iter().enumerate() {
        if e.type_id() != ty {
            return Err(Error::invalid(
                format!("metadata key '{key}'"),
                format!("array element {i} is {} but element 0 is {}", e.type_name(), a[0].type_name()),
            ));
        }
        check_value(key, e, depth + 1)?;
    }
    Ok(())
}

impl GgufWriter {
    /// An empty writer with the default alignment of 32.
    pub fn new() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            kvs: Vec::new(),
            kv_index: BTreeMap::new(),
            tensors: Vec::new(),
            tensor_index: BTreeMap::new(),
        }
    }

    /// A writer holding all metadata (in order) and tensors of a parsed file,
    /// copying the tensor data out of `file`.
    pub fn from_gguf(g: &Gguf, file: &[u8]) -> Result<Self> {
        let mut w = Self::new();
        for (k, v) in &g.metadata {
            w.add_kv(k, v.clone());
        }
        for t in &g.tensors {
            w.add_tensor(&t.name, &t.dims, t.ty, g.tensor_data(file, &t.name)?.to_vec())?;
        }
        Ok(w)
    }

    /// Sets the data alignment (a non-zero power of two that fits in u32;
    /// checked by [`write`](Self::write)). Also stores it as
    /// `general.alignment` unless it is the default 32 and the key is absent.
    pub fn set_alignment(&mut self, a: u64) {
        if a != DEFAULT_ALIGNMENT || self.kv_index.contains_key(ALIGNMENT_KEY) {
            if let Ok(v) = u32::try_from(a) {
                self.add_kv(ALIGNMENT_KEY, Value::U32(v));
            }
        }
        self.alignment = a;
    }

    /// Adds a metadata entry at the end, or replaces the value of an
    /// existing key in place. A `U32` `general.alignment` sets the alignment.
    pub fn add_kv(&mut self, key: &str, value: Value) {
        if key == ALIGNMENT_KEY {
            if let Value::U32(a) = value {
                self.alignment = a.into();
            }
        }
        match self.kv_index.get(key) {
            Some(&i) => self.kvs[i].1 = value,
            None => {
                self.kv_index.insert(key.to_string(), self.kvs.len());
                self.kvs.push((key.to_string(), value));
            }
        }
    }

    /// Adds a tensor. `dims` are in GGUF `ne` order (`dims[0]` is the row
    /// length, which must be a whole number of `ty` blocks); `data` must be
    /// exactly the tensor's size in bytes and names must be unique.
    pub fn add_tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Result<()> {
        if self.tensor_index.contains_key(name) {
            return Err(Error::invalid(format!("tensor '{name}'"), "added twice"));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(Error::invalid(
                format!("tensor '{name}'"),
                format!("{} dimensions (must be 1..={MAX_DIMS})", dims.len()),
            ));
        }
        let (_, size) = tensor_size(name, dims, ty)?;
        if data.len() as u64 != size {
            return Err(Error::invalid(
                format!("tensor '{name}'"),
                format!("{} bytes of data, but {} {dims:?} needs {size}", data.len(), ty.name()),
            ));
        }
        self.tensor_index.insert(name.to_string(), self.tensors.len());
        self.tensors.push(PendingTensor { name: name.to_string(), dims: dims.to_vec(), ty, data });
        Ok(())
    }

    fn check(&self) -> Result<()> {
        let a = self.alignment;
        if !a.is_power_of_two() || a > u64::from(u32::MAX) {
            return Err(Error::invalid("GGUF alignment", format!("{a} is not a power of two that fits in u32")));
        }
        match self.kv_index.get(ALIGNMENT_KEY).map(|&i| &self.kvs[i].1) {
            None | Some(Value::U32(_)) => {}
            Some(v) => {
                return Err(Error::WrongKeyType {
                    key: ALIGNMENT_KEY.into(),
                    expected: "u32",
                    found: v.type_name().into(),
                })
            }
        }
        for (k, v) in &self.kvs {
            if k.is_empty() {
                return Err(Error::invalid("metadata key", "empty key"));
            }
            check_value(k, v, 0)?;
        }
        Ok(())
    }

    /// Streams the file to `sink` in pieces: header, metadata, tensor infos,
    /// padding, then the aligned tensor data.
    pub fn write(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.check()?;
        let align = self.alignment;
        let entries: Vec<TensorEntry<'_>> = self
            .tensors
            .iter()
            .map(|t| TensorEntry { name: &t.name, dims: &t.dims, ty: t.ty, size: t.data.len() as u64 })
            .collect();
        let mut out = Out { sink, buf: Vec::with_capacity(OUT_BUF), written: 0 };
        out.header(&self.kvs, &entries, align)?;
        for t in &self.tensors {
            out.put(&t.data)?;
            out.pad(align)?;
        }
        out.flush()
    }

    /// The whole file in memory.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write(&mut |b: &[u8]| {
            v.extend_from_slice(b);
            Ok(())
        })?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_buffers_small_writes_and_passes_big_ones() {
        let mut chunks: Vec<usize> = Vec::new();
        let mut all = Vec::new();
        let mut sink = |b: &[u8]| {
            chunks.push(b.len());
            all.extend_from_slice(b);
            Ok(())
        };
        let mut out = Out { sink: &mut sink, buf: Vec::new(), written: 0 };
        let mut want = Vec::new();
        for i in 0..20_000u32 {
            out.u32(i).unwrap();
            want.extend_from_slice(&i.to_le_bytes());
        }
        let big: Vec<u8> = (0..OUT_BUF * 2 + 5).map(|i| i as u8).collect();
        out.put(&big).unwrap();
        want.extend_from_slice(&big);
        out.put(&[1, 2, 3]).unwrap();
        want.extend_from_slice(&[1, 2, 3]);
        out.pad(128).unwrap();
        want.resize(want.len().next_multiple_of(128), 0);
        assert_eq!(out.written, want.len() as u64);
        out.flush().unwrap();
        assert_eq!(all, want);
        assert!(chunks.contains(&big.len()));
        assert!(chunks.iter().all(|&n| n <= OUT_BUF || n == big.len()));
    }
}
