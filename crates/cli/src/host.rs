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

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads a model file into memory backed by transparent huge pages
/// (`host::hugebuf`): decoding streams every weight once per token.
pub fn read_model(path: &Path) -> Result<HugeBuf> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let len = f.metadata().with_context(|| format!("reading {}", path.display()))?.len();
    let len = usize::try_from(len).with_context(|| format!("{} is too large for this machine", path.display()))?;
    let mut buf =
        HugeBuf::zeroed(len).with_context(|| format!("out of memory: {} needs {len} bytes", path.display()))?;
    f.read_exact(buf.as_mut()).with_context(|| format!("reading {}", path.display()))?;
    Ok(buf)
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
pub fn load(model: &Path, tokenizer: Option<&Path>) -> Result<(Model, Tokenizer)> {
    let l = load_any(model, tokenizer)?;
    match l.tokenizer {
        Ok(t) => Ok((l.model, t)),
        Err(e) => bail!("{e}"),
    }
}

/// Loads a model, and its tokenizer where there is one: GGUF files carry
/// theirs (or `tokenizer` names one: a GGUF, a tokenizer.bin, a GPT-2
/// folder); llama2.c files need a tokenizer.bin (found next to the model
/// when not given); llm.c files a GPT-2 folder. A model without a tokenizer
/// still loads: commands that work on token ids need none.
pub fn load_any(model: &Path, tokenizer: Option<&Path>) -> Result<Loaded> {
    use engine::load::FileKind;
    let bytes = read_model(model)?;
    let kind = engine::load::detect(bytes.as_ref());
    let loading = || format!("loading {}", model.display());
    let tok: std::result::Result<Tokenizer, String> = match kind {
        FileKind::Gguf => match tokenizer {
            Some(t) => Ok(load_tokenizer(t, None).with_context(|| format!("reading the tokenizer {}", t.display()))?),
            None => match engine::gguf_model::tokenizer(bytes.as_ref()) {
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
            let tok_path = match tokenizer {
                Some(t) => t.to_path_buf(),
                None => find_tokenizer(model).with_context(|| {
                    format!("{} is a llama2.c checkpoint and no tokenizer was found next to it; pass -z tokenizer.bin", model.display())
                })?,
            };
            let tok_bytes = read_file(&tok_path)?;
            let h = engine::llama2c::Header::parse(bytes.as_ref()).with_context(loading)?;
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
    let blob: Blob = Box::new(bytes);
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
                    &read_file(&path.join(enc))?,
                    &read_file(&path.join(merges))?,
                )?;
                return Ok(Tokenizer::Bpe(t));
            }
        }
        bail!("{} has neither encoder.json + vocab.bpe nor vocab.json + merges.txt", path.display());
    }
    let bytes = read_file(path)?;
    if bytes.starts_with(b"GGUF") {
        return Ok(engine::gguf_model::tokenizer(&bytes)?);
    }
    // A llama2.c checkpoint (its header parses and the size matches) or a tokenizer.bin.
    if let Ok(h) = engine::llama2c::Header::parse(&bytes) {
        if h.expected_len().ok() == Some(bytes.len() as u64) {
            let tp = match tokenizer {
                Some(t) => t.to_path_buf(),
                None => find_tokenizer(path).context("no tokenizer found next to the checkpoint; pass -z")?,
            };
            return Ok(Tokenizer::from_llama2c(&read_file(&tp)?, h.vocab_size)?);
        }
    }
    let n =
        llama2c_token_count(&bytes).with_context(|| format!("{} is not a tokenizer or model file", path.display()))?;
    Ok(Tokenizer::from_llama2c(&bytes, n)?)
}

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

/// Ctrl-C while an output file is being written removes its temporary file
/// ([`outfile::remove_pending`]) and exits with status 130. Only SIGINT: the
/// ctrlc crate is built without its `termination` feature, which would also
/// turn SIGTERM into `lbm chat`'s stop-the-reply key.
pub fn remove_outputs_on_interrupt() {
    // If a handler is already installed (tests), keep going without one.
    let _ = ctrlc::set_handler(|| {
        outfile::remove_pending();
        std::process::exit(130);
    });
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
            keys: KeyDecoder::new(),
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
