//! Opening model files: format detection, a cheap header probe for menus,
//! and full loading into a runnable [`Model`] with its [`Tokenizer`].

use alloc::boxed::Box;
use alloc::string::String;

use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::Result;

/// The bytes of a model file, owned by the model once loaded. The host passes
/// a `Vec<u8>` or a memory map; the UEFI app passes its page allocation.
pub type Blob = Box<dyn AsRef<[u8]> + Send + Sync>;

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

/// Reads only the header of a model file. `prefix` is the start of the file
/// and `file_len` its full size. If `prefix` is too short to hold the header,
/// this returns [`crate::Error::Truncated`] with `offset + need` telling how
/// many bytes to read; the caller reads that many and calls again.
pub fn probe(prefix: &[u8], file_len: u64) -> Result<ModelSummary> {
    let _ = (prefix, file_len);
    todo!("lands with the loaders")
}

/// Loads a model for running. `tokenizer` is the content of a llama2.c
/// `tokenizer.bin` (needed for llama2.c checkpoints; GGUF carries its own).
pub fn load(file: Blob, tokenizer: Option<&[u8]>) -> Result<(Model, Tokenizer)> {
    let _ = (file, tokenizer);
    todo!("lands with the loaders")
}
