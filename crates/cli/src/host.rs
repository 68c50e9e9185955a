//! Host glue: reading model files, the terminal console, the clock.

use ::host::hugebuf::HugeBuf;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use engine::load::Blob;
use engine::model::Model;
use engine::tokenizer::Tokenizer;
use repl::{Console, Key, KeyDecoder, PlatformInfo, RawKey};

/// Reads a whole file (a text, a settings file).
/// Reads a text input (settings, messages, a text to score) of at most
/// `max` bytes, refusing what is not a regular file (a device would be read
/// until memory runs out, a FIFO would block) and what is larger.
pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    let m = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !m.is_file() {
        bail!("{} is not a regular file (a folder, device, FIFO or socket)", path.display());
    }
    if m.len() > max {
        bail!("{} is {} bytes, more than the {max} this input may have", path.display(), m.len());
    }
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = Vec::new();
    // The file may grow between the check and the read: read at most max + 1.
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, max + 1), &mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > max {
        bail!("{} is more than the {max} bytes this input may have", path.display());
    }
    Ok(buf)
}

/// The largest settings file (`--config`), as the UEFI app's limit.
pub const MAX_SETTINGS: u64 = 1 << 20;
/// The largest messages file (`lbm template --messages`).
pub const MAX_MESSAGES: u64 = 64 << 20;
/// The largest text `lbm perplexity -f` scores.
pub const MAX_TEXT: u64 = 1 << 30;

/// Opens a model or tokenizer file and gives its length, refusing anything
/// that is not a regular file: a device such as /dev/zero would be read
/// until memory runs out, a FIFO would block.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    // Looked at before opening: opening a FIFO blocks until a writer comes.
    let m = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if m.is_dir() {
        bail!("{} is a folder, not a model file", path.display());
    }
    if !m.is_file() {
        bail!("{} is not a regular file (a device, FIFO or socket): give a model file", path.display());
    }
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let m = f.metadata().with_context(|| format!("reading {}", path.display()))?;
    if !m.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    Ok((f, m.len()))
}

/// Reads the first `n` bytes of `f` after the `buf.len()` already read.
fn read_up_to(f: &mut std::fs::File, buf: &mut Vec<u8>, n: u64, path: &Path) -> Result<()> {
    let more = n.saturating_sub(buf.len() as u64);
    f.take(more).read_to_end(buf).with_context(|| format!("reading {}", path.display()))?;
    if (buf.len() as u64) < n {
        bail!("{} became shorter while it was read", path.display());
    }
    Ok(())
}

/// Reads a whole model or tokenizer file (a regular file only).
pub fn read_model_bytes(path: &Path) -> Result<Vec<u8>> {
    let (mut f, len) = open_regular(path)?;
    let cap = usize::try_from(len).with_context(|| format!("{} is too large for this machine", path.display()))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(cap).with_context(|| format!("out of memory: {} needs {len} bytes", path.display()))?;
    read_up_to(&mut f, &mut buf, len, path)?;
    Ok(buf)
}

/// The first read of [`read_header`].
const HEADER_READ: u64 = 1 << 20;

/// Reads only as much of a model file as `parse(prefix, file_len)` needs:
/// 1 MiB, then more while it reports [`engine::Error::Truncated`] at an
/// offset inside the file (never past the file's length). Returns what
/// `parse` returned, the bytes read and the file's length.
pub fn read_header<T>(
    path: &Path,
    mut parse: impl FnMut(&[u8], u64) -> engine::Result<T>,
) -> Result<(T, Vec<u8>, u64)> {
    let (mut f, len) = open_regular(path)?;
    let mut buf = Vec::new();
    let mut want = len.min(HEADER_READ);
    loop {
        read_up_to(&mut f, &mut buf, want, path)?;
        let e = match parse(&buf, len) {
            Ok(v) => return Ok((v, buf, len)),
            Err(e) => e,
        };
        match &e {
            engine::Error::Truncated { offset, need, .. }
                if (buf.len() as u64) < len && offset.saturating_add(*need) <= len =>
            {
                // At least what was asked for, and at least twice as much as
                // before: a large tokenizer takes a few reads, not thousands.
                want = offset.saturating_add(*need).max(want.saturating_mul(2)).min(len);
            }
            _ => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// A split GGUF set (llama.cpp's `NAME-00001-of-0000N.gguf` shards), found
/// from its first shard, every shard's header checked, and how it merges.
pub struct SplitSet {
    /// The shards, in order.
    pub paths: Vec<PathBuf>,
    /// The merged file's layout (`engine::gguf::split::MergePlan`).
    pub plan: engine::gguf::split::MergePlan,
    /// The shards' sizes on disk, in order.
    pub file_lens: Vec<u64>,
}

/// When `path` is the first shard of a split GGUF set (`split.count` > 1),
/// finds the other shards beside it (named as llama.cpp names them) and
/// checks every shard's header; `None` for any other file. A later shard,
/// a missing shard or one that does not belong is an error naming it.
pub fn find_split_set(path: &Path) -> Result<Option<SplitSet>> {
    use engine::gguf::split::{self, MergePlan, Shard};
    let (mut f, len) = open_regular(path)?;
    let mut magic = Vec::new();
    read_up_to(&mut f, &mut magic, len.min(4), path)?;
    if magic != b"GGUF" {
        return Ok(None);
    }
    let (g, _, len) = read_header(path, engine::gguf::Gguf::parse)?;
    let keys = split::split_keys(&g).with_context(|| format!("reading {}", path.display()))?;
    let Some(keys) = keys.filter(|k| k.count > 1) else { return Ok(None) };
    let n = usize::from(keys.count);
    let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let parsed = split::parse_shard_name(file);
    if keys.no != 0 {
        let first = parsed.map(|p| p.sibling(0)).unwrap_or_else(|| "its first shard".into());
        bail!(
            "{} is shard {} of a split set of {n} (split.no {}): give the first shard, {first}",
            path.display(),
            u32::from(keys.no) + 1,
            keys.no
        );
    }
    let name = match parsed {
        Some(p) if p.no == 0 && p.count == keys.count => p,
        _ => bail!(
            "{} is the first shard of a split set of {n} (split.count {n}), but its name does not end in \
             -00001-of-{n:05}.gguf, so the other shards cannot be found: rename the shards as llama.cpp's \
             gguf-split names them (PREFIX-00001-of-{n:05}.gguf ...)",
            path.display()
        ),
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut shards = vec![Shard { name: file.to_string(), gguf: g, file_len: len }];
    let mut paths = vec![path.to_path_buf()];
    for i in 1..n {
        let p = dir.join(name.sibling(i as u16));
        if !p.exists() {
            bail!("split shard {} of {n} of {} is missing: {} does not exist", i + 1, path.display(), p.display());
        }
        let (g, _, len) = read_header(&p, engine::gguf::Gguf::parse)
            .with_context(|| format!("reading split shard {} of {n}", i + 1))?;
        shards.push(Shard { name: name.sibling(i as u16), gguf: g, file_len: len });
        paths.push(p);
    }
    let file_lens = shards.iter().map(|s| s.file_len).collect();
    let plan = MergePlan::new(&shards).with_context(|| format!("reading the split set {}", path.display()))?;
    Ok(Some(SplitSet { paths, plan, file_lens }))
}

/// Reads a split set's shards into `out` (the merged file's length): the
/// merged header, then each tensor's data read from its shard into place.
pub fn read_split_into(set: &SplitSet, out: &mut [u8]) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    set.plan.place_header(out)?;
    let mut open: Option<(usize, std::fs::File)> = None;
    for p in set.plan.pieces() {
        let path = &set.paths[p.shard];
        if open.as_ref().map(|(i, _)| *i) != Some(p.shard) {
            open = Some((p.shard, open_regular(path)?.0));
        }
        let f = &mut open.as_mut().expect("opened above").1;
        let (d, l) = (p.dst as usize, p.len as usize);
        f.seek(SeekFrom::Start(p.src)).with_context(|| format!("reading {}", path.display()))?;
        f.read_exact(&mut out[d..d + l]).with_context(|| {
            format!("reading {} bytes at offset {} of {} (did it change?)", p.len, p.src, path.display())
        })?;
    }
    Ok(())
}

/// Copies `len` bytes at `offset` of `src` to `w`, in 4 MiB pieces.
fn copy_range(src: &mut std::fs::File, path: &Path, offset: u64, len: u64, w: &mut dyn Write) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    src.seek(SeekFrom::Start(offset)).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; (4usize << 20).min(usize::try_from(len).unwrap_or(usize::MAX)).max(1)];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        src.read_exact(&mut buf[..n]).with_context(|| {
            format!("reading {len} bytes at offset {offset} of {} (did it change?)", path.display())
        })?;
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn zeros(w: &mut dyn Write, n: u64) -> Result<()> {
    const Z: [u8; 64] = [0; 64];
    let mut left = n;
    while left > 0 {
        let k = left.min(64) as usize;
        w.write_all(&Z[..k])?;
        left -= k as u64;
    }
    Ok(())
}

/// The path of shard `no` (0-based) of `count` for the prefix `prefix`:
/// `PREFIX-00002-of-00003.gguf`, as llama.cpp names shards.
pub fn shard_path(prefix: &Path, no: u16, count: u16) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(format!("-{:05}-of-{:05}.gguf", u32::from(no) + 1, count));
    PathBuf::from(s)
}

/// Splits the GGUF `input` as llama.cpp's `llama-gguf-split --split` does
/// (see `engine::gguf::split::plan_split`) into `PREFIX-00001-of-0000N.gguf`
/// .. beside `prefix`, streaming the tensor data; every shard is written
/// through `outfile` and renamed into place only once all are complete.
/// Returns each shard's path and length.
pub fn write_split(input: &Path, prefix: &Path, by: engine::gguf::split::SplitBy) -> Result<Vec<(PathBuf, u64)>> {
    let (g, _, _) = read_header(input, engine::gguf::Gguf::parse)?;
    let plans = engine::gguf::split::plan_split(&g, by).with_context(|| format!("splitting {}", input.display()))?;
    let n = plans.len() as u16;
    let paths: Vec<PathBuf> = (0..n).map(|i| shard_path(prefix, i, n)).collect();
    // Every output is checked and created first: a bad one fails before the work.
    let outs = paths.iter().map(|p| outfile::Output::create(p)).collect::<Result<Vec<_>>>()?;
    let (mut src, _) = open_regular(input)?;
    let mut written = Vec::new();
    for ((plan, out), path) in plans.iter().zip(outs).zip(&paths) {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, out.file());
        let wrote: Result<()> = (|| {
            w.write_all(&plan.header)?;
            for &(offset, len) in &plan.tensors {
                copy_range(&mut src, input, offset, len, &mut w)?;
                zeros(&mut w, len.next_multiple_of(engine::gguf::split::SPLIT_ALIGNMENT) - len)?;
            }
            Ok(w.flush()?)
        })();
        drop(w);
        // On an error, dropping the outputs removes every temporary file.
        wrote.with_context(|| format!("writing {}", path.display()))?;
        written.push((out, path.clone(), plan.len));
    }
    let mut done = Vec::new();
    for (out, path, len) in written {
        out.commit()?;
        done.push((path, len));
    }
    Ok(done)
}

/// Writes the split set whose first shard is `first` merged into `output`,
/// as `llama-gguf-split --merge` does. Returns the merged length.
pub fn write_merged(first: &Path, output: &Path) -> Result<u64> {
    let out = outfile::Output::create(output)?;
    let set = find_split_set(first)?.with_context(|| {
        format!("{} is not the first shard of a split set (it has no split.count above 1)", first.display())
    })?;
    let mut open: Option<(usize, std::fs::File)> = None;
    out.write_with(1 << 20, |w| {
        w.write_all(set.plan.header())?;
        for p in set.plan.pieces() {
            let path = &set.paths[p.shard];
            if open.as_ref().map(|(i, _)| *i) != Some(p.shard) {
                open = Some((p.shard, open_regular(path)?.0));
            }
            let f = &mut open.as_mut().expect("opened above").1;
            copy_range(f, path, p.src, p.len, w)?;
            zeros(w, p.pad)?;
        }
        Ok(())
    })
    .with_context(|| format!("writing {}", output.display()))?;
    Ok(set.plan.merged_len())
}

/// How a model file gets into memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadMode {
    /// Map the file copy-on-write (`host::mapfile`): nothing is copied but
    /// the matrices the engine repacks; start-up costs what reading the page
    /// cache's pages costs, and the weights sit on 4 KiB pages. The file
    /// must not be changed or truncated while the model runs (see
    /// `host::mapfile`). A split set is read as with [`LoadMode::Read`].
    #[default]
    Map,
    /// Read the file into memory on transparent huge pages
    /// (`host::hugebuf`, `--no-mmap`): a copy of the whole file, and faster
    /// decoding where the TLB is the limit.
    Read,
}

impl LoadMode {
    /// `--no-mmap` given or not.
    pub fn from_no_mmap(no_mmap: bool) -> LoadMode {
        if no_mmap {
            LoadMode::Read
        } else {
            LoadMode::Map
        }
    }
}

/// Gets a model file's bytes for the engine: mapped or read (see
/// [`LoadMode`]). The first shard of a split GGUF set reads the whole set,
/// merged, into huge pages whatever the mode. Devices, FIFOs and folders
/// are refused; the bytes are exactly the file's length when opened, which
/// the loader checks every tensor against (a file shorter than its header
/// says is an error, not a crash).
pub fn read_model(path: &Path, mode: LoadMode) -> Result<Blob> {
    Ok(read_model_as(path, mode)?.0)
}

/// [`read_model`], and how the bytes were got: [`LoadMode::Read`] for a
/// split set or where mapping is not available, whatever `mode` asked.
pub fn read_model_as(path: &Path, mode: LoadMode) -> Result<(Blob, LoadMode)> {
    if let Some(set) = find_split_set(path)? {
        let len = set.plan.merged_len();
        let n = usize::try_from(len).with_context(|| format!("{} is too large for this machine", path.display()))?;
        let mut buf =
            HugeBuf::zeroed(n).with_context(|| format!("out of memory: {} needs {len} bytes", path.display()))?;
        read_split_into(&set, buf.as_mut())?;
        return Ok((Box::new(buf), LoadMode::Read));
    }
    let (mut f, len) = open_regular(path)?;
    #[cfg(unix)]
    if mode == LoadMode::Map {
        let m = ::host::mapfile::MappedFile::map(&f, len).with_context(|| format!("mapping {}", path.display()))?;
        return Ok((Box::new(m), LoadMode::Map));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let len = usize::try_from(len).with_context(|| format!("{} is too large for this machine", path.display()))?;
    let mut buf =
        HugeBuf::zeroed(len).with_context(|| format!("out of memory: {} needs {len} bytes", path.display()))?;
    f.read_exact(buf.as_mut()).with_context(|| format!("reading {}", path.display()))?;
    Ok((Box::new(buf), LoadMode::Read))
}

/// Finds the tokenizer for a llama2.c checkpoint: NAME.tok.bin, tokenizer.bin
/// or tok*.bin next to it.
pub fn find_tokenizer(model: &Path) -> Option<PathBuf> {
    let dir = model.parent().unwrap_or(Path::new("."));
    let stem = model.file_stem()?.to_string_lossy().to_string();
    let named = dir.join(format!("{stem}.tok.bin"));
    if named.is_file() {
        return Some(named);
    }
    let tb = dir.join("tokenizer.bin");
    if tb.is_file() {
        return Some(tb);
    }
    let mut toks: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            n.starts_with("tok") && n.ends_with(".bin") && p.is_file()
        })
        .collect();
    toks.sort();
    toks.into_iter().next()
}

/// A loaded model and, when one could be found, its tokenizer.
pub struct Loaded {
    pub model: Model,
    /// The tokenizer, or why there is none (token ids still work).
    pub tokenizer: std::result::Result<Tokenizer, String>,
}

impl Loaded {
    /// The tokenizer, for commands that need text; a clear error otherwise.
    pub fn need_tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Loads a model and its tokenizer (see [`load_any`]); fails when there is
/// no tokenizer.
pub fn load(model: &Path, tokenizer: Option<&Path>, mode: LoadMode) -> Result<(Model, Tokenizer)> {
    let l = load_any(model, tokenizer, mode)?;
    match l.tokenizer {
        Ok(t) => Ok((l.model, t)),
        Err(e) => bail!("{e}"),
    }
}

/// Loads a model, and its tokenizer where there is one: GGUF files carry
/// theirs (or `tokenizer` names one: a GGUF, a tokenizer.bin, a GPT-2
/// folder); llama2.c files need a tokenizer.bin (found next to the model
/// when not given); llm.c files a GPT-2 folder. A model without a tokenizer
/// still loads: commands that work on token ids need none. `mode`: mapped
/// or read (see [`LoadMode`]).
pub fn load_any(model: &Path, tokenizer: Option<&Path>, mode: LoadMode) -> Result<Loaded> {
    use engine::load::FileKind;
    let blob = read_model(model, mode)?;
    let bytes = blob.bytes();
    let kind = engine::load::detect(bytes);
    let loading = || format!("loading {}", model.display());
    let tok: std::result::Result<Tokenizer, String> = match kind {
        FileKind::Gguf => match tokenizer {
            Some(t) => Ok(load_tokenizer(t, None).with_context(|| format!("reading the tokenizer {}", t.display()))?),
            None => match engine::gguf_model::tokenizer(bytes) {
                Ok(t) => Ok(t),
                Err(engine::Error::MissingKey(k)) if k.starts_with("tokenizer.ggml.model") => Err(format!(
                    "{} has no tokenizer (no tokenizer.ggml.model in its metadata): give one with -z (a GGUF that has one, \
                     a tokenizer.bin, or a folder with vocab.json + merges.txt), or convert the model from a Hugging Face \
                     folder that has tokenizer files; commands given token ids (--ids) need none",
                    model.display()
                )),
                Err(e) => return Err(e).with_context(loading),
            },
        },
        FileKind::Llama2c => {
            // A file that is no checkpoint at all is reported as such, before any tokenizer is looked for.
            engine::llama2c::Header::parse(bytes).with_context(loading)?;
            let tok_path = match tokenizer {
                Some(t) => t.to_path_buf(),
                None => find_tokenizer(model).with_context(|| {
                    format!("{} is a llama2.c checkpoint and no tokenizer was found next to it; pass -z tokenizer.bin", model.display())
                })?,
            };
            let tok_bytes = read_model_bytes(&tok_path)?;
            let h = engine::llama2c::Header::parse(bytes).with_context(loading)?;
            Ok(Tokenizer::from_llama2c(&tok_bytes, h.vocab_size).with_context(|| format!("reading {}", tok_path.display()))?)
        }
        FileKind::LlmC => {
            // GPT-2's tokenizer: encoder.json + vocab.bpe (or vocab.json + merges.txt).
            let dir = tokenizer.map(Path::to_path_buf).unwrap_or_else(|| model.parent().unwrap_or(Path::new(".")).to_path_buf());
            Ok(load_tokenizer(&dir, None).with_context(|| {
                format!("{} is an llm.c checkpoint: pass -z with a folder holding encoder.json + vocab.bpe", model.display())
            })?)
        }
    };
    let mut m = engine::load::load_model(blob).with_context(loading)?;
    if let Ok(t) = &tok {
        for w in t.warnings() {
            eprintln!("warning: {w}");
        }
        if t.vocab_size() != m.config.vocab_size {
            bail!(engine::Error::VocabMismatch { model: m.config.vocab_size, tokenizer: t.vocab_size() });
        }
    }
    if m.name.is_empty() {
        m.name = model.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    }
    Ok(Loaded { model: m, tokenizer: tok })
}

/// Loads only a tokenizer: from a model file (GGUF or llama2.c with its
/// tokenizer), a llama2.c tokenizer.bin, or a folder with encoder.json +
/// vocab.bpe (or vocab.json + merges.txt).
pub fn load_tokenizer(path: &Path, tokenizer: Option<&Path>) -> Result<Tokenizer> {
    if path.is_dir() {
        for (enc, merges) in [("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")] {
            if path.join(enc).is_file() && path.join(merges).is_file() {
                let t = engine::tokenizer::bpe::BpeTokenizer::from_encoder_json(
                    &read_model_bytes(&path.join(enc))?,
                    &read_model_bytes(&path.join(merges))?,
                )?;
                return Ok(Tokenizer::Bpe(t));
            }
        }
        bail!("{} has neither encoder.json + vocab.bpe nor vocab.json + merges.txt", path.display());
    }
    // Only the start of a model file: its header (GGUF: with the tokenizer).
    let (head, len) = {
        let (mut f, len) = open_regular(path)?;
        let mut head = Vec::new();
        read_up_to(&mut f, &mut head, len.min(4096), path)?;
        (head, len)
    };
    if head.starts_with(b"GGUF") {
        let (g, _, _) = read_header(path, engine::gguf::Gguf::parse)?;
        return Ok(engine::gguf_model::tokenizer_from(&g)?);
    }
    // A llama2.c checkpoint (its header parses and the size matches) or a tokenizer.bin.
    if let Ok(h) = engine::llama2c::Header::parse(&head) {
        if h.expected_len().ok() == Some(len) {
            let tp = match tokenizer {
                Some(t) => t.to_path_buf(),
                None => find_tokenizer(path).context("no tokenizer found next to the checkpoint; pass -z")?,
            };
            return Ok(Tokenizer::from_llama2c(&read_model_bytes(&tp)?, h.vocab_size)?);
        }
    }
    if len > MAX_TOKENIZER_BIN {
        bail!("{} is not a tokenizer or model file (and too large for a tokenizer.bin)", path.display());
    }
    let bytes = read_model_bytes(path)?;
    let n =
        llama2c_token_count(&bytes).with_context(|| format!("{} is not a tokenizer or model file", path.display()))?;
    Ok(Tokenizer::from_llama2c(&bytes, n)?)
}

/// The largest file read whole as a llama2.c tokenizer.bin (Llama 2's is
/// 0.4 MiB, a 256k-token vocabulary would take about 4 MiB).
const MAX_TOKENIZER_BIN: u64 = 256 << 20;

/// Counts the entries of a llama2.c tokenizer.bin (the format has no count).
fn llama2c_token_count(b: &[u8]) -> Option<usize> {
    let mut off = 4usize;
    let mut n = 0;
    while off < b.len() {
        let len = i32::from_le_bytes(b.get(off + 4..off + 8)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        off = off.checked_add(8 + len)?;
        if off > b.len() {
            return None;
        }
        n += 1;
    }
    (n > 0).then_some(n)
}

/// Ctrl-C during a reply stops it instead of killing the process.
pub fn install_interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    // If a handler is already installed (tests), keep going without one.
    let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
    flag
}

/// Ctrl-C, SIGTERM or SIGHUP while an output file is being written removes
/// its temporary file ([`outfile::remove_pending`]) and exits with 128 + the
/// signal's number. SIGINT goes through the `ctrlc` handler (built without
/// its `termination` feature, which would also turn SIGTERM into `lbm
/// chat`'s stop-the-reply key); SIGTERM and SIGHUP through a `signal-hook`
/// thread, installed only by the commands that write outputs.
pub fn remove_outputs_on_interrupt() {
    // If a handler is already installed (tests), keep going without one.
    let _ = ctrlc::set_handler(|| {
        outfile::remove_pending();
        std::process::exit(130);
    });
    use signal_hook::consts::{SIGHUP, SIGTERM};
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP]) {
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                outfile::remove_pending();
                std::process::exit(128 + sig);
            }
        });
    }
}

/// The terminal. On a tty the line discipline echoes and edits lines; from a
/// pipe the REPL echoes what it reads, like the UEFI console.
pub struct StdConsole {
    start: Instant,
    tty: bool,
    interrupt: Arc<AtomicBool>,
    /// Bytes read and not yet decoded, last first.
    pending: Vec<u8>,
    keys: KeyDecoder,
    pub platform: PlatformInfo,
    stdin: std::io::Stdin,
}

impl StdConsole {
    pub fn new(interrupt: Arc<AtomicBool>, platform: PlatformInfo) -> Self {
        StdConsole {
            start: Instant::now(),
            tty: std::io::stdin().is_terminal(),
            interrupt,
            pending: Vec::new(),
            keys: KeyDecoder::utf8(),
            platform,
            stdin: std::io::stdin(),
        }
    }

    fn byte(&mut self) -> Option<u8> {
        if self.pending.is_empty() {
            let mut buf = [0u8; 4096];
            let n = self.stdin.lock().read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            self.pending.extend_from_slice(&buf[..n]);
            self.pending.reverse();
        }
        self.pending.pop()
    }
}

impl Console for StdConsole {
    fn write_str(&mut self, s: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }

    fn read_key(&mut self) -> Option<Key> {
        loop {
            if let Some(k) = self.keys.pop() {
                return Some(k);
            }
            match self.byte() {
                Some(b) => self.keys.feed(RawKey::Char(u32::from(b))),
                None => {
                    // The input ended: what is pending is all there is.
                    self.keys.flush_partial();
                    return self.keys.pop();
                }
            }
        }
    }

    fn poll_key(&mut self) -> Option<Key> {
        self.interrupt.swap(false, Ordering::SeqCst).then_some(Key::CtrlC)
    }

    fn now_us(&mut self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn is_interactive(&self) -> bool {
        self.tty
    }

    fn platform(&self) -> PlatformInfo {
        self.platform.clone()
    }
}
