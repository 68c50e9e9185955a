//! What every model file format provides ([`ModelFormat`]) and what its
//! header probe reports ([`ModelSummary`]). The formats live in
//! [`crate::gguf_model`], [`crate::llama2c`] and [`crate::llmc`];
//! [`crate::load`] picks one by the file's first bytes.

use alloc::string::String;

use crate::model::{Blob, Config, Model};
use crate::tokenizer::Tokenizer;
use crate::Result;

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

impl ModelSummary {
    /// What `cfg` says (dimensions, trained context) and the memory to run
    /// the model: `weight_bytes` plus the state of a default-sized context.
    /// The caller sets the parameter count, tensor type, file size and
    /// whether a tokenizer file is needed.
    pub(crate) fn of_config(cfg: &Config, format: &'static str, arch: String, weight_bytes: u64) -> Self {
        ModelSummary {
            format,
            arch,
            n_params: 0,
            tensor_type: String::new(),
            file_size: 0,
            mem_needed: weight_bytes + cfg.state_bytes(cfg.max_ctx.min(DEFAULT_CTX)),
            needs_tokenizer: true,
            dim: cfg.dim,
            n_layers: cfg.n_layers,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            vocab_size: cfg.vocab_size,
            n_ctx: cfg.max_ctx,
        }
    }
}

/// The context a session gets when the user gives none (clamped to the
/// model's trained context).
pub const DEFAULT_CTX: usize = 4096;

/// A model file format.
pub trait ModelFormat: Sync {
    /// Whether a file starting with `prefix` is in this format.
    fn sniff(&self, prefix: &[u8]) -> bool;
    /// Reads only the header. `prefix` is the start of the file and
    /// `file_len` its full size. If `prefix` is too short to hold the
    /// header, this returns [`crate::Error::Truncated`] with `offset + need`
    /// telling how many bytes to read; the caller reads that many and calls
    /// again.
    fn probe(&self, prefix: &[u8], file_len: u64) -> Result<ModelSummary>;
    /// Loads just the model (no tokenizer).
    fn load_model(&self, file: Blob) -> Result<Model>;
    /// Loads the model and its tokenizer, the file being read once: the
    /// tokenizer the file carries, or the one in `tokenizer` (the content of
    /// a separate tokenizer file) for a format that needs one.
    fn load(&self, file: Blob, tokenizer: Option<&[u8]>) -> Result<(Model, Tokenizer)>;
}
