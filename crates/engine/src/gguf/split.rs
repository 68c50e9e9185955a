//! Split GGUF sets, as llama.cpp's `llama-gguf-split` writes and reads them.
//!
//! A set of N shards is named `PREFIX-00001-of-0000N.gguf` ..
//! `PREFIX-0000N-of-0000N.gguf`. Every shard is a complete GGUF v3 file with
//! the keys `split.no` (u16, 0-based), `split.count` (u16, N) and
//! `split.tensors.count` (i32, the tensors of the whole set). The first shard
//! carries all the model's metadata, the others only those three keys. The
//! tensors keep the order of the whole file, cut into consecutive runs; each
//! shard lays its tensors out as ggml does: offsets from 0, each tensor's
//! data padded with zeros to 32 bytes, the header padded to 32.
//!
//! Loading a set merges it into the one file `llama-gguf-split --merge`
//! would write ([`MergePlan`]): the first shard's metadata with
//! `split.count` set to 0 (moved to the end), every shard's tensor infos in
//! order, and the tensor data laid out again. The plan is computed from the
//! shards' headers alone, so a caller allocates the merged size once and
//! reads each shard's tensor data straight into place ([`Piece`]).
//!
//! Splitting ([`plan_split`]) follows `gguf-split`'s rules: a new shard
//! starts before the tensor that would take the shard's tensor data (each
//! tensor padded to 32) past the size limit, or every `max_tensors` tensors.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::reader::Gguf;
use super::types::{TensorInfo, Value};
use super::writer::{write_header, TensorEntry};
use super::DEFAULT_ALIGNMENT;
use crate::{Error, Result};

/// The shard's index in its set, 0-based (u16).
pub const SPLIT_NO: &str = "split.no";
/// How many shards the set has (u16); 0 in a merged file.
pub const SPLIT_COUNT: &str = "split.count";
/// How many tensors the whole set has (i32).
pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

/// The data alignment of every shard and of a merged file: ggml's
/// `GGUF_DEFAULT_ALIGNMENT`, which `gguf-split` uses for both.
pub const SPLIT_ALIGNMENT: u64 = DEFAULT_ALIGNMENT;

/// Most shards a set can have (`split.count` is a u16).
pub const MAX_SHARDS: usize = u16::MAX as usize;

/// The file name of shard `no` (0-based) of `count`:
/// `PREFIX-00002-of-00003.gguf` for `no` 1 of 3, as llama.cpp's `llama_split_path`.
pub fn shard_file_name(prefix: &str, no: u16, count: u16) -> String {
    format!("{prefix}-{:05}-of-{:05}.gguf", u32::from(no) + 1, count)
}

/// A shard's file name taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardName<'a> {
    /// Everything before `-00001-of-00003`.
    pub prefix: &'a str,
    /// The shard's index, 0-based (the name's number minus one).
    pub no: u16,
    /// How many shards the name says the set has.
    pub count: u16,
    /// The extension as written (`.gguf`, or `.GGUF` on some FAT volumes).
    pub ext: &'a str,
}

impl ShardName<'_> {
    /// The name of shard `no` (0-based) of the same set, with the same
    /// prefix and extension.
    pub fn sibling(&self, no: u16) -> String {
        format!("{}-{:05}-of-{:05}{}", self.prefix, u32::from(no) + 1, self.count, self.ext)
    }

    /// The set's name as a menu shows it: the prefix.
    pub fn set_name(&self) -> &str {
        self.prefix
    }
}

/// Parses `PREFIX-NNNNN-of-MMMMM.gguf` (five digits each, the extension in
/// any case, `1 <= NNNNN <= MMMMM`); `None` for any other name.
pub fn parse_shard_name(name: &str) -> Option<ShardName<'_>> {
    // "-00001-of-00003.gguf" is 20 bytes, all ASCII.
    const TAIL: usize = 20;
    if name.len() <= TAIL || !name.is_char_boundary(name.len() - TAIL) {
        return None;
    }
    let (prefix, tail) = name.split_at(name.len() - TAIL);
    let b = tail.as_bytes();
    let digits = |s: &[u8]| -> Option<u32> {
        s.iter().all(u8::is_ascii_digit).then(|| s.iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0')))
    };
    if b[0] != b'-' || !tail[6..10].eq_ignore_ascii_case("-of-") || !tail[15..].eq_ignore_ascii_case(".gguf") {
        return None;
    }
    let no = digits(&b[1..6])?;
    let count = digits(&b[10..15])?;
    if no == 0 || no > count || count > u32::from(u16::MAX) {
        return None;
    }
    Some(ShardName { prefix, no: (no - 1) as u16, count: count as u16, ext: &tail[15..] })
}

/// A shard's split keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitKeys {
    /// `split.no`: the shard's index, 0-based.
    pub no: u16,
    /// `split.count`: shards in the set (0 in a merged file).
    pub count: u16,
    /// `split.tensors.count`: tensors in the whole set, if present.
    pub tensors: Option<u32>,
}

/// An integer key that must fit in `T`, or `None` when absent.
fn int_key<T: TryFrom<i64>>(g: &Gguf, key: &str, ty: &'static str) -> Result<Option<T>> {
    let Some(v) = g.get(key) else { return Ok(None) };
    if !v.is_integer() {
        return Err(Error::WrongKeyType { key: key.into(), expected: ty, found: v.type_name().into() });
    }
    match v.as_i64().and_then(|x| T::try_from(x).ok()) {
        Some(x) => Ok(Some(x)),
        None => Err(Error::invalid(format!("metadata key '{key}'"), format!("{v:?} does not fit in {ty}"))),
    }
}

/// The split keys of a header, or `None` for a file without `split.count`.
/// `split.no` defaults to 0 when absent (as llama.cpp reads a first shard).
pub fn split_keys(g: &Gguf) -> Result<Option<SplitKeys>> {
    let Some(count) = int_key::<u16>(g, SPLIT_COUNT, "u16")? else { return Ok(None) };
    let no = int_key::<u16>(g, SPLIT_NO, "u16")?.unwrap_or(0);
    let tensors = int_key::<i32>(g, SPLIT_TENSORS_COUNT, "i32")?
        .map(|t| {
            u32::try_from(t).map_err(|_| {
                Error::invalid(format!("metadata key '{SPLIT_TENSORS_COUNT}'"), format!("{t} is negative"))
            })
        })
        .transpose()?;
    Ok(Some(SplitKeys { no, count, tensors }))
}

/// How many shards the set whose header this is has, when it is part of a
/// set of more than one file (`split.count` > 1), else `None` (a plain or
/// merged file, or a "set" of one file, which loads as it is).
pub fn set_count(g: &Gguf) -> Result<Option<u16>> {
    Ok(split_keys(g)?.map(|k| k.count).filter(|&c| c > 1))
}

/// Dims as ggml writes them (`ggml_n_dims`): trailing 1s dropped, at least one.
fn ggml_dims(dims: &[u64]) -> &[u64] {
    let n = dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    &dims[..n.min(dims.len())]
}

fn padded(size: u64, what: &str) -> Result<u64> {
    size.checked_next_multiple_of(SPLIT_ALIGNMENT).ok_or_else(|| Error::overflow(format!("size of {what}")))
}

/// Sets `key` as ggml's `gguf_set_val_*` does: an existing entry is removed
/// and the new one appended.
fn set_kv(kvs: &mut Vec<(String, Value)>, key: &str, v: Value) {
    kvs.retain(|(k, _)| k != key);
    kvs.push((key.to_string(), v));
}

fn header_bytes(kvs: &[(String, Value)], tensors: &[&TensorInfo]) -> Result<Vec<u8>> {
    let entries: Vec<TensorEntry<'_>> = tensors
        .iter()
        .map(|t| TensorEntry { name: &t.name, dims: ggml_dims(&t.dims), ty: t.ty, size: t.size })
        .collect();
    let mut out = Vec::new();
    write_header(kvs, &entries, SPLIT_ALIGNMENT, &mut |b: &[u8]| {
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok(out)
}

/// One shard of a set, as its header was read.
#[derive(Debug, Clone)]
pub struct Shard {
    /// The file's name, for messages.
    pub name: String,
    /// Its parsed header.
    pub gguf: Gguf,
    /// The file's length in bytes.
    pub file_len: u64,
}

/// One tensor's data: `len` bytes at `src` in shard `shard` go to `dst` in
/// the merged file, followed by `pad` zero bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub shard: usize,
    pub src: u64,
    pub dst: u64,
    pub len: u64,
    pub pad: u64,
}

/// How a set of shards becomes one GGUF, byte for byte what
/// `llama-gguf-split --merge` writes: [`header`](Self::header) at offset 0,
/// then every [`Piece`] (together they cover the whole file, in order).
#[derive(Debug, Clone)]
pub struct MergePlan {
    header: Vec<u8>,
    pieces: Vec<Piece>,
    len: u64,
    names: Vec<String>,
}

/// Where an error in shard `i` of `n` is said to be.
fn at_shard(i: usize, n: usize, name: &str) -> String {
    format!("split shard {} of {n} '{name}'", i + 1)
}

/// Wraps an error met while reading shard `i` (0-based) of `n` so that its
/// message names the shard. [`Error::Truncated`] passes unchanged (a caller
/// reading a header piecewise needs it as it is).
pub fn in_shard(e: Error, i: usize, n: usize, name: &str) -> Error {
    match e {
        Error::Truncated { .. } => e,
        e => Error::invalid(at_shard(i, n, name), e.to_string()),
    }
}

impl MergePlan {
    /// Checks that `shards` are the whole set, in order, and computes the
    /// merged layout. Every key, count and size is checked: the first shard
    /// says how many shards there are (`split.count` > 1) and how many
    /// tensors (`split.tensors.count`); every shard must have `split.no` equal
    /// to its place and the same `split.count` (and `split.tensors.count`
    /// where present); the tensors must add up, with no name twice.
    pub fn new(shards: &[Shard]) -> Result<MergePlan> {
        let first = shards.first().ok_or_else(|| Error::invalid("split set", "no shards given"))?;
        let n = shards.len();
        let keys0 = split_keys(&first.gguf)
            .map_err(|e| in_shard(e, 0, n, &first.name))?
            .filter(|k| k.count > 1)
            .ok_or_else(|| {
                Error::invalid(
                    at_shard(0, n, &first.name),
                    format!("has no '{SPLIT_COUNT}' above 1: it is not the first shard of a split set"),
                )
            })?;
        if usize::from(keys0.count) != n {
            return Err(Error::invalid(
                at_shard(0, n, &first.name),
                format!("'{SPLIT_COUNT}' is {} but {n} shards were given", keys0.count),
            ));
        }
        let total = keys0.tensors.ok_or_else(|| {
            Error::invalid(at_shard(0, n, &first.name), format!("has no '{SPLIT_TENSORS_COUNT}' key"))
        })?;
        if first.gguf.alignment != SPLIT_ALIGNMENT {
            return Err(Error::invalid(
                at_shard(0, n, &first.name),
                format!("general.alignment is {}; split sets are laid out at {SPLIT_ALIGNMENT}", first.gguf.alignment),
            ));
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut infos: Vec<&TensorInfo> = Vec::new();
        for (i, s) in shards.iter().enumerate() {
            let here = || at_shard(i, n, &s.name);
            let k = split_keys(&s.gguf).map_err(|e| in_shard(e, i, n, &s.name))?.ok_or_else(|| {
                Error::invalid(here(), format!("has no '{SPLIT_COUNT}' key: it is not a shard of a split set"))
            })?;
            if s.gguf.get(SPLIT_NO).is_none() {
                return Err(Error::invalid(here(), format!("has no '{SPLIT_NO}' key")));
            }
            if k.count != keys0.count {
                return Err(Error::invalid(
                    here(),
                    format!(
                        "'{SPLIT_COUNT}' is {} but the first shard's is {}: a shard of another set",
                        k.count, keys0.count
                    ),
                ));
            }
            if usize::from(k.no) != i {
                return Err(Error::invalid(
                    here(),
                    format!("'{SPLIT_NO}' is {} (shard {} of its set), expected {i}", k.no, u32::from(k.no) + 1),
                ));
            }
            if let Some(t) = k.tensors.filter(|&t| t != total) {
                return Err(Error::invalid(
                    here(),
                    format!("'{SPLIT_TENSORS_COUNT}' is {t} but the first shard's is {total}: a shard of another set"),
                ));
            }
            for t in &s.gguf.tensors {
                if let Some(&j) = seen.get(t.name.as_str()) {
                    return Err(Error::invalid(
                        here(),
                        format!("tensor '{}' is also in shard {} (a shard of another set?)", t.name, j + 1),
                    ));
                }
                seen.insert(&t.name, i);
                infos.push(t);
            }
        }
        if infos.len() as u64 != u64::from(total) {
            return Err(Error::invalid(
                format!("split set '{}'", first.name),
                format!("'{SPLIT_TENSORS_COUNT}' is {total} but the {n} shards hold {} tensors", infos.len()),
            ));
        }
        let mut kvs = first.gguf.metadata.clone();
        set_kv(&mut kvs, SPLIT_COUNT, Value::U16(0));
        let header = header_bytes(&kvs, &infos)?;
        let mut at = header.len() as u64;
        let mut pieces = Vec::with_capacity(infos.len());
        for (i, s) in shards.iter().enumerate() {
            for t in &s.gguf.tensors {
                let p = padded(t.size, &format!("tensor '{}'", t.name))?;
                pieces.push(Piece { shard: i, src: t.offset, dst: at, len: t.size, pad: p - t.size });
                at = at.checked_add(p).ok_or_else(|| Error::overflow("merged split set size"))?;
            }
        }
        Ok(MergePlan { header, pieces, len: at, names: shards.iter().map(|s| s.name.clone()).collect() })
    }

    /// The merged file's header: everything before the first tensor's data.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Every tensor's data, in the merged file's order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The merged file's length.
    pub fn merged_len(&self) -> u64 {
        self.len
    }

    /// The shards' names, in order.
    pub fn shard_names(&self) -> &[String] {
        &self.names
    }

    /// Fills `out` (exactly [`merged_len`](Self::merged_len) bytes, not
    /// necessarily zeroed) with the header and every piece's zero padding;
    /// what is left is each piece's data, to be read into
    /// `out[dst..dst + len]`.
    pub fn place_header(&self, out: &mut [u8]) -> Result<()> {
        if out.len() as u64 != self.len {
            return Err(Error::invalid(
                "merged split set buffer",
                format!("{} bytes, expected {}", out.len(), self.len),
            ));
        }
        out[..self.header.len()].copy_from_slice(&self.header);
        for p in &self.pieces {
            let (s, e) = (p.dst + p.len, p.dst + p.len + p.pad);
            out[s as usize..e as usize].fill(0);
        }
        Ok(())
    }

    /// Copies piece `p` out of its shard's whole file `shard` into `out`.
    pub fn place_piece(&self, out: &mut [u8], p: &Piece, shard: &[u8]) -> Result<()> {
        let name = self.names.get(p.shard).map_or("?", String::as_str);
        let src = usize::try_from(p.src)
            .ok()
            .zip(usize::try_from(p.len).ok())
            .and_then(|(s, l)| shard.get(s..s.checked_add(l)?))
            .ok_or_else(|| {
                Error::invalid(
                    format!("split shard '{name}'"),
                    format!("{} bytes at offset {} lie past its end ({} bytes)", p.len, p.src, shard.len()),
                )
            })?;
        let dst = usize::try_from(p.dst)
            .ok()
            .and_then(|d| out.get_mut(d..d.checked_add(src.len())?))
            .ok_or_else(|| Error::invalid("merged split set buffer", "too short"))?;
        dst.copy_from_slice(src);
        Ok(())
    }

    /// The merged file in memory, from the shards' whole files.
    pub fn merge(&self, shards: &[&[u8]]) -> Result<Vec<u8>> {
        if shards.len() != self.names.len() {
            return Err(Error::invalid(
                "split set",
                format!("{} files given for {} shards", shards.len(), self.names.len()),
            ));
        }
        let len = usize::try_from(self.len).map_err(|_| Error::overflow("merged split set size"))?;
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(|_| Error::OutOfMemory { what: "merged split set".into(), bytes: self.len })?;
        out.resize(len, 0);
        self.place_header(&mut out)?;
        for p in &self.pieces {
            self.place_piece(&mut out, p, shards[p.shard])?;
        }
        Ok(out)
    }
}

/// Where `plan_split` ends a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBy {
    /// At most this many bytes of tensor data per shard (each tensor counted
    /// padded to 32; the header is not counted, as in `--split-max-size`).
    Bytes(u64),
    /// At most this many tensors per shard (`--split-max-tensors`).
    Tensors(usize),
}

/// One shard to write: [`header`](Self::header), then each tensor's bytes
/// (`len` at `src` in the input file) followed by zeros up to a multiple of 32.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub header: Vec<u8>,
    /// (offset in the input file, length) of each tensor's data, in order.
    pub tensors: Vec<(u64, u64)>,
    /// The shard file's length.
    pub len: u64,
}

impl ShardPlan {
    /// The shard in memory, from the whole input file.
    pub fn to_bytes(&self, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = self.header.clone();
        for &(src, len) in &self.tensors {
            let data = usize::try_from(src)
                .ok()
                .zip(usize::try_from(len).ok())
                .and_then(|(s, l)| input.get(s..s.checked_add(l)?))
                .ok_or_else(|| Error::truncated("tensor data", src, len, input.len() as u64))?;
            out.extend_from_slice(data);
            out.resize(out.len().next_multiple_of(SPLIT_ALIGNMENT as usize), 0);
        }
        Ok(out)
    }
}

/// Cuts a GGUF into the shards `llama-gguf-split --split` writes: the same
/// names, keys, order and layout. Refused: a file that is itself a shard of
/// a set, a file with no tensors, an alignment other than 32 (which
/// `gguf-split` cannot lay out either), a tensor larger than the size limit
/// on its own (`gguf-split` would write a shard over the limit), and more
/// than 65535 shards.
pub fn plan_split(g: &Gguf, by: SplitBy) -> Result<Vec<ShardPlan>> {
    if let Some(k) = split_keys(g)?.filter(|k| k.count > 1) {
        return Err(Error::invalid(
            "split input",
            format!("it is shard {} of a set of {}: split the merged file", u32::from(k.no) + 1, k.count),
        ));
    }
    if g.tensors.is_empty() {
        return Err(Error::invalid("split input", "it has no tensors"));
    }
    if g.alignment != SPLIT_ALIGNMENT {
        return Err(Error::invalid(
            "split input",
            format!("general.alignment is {}; llama.cpp's split files are laid out at {SPLIT_ALIGNMENT}", g.alignment),
        ));
    }
    let n_tensors = i32::try_from(g.tensors.len()).map_err(|_| {
        Error::invalid("split input", format!("{} tensors do not fit in split.tensors.count", g.tensors.len()))
    })?;
    let mut groups: Vec<Vec<&TensorInfo>> = Vec::new();
    let mut cur: Vec<&TensorInfo> = Vec::new();
    let mut cur_bytes = 0u64;
    for (i, t) in g.tensors.iter().enumerate() {
        let p = padded(t.size, &format!("tensor '{}'", t.name))?;
        let start_new = match by {
            SplitBy::Bytes(max) => {
                if p > max {
                    return Err(Error::invalid(
                        format!("tensor '{}'", t.name),
                        format!("{} bytes alone are more than the {max} a shard may hold", t.size),
                    ));
                }
                let next = cur_bytes.checked_add(p).ok_or_else(|| Error::overflow("shard size"))?;
                if next > max {
                    cur_bytes = p;
                    true
                } else {
                    cur_bytes = next;
                    false
                }
            }
            SplitBy::Tensors(0) => return Err(Error::invalid("split", "at most 0 tensors per shard")),
            SplitBy::Tensors(k) => i > 0 && i % k == 0,
        };
        if start_new && !cur.is_empty() {
            groups.push(core::mem::take(&mut cur));
        }
        cur.push(t);
    }
    groups.push(cur);
    if groups.len() > MAX_SHARDS {
        return Err(Error::invalid("split", format!("{} shards; a set has at most {MAX_SHARDS}", groups.len())));
    }
    let count = groups.len() as u16;
    let mut out = Vec::with_capacity(groups.len());
    for (no, tensors) in groups.iter().enumerate() {
        let mut kvs = if no == 0 { g.metadata.clone() } else { Vec::new() };
        set_kv(&mut kvs, SPLIT_NO, Value::U16(no as u16));
        set_kv(&mut kvs, SPLIT_COUNT, Value::U16(0));
        set_kv(&mut kvs, SPLIT_TENSORS_COUNT, Value::I32(n_tensors));
        set_kv(&mut kvs, SPLIT_COUNT, Value::U16(count));
        let header = header_bytes(&kvs, tensors)?;
        let mut len = header.len() as u64;
        for t in tensors {
            len = len.checked_add(padded(t.size, &t.name)?).ok_or_else(|| Error::overflow("shard size"))?;
        }
        out.push(ShardPlan { header, tensors: tensors.iter().map(|t| (t.offset, t.size)).collect(), len });
    }
    Ok(out)
}

/// The largest header any shard of a split of `g` can have: all metadata,
/// every tensor info and the three split keys, padded. With it a caller
/// can choose a data limit that keeps every shard under a file size limit.
pub fn max_shard_header(g: &Gguf) -> Result<u64> {
    let mut kvs = g.metadata.clone();
    set_kv(&mut kvs, SPLIT_NO, Value::U16(0));
    set_kv(&mut kvs, SPLIT_TENSORS_COUNT, Value::I32(0));
    set_kv(&mut kvs, SPLIT_COUNT, Value::U16(0));
    let all: Vec<&TensorInfo> = g.tensors.iter().collect();
    Ok(header_bytes(&kvs, &all)?.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(shard_file_name("a/m", 1, 3), "a/m-00002-of-00003.gguf");
        let n = parse_shard_name("model-q4-00001-of-00003.gguf").unwrap();
        assert_eq!((n.prefix, n.no, n.count, n.ext), ("model-q4", 0, 3, ".gguf"));
        assert_eq!(n.sibling(2), "model-q4-00003-of-00003.gguf");
        let n = parse_shard_name("M-00002-OF-00002.GGUF").unwrap();
        assert_eq!((n.prefix, n.no, n.count), ("M", 1, 2));
        assert_eq!(n.sibling(0), "M-00001-of-00002.GGUF");
        for bad in [
            "-00001-of-00003.gguf",
            "m-00000-of-00003.gguf",
            "m-00004-of-00003.gguf",
            "m-0001-of-00003.gguf",
            "m-00001-of-00003.bin",
            "m-00001_of-00003.gguf",
            "m-000a1-of-00003.gguf",
            "m-00001-of-99999.gguf",
            "model.gguf",
            "ü-00001-of-0000é.gguf",
        ] {
            assert_eq!(parse_shard_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn dims_as_ggml_writes_them() {
        assert_eq!(ggml_dims(&[64, 1]), &[64]);
        assert_eq!(ggml_dims(&[1, 1]), &[1]);
        assert_eq!(ggml_dims(&[1, 64, 1]), &[1, 64]);
        assert_eq!(ggml_dims(&[3, 4]), &[3, 4]);
    }
}
