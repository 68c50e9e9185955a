//! GGUF parser. The file is hostile input: every count, length and offset is
//! checked against the bytes that remain before anything is allocated or
//! indexed.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::types::{tensor_size, vt, GgmlType, TensorInfo, Value};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
use crate::{Error, Result};

/// A parsed GGUF header: metadata and tensor infos. Tensor data stays in the
/// file; [`Gguf::tensor_data`] slices it.
#[derive(Debug, Clone)]
pub struct Gguf {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute offset of the data section: the end of the tensor infos
    /// rounded up to `alignment`. In a file without tensors this may lie
    /// past the end (gguf-py does not pad such files).
    pub data_offset: u64,
    kv_index: BTreeMap<String, usize>,
    tensor_index: BTreeMap<String, usize>,
}

/// Reads little-endian fields from a prefix `buf` of a file of `file_len` bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file_len: u64,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left in the whole file (not only in the prefix).
    fn file_remaining(&self) -> u64 {
        self.file_len.saturating_sub(self.offset())
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let off = self.offset();
        if n > self.file_remaining() {
            return Err(Error::truncated(what, off, n, self.file_remaining()));
        }
        let have = self.buf.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= have => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(Error::truncated(what, off, n, have as u64)),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in
    /// the rest of the file, and returns a safe capacity to reserve (bounded
    /// by the bytes actually present).
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<usize> {
        let need = count.saturating_mul(min_size);
        if need > self.file_remaining() {
            return Err(Error::truncated(format!("{count} {what}"), self.offset(), need, self.file_remaining()));
        }
        let present = (self.buf.len() - self.pos) as u64 / min_size.max(1);
        Ok(usize::try_from(count.min(present)).unwrap_or(0))
    }

    /// A GGUF string: u64 length + bytes. Returns the raw bytes.
    fn string_bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let len = self.u64(what)?;
        self.take(len, what)
    }
}

/// Smallest encoding of a value of type `ty` (for bounding counts).
fn min_value_size(ty: u32) -> u64 {
    match ty {
        vt::U8 | vt::I8 | vt::BOOL => 1,
        vt::U16 | vt::I16 => 2,
        vt::U32 | vt::I32 | vt::F32 => 4,
        vt::ARRAY => 12,
        _ => 8,
    }
}

/// Prefixes the `what` of a truncation error with the key being read.
fn in_key(e: Error, key: &str) -> Error {
    match e {
        Error::Truncated { what, offset, need, have } => {
            Error::Truncated { what: format!("{what} of key '{key}'"), offset, need, have }
        }
        e => e,
    }
}

fn read_value(c: &mut Cursor, ty: u32, key: &str, depth: usize) -> Result<Value> {
    Ok(match ty {
        vt::U8 => Value::U8(c.array::<1>("u8")?[0]),
        vt::I8 => Value::I8(i8::from_le_bytes(c.array("i8")?)),
        vt::U16 => Value::U16(u16::from_le_bytes(c.array("u16")?)),
        vt::I16 => Value::I16(i16::from_le_bytes(c.array("i16")?)),
        vt::U32 => Value::U32(c.u32("u32")?),
        vt::I32 => Value::I32(i32::from_le_bytes(c.array("i32")?)),
        vt::F32 => Value::F32(f32::from_le_bytes(c.array("f32")?)),
        vt::U64 => Value::U64(c.u64("u64")?),
        vt::I64 => Value::I64(i64::from_le_bytes(c.array("i64")?)),
        vt::F64 => Value::F64(f64::from_le_bytes(c.array("f64")?)),
        vt::BOOL => {
            let off = c.offset();
            match c.array::<1>("bool")?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(Error::invalid(
                        format!("metadata key '{key}'"),
                        format!("bool byte at offset {off} is {b}, not 0 or 1"),
                    ))
                }
            }
        }
        vt::STRING => {
            let off = c.offset();
            let b = c.string_bytes("string")?;
            let s = core::str::from_utf8(b).map_err(|_| {
                Error::invalid(format!("metadata key '{key}'"), format!("string at offset {off} is not valid UTF-8"))
            })?;
            Value::String(s.to_string())
        }
        vt::ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(Error::invalid(
                    format!("metadata key '{key}'"),
                    format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
                ));
            }
            let elem = value_type(c, "array element type", key)?;
            let n = c.u64("array length")?;
            let cap = c.check_count(n, min_value_size(elem), "array elements")?;
            let mut v = Vec::with_capacity(cap);
            for _ in 0..n {
                v.push(read_value(c, elem, key, depth + 1)?);
            }
            Value::Array(v)
        }
        _ => return Err(Error::invalid(format!("metadata key '{key}'"), format!("unknown value type {ty}"))),
    })
}

/// Reads a value type id and checks that it is known (0..=12).
fn value_type(c: &mut Cursor, what: &str, key: &str) -> Result<u32> {
    let off = c.offset();
    let ty = c.u32(what)?;
    if ty > vt::F64 {
        return Err(Error::invalid(
            format!("metadata key '{key}'"),
            format!("unknown value type {ty} at offset {off}"),
        ));
    }
    Ok(ty)
}

impl Gguf {
    /// Parses the header, metadata and tensor infos.
    ///
    /// `bytes` may be only a prefix of the file; `file_len` is the full
    /// length. If the header runs past `bytes` (but not past `file_len`),
    /// this returns [`Error::Truncated`] whose `offset + need` is how many
    /// bytes of the file to read before calling again. If `offset + need`
    /// (use `saturating_add`) exceeds `file_len`, the file itself is
    /// truncated or claims absurd counts or lengths, and re-reading cannot help.
    ///
    /// Every tensor's data range is checked against `file_len`.
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<Gguf> {
        if bytes.len() as u64 > file_len {
            return Err(Error::invalid(
                "GGUF input",
                format!("{} bytes given but the file length is {file_len}", bytes.len()),
            ));
        }
        let mut c = Cursor { buf: bytes, pos: 0, file_len };
        let magic = c.u32("GGUF magic")?;
        if magic != GGUF_MAGIC {
            return Err(Error::BadMagic { format: "GGUF", found: magic });
        }
        let version = c.u32("GGUF version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion { format: "GGUF", version });
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;

        // Metadata: key (>= 8 bytes) + type (4) + value (>= 1).
        let cap = c.check_count(n_kv, 13, "metadata entries")?;
        let mut metadata = Vec::with_capacity(cap);
        let mut kv_index = BTreeMap::new();
        for i in 0..n_kv {
            let off = c.offset();
            let key = c.string_bytes("metadata key")?;
            let key = core::str::from_utf8(key).map_err(|_| {
                Error::invalid(
                    "metadata key",
                    format!("key #{i} at offset {off} is not valid UTF-8: '{}'", String::from_utf8_lossy(key)),
                )
            })?;
            if key.is_empty() {
                return Err(Error::invalid("metadata key", format!("key #{i} at offset {off} is empty")));
            }
            if kv_index.contains_key(key) {
                return Err(Error::invalid(
                    format!("metadata key '{key}'"),
                    format!("appears twice (second at offset {off})"),
                ));
            }
            let ty = value_type(&mut c, "value type", key).map_err(|e| in_key(e, key))?;
            let value = read_value(&mut c, ty, key, 0).map_err(|e| in_key(e, key))?;
            kv_index.insert(key.to_string(), metadata.len());
            metadata.push((key.to_string(), value));
        }

        let alignment = match kv_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(Value::U32(a)) => {
                return Err(Error::invalid("general.alignment", format!("{a} is not a non-zero power of two")))
            }
            Some(v) => {
                return Err(Error::WrongKeyType {
                    key: "general.alignment".into(),
                    expected: "u32",
                    found: v.type_name().into(),
                })
            }
        };

        // Tensor info: name (>= 8) + n_dims (4) + >= 1 dim (8) + type (4) + offset (8).
        let cap = c.check_count(n_tensors, 32, "tensor infos")?;
        let mut tensors = Vec::with_capacity(cap);
        let mut tensor_index = BTreeMap::new();
        for i in 0..n_tensors {
            let off = c.offset();
            let name = c.string_bytes("tensor name")?;
            let name = core::str::from_utf8(name).map_err(|_| {
                Error::invalid(
                    "tensor name",
                    format!("tensor #{i} name at offset {off} is not valid UTF-8: '{}'", String::from_utf8_lossy(name)),
                )
            })?;
            let what = |e: Error| in_tensor(e, name);
            if tensor_index.contains_key(name) {
                return Err(Error::invalid(
                    format!("tensor '{name}'"),
                    format!("name appears twice (second at offset {off})"),
                ));
            }
            let n_dims = c.u32("n_dims").map_err(what)?;
            if n_dims == 0 || n_dims as usize > MAX_DIMS {
                return Err(Error::invalid(
                    format!("tensor '{name}'"),
                    format!("{n_dims} dimensions (must be 1..={MAX_DIMS})"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64("dimension").map_err(what)?);
            }
            let ty_id = c.u32("tensor type").map_err(what)?;
            let ty = GgmlType::from_u32(ty_id).ok_or_else(|| Error::UnsupportedTensorType {
                name: name.to_string(),
                ty: format!("unknown type id {ty_id}"),
            })?;
            let rel = c.u64("tensor offset").map_err(what)?;
            if rel % alignment != 0 {
                return Err(Error::invalid(
                    format!("tensor '{name}'"),
                    format!("data offset {rel} is not a multiple of the alignment {alignment}"),
                ));
            }
            let (_, size) = tensor_size(name, &dims, ty)?;
            tensor_index.insert(name.to_string(), tensors.len());
            // `offset` is relative until the data section start is known.
            tensors.push(TensorInfo { name: name.to_string(), dims, ty, offset: rel, size });
        }

        let end = c.offset();
        let data_offset =
            end.checked_next_multiple_of(alignment).ok_or_else(|| Error::overflow("GGUF data section offset"))?;
        for t in &mut tensors {
            let abs = data_offset.checked_add(t.offset);
            match abs.and_then(|a| a.checked_add(t.size)) {
                Some(e) if e <= file_len => t.offset += data_offset,
                _ => {
                    return Err(Error::TensorOutOfBounds {
                        name: t.name.clone(),
                        offset: data_offset.saturating_add(t.offset),
                        size: t.size,
                        file_len,
                    })
                }
            }
        }
        Ok(Gguf { version, metadata, tensors, alignment, data_offset, kv_index, tensor_index })
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn need(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    /// A non-negative integer of any width.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.need(key)?;
        v.as_u64().ok_or_else(|| int_error(key, v, "u64"))
    }

    /// A non-negative integer that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.need(key)?;
        v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| int_error(key, v, "u32"))
    }

    /// An `f32` (or `f64` rounded to `f32`).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.need(key)?;
        v.as_f32().ok_or_else(|| wrong_type(key, "f32", v))
    }

    /// A bool.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.need(key)?;
        v.as_bool().ok_or_else(|| wrong_type(key, "bool", v))
    }

    /// A string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.need(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "string", v))
    }

    /// An array's elements.
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        let v = self.need(key)?;
        v.as_array().ok_or_else(|| wrong_type(key, "array", v))
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let a = self.get_array(key)?;
        a.iter().map(|e| e.as_str().ok_or_else(|| wrong_array(key, "array of string", e))).collect()
    }

    /// An array of `f32` (or `f64`, rounded).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let a = self.get_array(key)?;
        a.iter().map(|e| e.as_f32().ok_or_else(|| wrong_array(key, "array of f32", e))).collect()
    }

    /// An array of integers of any type, each of which must fit in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        let a = self.get_array(key)?;
        a.iter()
            .enumerate()
            .map(|(i, e)| {
                if !e.is_integer() {
                    return Err(wrong_array(key, "array of integers", e));
                }
                e.as_i64().and_then(|x| i32::try_from(x).ok()).ok_or_else(|| {
                    Error::invalid(format!("metadata key '{key}'"), format!("element {i} ({e:?}) does not fit in i32"))
                })
            })
            .collect()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// The info of the tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i]).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    /// The data of tensor `name`, sliced from the whole `file`.
    pub fn tensor_data<'a>(&self, file: &'a [u8], name: &str) -> Result<&'a [u8]> {
        let t = self.tensor(name)?;
        let range = usize::try_from(t.offset)
            .ok()
            .zip(usize::try_from(t.size).ok())
            .and_then(|(o, s)| Some(o..o.checked_add(s)?));
        range.and_then(|r| file.get(r)).ok_or_else(|| Error::TensorOutOfBounds {
            name: t.name.clone(),
            offset: t.offset,
            size: t.size,
            file_len: file.len() as u64,
        })
    }
}

fn in_tensor(e: Error, name: &str) -> Error {
    match e {
        Error::Truncated { what, offset, need, have } => {
            Error::Truncated { what: format!("{what} of tensor '{name}'"), offset, need, have }
        }
        e => e,
    }
}

/// A description of a value's type for errors: "u32", "array of string", ...
fn describe(v: &Value) -> String {
    match v {
        Value::Array(a) => match a.first() {
            Some(e) => format!("array of {}", e.type_name()),
            None => "empty array".into(),
        },
        v => v.type_name().into(),
    }
}

fn wrong_type(key: &str, expected: &'static str, v: &Value) -> Error {
    Error::WrongKeyType { key: key.to_string(), expected, found: describe(v) }
}

fn wrong_array(key: &str, expected: &'static str, elem: &Value) -> Error {
    Error::WrongKeyType { key: key.to_string(), expected, found: format!("array of {}", describe(elem)) }
}

/// An integer that is negative or too large is `Invalid`; anything else is `WrongKeyType`.
fn int_error(key: &str, v: &Value, expected: &'static str) -> Error {
    if v.is_integer() {
        Error::invalid(format!("metadata key '{key}'"), format!("{v:?} does not fit in {expected}"))
    } else {
        wrong_type(key, expected, v)
    }
}
