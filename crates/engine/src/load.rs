//! Opening model files: format detection, a cheap header probe for menus,
//! and full loading into a runnable [`Model`] with its [`Tokenizer`]. Each
//! format is a [`ModelFormat`]; this module picks one by the file's first
//! bytes.

pub use crate::format::{ModelFormat, ModelSummary, DEFAULT_CTX};
pub use crate::model::{Blob, BlobBytes};

use crate::gguf_model::GgufFormat;
use crate::llama2c::Llama2cFormat;
use crate::llmc::LlmcFormat;
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::Result;

/// The kind of file, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Gguf,
    Llama2c,
    /// llm.c GPT-2 checkpoint.
    LlmC,
}

impl FileKind {
    /// The format's loader.
    pub fn format(self) -> &'static dyn ModelFormat {
        match self {
            FileKind::Gguf => &GgufFormat,
            FileKind::Llama2c => &Llama2cFormat,
            FileKind::LlmC => &LlmcFormat,
        }
    }
}

/// Guesses the format from the first bytes: GGUF and llm.c have magics;
/// anything else is tried as a llama2.c checkpoint.
pub fn detect(prefix: &[u8]) -> FileKind {
    [FileKind::Gguf, FileKind::LlmC].into_iter().find(|k| k.format().sniff(prefix)).unwrap_or(FileKind::Llama2c)
}

/// Reads only the header of a model file (see [`ModelFormat::probe`]).
pub fn probe(prefix: &[u8], file_len: u64) -> Result<ModelSummary> {
    detect(prefix).format().probe(prefix, file_len)
}

/// Loads just the model (no tokenizer).
pub fn load_model(file: Blob) -> Result<Model> {
    detect(file.bytes()).format().load_model(file)
}

/// Loads a model for running. `tokenizer` is the content of a llama2.c
/// `tokenizer.bin` (needed for llama2.c checkpoints; GGUF carries its own).
/// Conversations run in [`crate::model::Session`]s made on the model.
pub fn load(file: Blob, tokenizer: Option<&[u8]>) -> Result<(Model, Tokenizer)> {
    let (model, tok) = detect(file.bytes()).format().load(file, tokenizer)?;
    if tok.vocab_size() != model.config.vocab_size {
        return Err(crate::Error::VocabMismatch { model: model.config.vocab_size, tokenizer: tok.vocab_size() });
    }
    Ok((model, tok))
}

/// Merges a split GGUF set given as whole files, `(name, bytes)` in order,
/// into the one file `llama-gguf-split --merge` writes (see
/// [`crate::gguf::split`]); errors name the shard. A caller that reads files
/// should rather read the headers, make a [`crate::gguf::split::MergePlan`]
/// and read each shard's tensor data straight into place.
pub fn merge_split(shards: &[(&str, &[u8])]) -> Result<alloc::vec::Vec<u8>> {
    use crate::gguf::split::{in_shard, MergePlan, Shard};
    let n = shards.len();
    let parsed = shards
        .iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let gguf = crate::gguf::Gguf::parse(bytes, bytes.len() as u64).map_err(|e| match e {
                e @ crate::Error::Truncated { .. } => crate::Error::invalid(
                    alloc::format!("split shard {} of {n} '{name}'", i + 1),
                    alloc::format!("{e}"),
                ),
                e => in_shard(e, i, n, name),
            })?;
            Ok(Shard { name: alloc::string::String::from(*name), gguf, file_len: bytes.len() as u64 })
        })
        .collect::<Result<alloc::vec::Vec<_>>>()?;
    let bytes: alloc::vec::Vec<&[u8]> = shards.iter().map(|(_, b)| *b).collect();
    MergePlan::new(&parsed)?.merge(&bytes)
}
