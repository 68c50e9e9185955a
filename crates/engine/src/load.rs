//! Opening model files: format detection, a cheap header probe for menus,
//! and full loading into a runnable [`Model`] with its [`Tokenizer`].

use alloc::boxed::Box;
use alloc::string::String;

use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::Result;

/// The bytes of a model file, owned by the model once loaded. The host passes
/// a `Vec<u8>`; the UEFI app passes its page allocation. Loading may rewrite
/// weight matrices in place (Q4_0 matrices are repacked into row octets), so
/// the bytes must be writable.
pub type Blob = Box<dyn BlobBytes>;

/// What a [`Blob`] holds: writable bytes that may move between threads.
pub trait BlobBytes: AsRef<[u8]> + AsMut<[u8]> + Send + Sync {}
impl<T: AsRef<[u8]> + AsMut<[u8]> + Send + Sync> BlobBytes for T {}

/// What a menu shows about a model file before loading it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    /// "gguf", "llama2c-v0", "llama2c-v1", "llama2c-v2", "llm.c".
    pub format: &'static str,
    /// "llama", "gpt2", ...
    pub arch: String,
    /// Number of weights.
    pub n_params: u64,
    /// The main tensor type: "F32", "F16", "Q8_0", ...
    pub tensor_type: String,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Bytes of memory needed to run it with the full context: the file,
    /// converted weights, KV cache and run state.
    pub mem_needed: u64,
    /// Whether a separate tokenizer file is needed (llama2.c checkpoints).
    pub needs_tokenizer: bool,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub n_ctx: usize,
}

/// The context a session gets when the user gives none (clamped to the
/// model's trained context).
pub const DEFAULT_CTX: usize = 4096;

/// The kind of file, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Gguf,
    Llama2c,
    /// llm.c GPT-2 checkpoint.
    LlmC,
}

/// Guesses the format from the first bytes: GGUF has a magic; anything else
/// is tried as a llama2.c checkpoint.
pub fn detect(prefix: &[u8]) -> FileKind {
    if prefix.starts_with(b"GGUF") {
        FileKind::Gguf
    } else if prefix.starts_with(&crate::llmc::MAGIC.to_le_bytes()) {
        FileKind::LlmC
    } else {
        FileKind::Llama2c
    }
}

/// Reads only the header of a model file. `prefix` is the start of the file
/// and `file_len` its full size. If `prefix` is too short to hold the header,
/// this returns [`crate::Error::Truncated`] with `offset + need` telling how
/// many bytes to read; the caller reads that many and calls again.
pub fn probe(prefix: &[u8], file_len: u64) -> Result<ModelSummary> {
    match detect(prefix) {
        FileKind::Llama2c => {
            if file_len == 0 {
                return Err(crate::Error::truncated("model file", 0, 28, 0));
            }
            let h = crate::llama2c::Header::parse(prefix)?;
            let cfg = h.config();
            cfg.validate()?;
            let expected = h.expected_len()?;
            if file_len < expected {
                return Err(crate::Error::truncated(
                    alloc::format!("{} weights", h.format_name()),
                    h.header_len as u64,
                    expected - h.header_len as u64,
                    file_len.saturating_sub(h.header_len as u64),
                ));
            }
            let n_params = count_params(&cfg, !h.shared_classifier);
            let n_ctx = cfg.max_ctx.min(DEFAULT_CTX);
            let weights_in_memory = if h.version == 2 { n_params * 4 } else { file_len };
            Ok(ModelSummary {
                format: h.format_name(),
                arch: String::from("llama"),
                n_params,
                tensor_type: String::from(if h.version == 2 { "Q8_0" } else { "F32" }),
                file_size: file_len,
                mem_needed: weights_in_memory + cfg.state_bytes(n_ctx),
                needs_tokenizer: true,
                dim: cfg.dim,
                n_layers: cfg.n_layers,
                n_heads: cfg.n_heads,
                n_kv_heads: cfg.n_kv_heads,
                vocab_size: cfg.vocab_size,
                n_ctx: cfg.max_ctx,
            })
        }
        FileKind::Gguf => crate::gguf_model::probe(prefix, file_len),
        FileKind::LlmC => {
            let h = crate::llmc::Header::parse(prefix)?;
            let cfg = h.config();
            cfg.validate()?;
            let expected = h.expected_len()?;
            if file_len < expected {
                return Err(crate::Error::truncated("llm.c parameters", 1024, expected - 1024, file_len.saturating_sub(1024)));
            }
            let n_ctx = cfg.max_ctx.min(DEFAULT_CTX);
            Ok(ModelSummary {
                format: "llm.c",
                arch: String::from("gpt2"),
                n_params: h.n_params(),
                tensor_type: String::from(h.dtype.name()),
                file_size: file_len,
                mem_needed: file_len + cfg.state_bytes(n_ctx),
                needs_tokenizer: true,
                dim: cfg.dim,
                n_layers: cfg.n_layers,
                n_heads: cfg.n_heads,
                n_kv_heads: cfg.n_kv_heads,
                vocab_size: cfg.vocab_size,
                n_ctx: cfg.max_ctx,
            })
        }
    }
}

/// Parameter count of a Llama-shaped model.
fn count_params(c: &crate::model::Config, untied: bool) -> u64 {
    let (d, h, q, kv) = (c.dim as u64, c.hidden_dim as u64, c.q_dim() as u64, c.kv_dim() as u64);
    let per_layer = 2 * d + d * q + 2 * d * kv + q * d + 3 * d * h;
    let v = c.vocab_size as u64 * d;
    v * if untied { 2 } else { 1 } + d + c.n_layers as u64 * per_layer
}

/// Loads just the model (no tokenizer).
pub fn load_model(file: Blob) -> Result<Model> {
    let kind = detect((*file).as_ref());
    match kind {
        FileKind::Llama2c => crate::llama2c::load(file),
        FileKind::Gguf => crate::gguf_model::load(file),
        FileKind::LlmC => crate::llmc::load(file),
    }
}

/// Loads a model for running. `tokenizer` is the content of a llama2.c
/// `tokenizer.bin` (needed for llama2.c checkpoints; GGUF carries its own).
/// Conversations run in [`crate::model::Session`]s made on the model.
pub fn load(file: Blob, tokenizer: Option<&[u8]>) -> Result<(Model, Tokenizer)> {
    let kind = detect((*file).as_ref());
    let tok = match (kind, tokenizer) {
        (FileKind::Llama2c, Some(t)) => {
            let h = crate::llama2c::Header::parse((*file).as_ref())?;
            Tokenizer::from_llama2c(t, h.vocab_size)?
        }
        (FileKind::Llama2c, None) => {
            return Err(crate::Error::Usage("a llama2.c checkpoint needs a tokenizer file (tokenizer.bin)".into()))
        }
        (FileKind::Gguf, _) => crate::gguf_model::tokenizer((*file).as_ref())?,
        (FileKind::LlmC, _) => {
            return Err(crate::Error::Usage(
                "an llm.c checkpoint has no tokenizer: use load_model and a GPT-2 tokenizer (encoder.json + vocab.bpe)".into(),
            ))
        }
    };
    let model = load_model(file)?;
    if tok.vocab_size() != model.config.vocab_size {
        return Err(crate::Error::VocabMismatch { model: model.config.vocab_size, tokenizer: tok.vocab_size() });
    }
    Ok((model, tok))
}
