//! The llm-baremetal inference engine: `no_std` + `alloc`, safe Rust.
//!
//! Layers: [`gguf`] and [`llama2c`] read model files (hostile input, every
//! size and offset checked); [`tokenizer`] turns text into ids and back;
//! [`model`] holds weights and runs the forward pass; [`sampler`] picks
//! tokens; [`generate`] runs them. The chat REPL on top is the `repl` crate.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod error;
pub mod format;
pub mod generate;
pub mod gguf;
pub mod gguf_model;
pub mod llama2c;
pub mod llmc;
pub mod load;
pub mod model;
pub mod perplexity;
pub mod quantize;
pub mod sampler;
pub mod template;
pub mod tokenizer;

pub use error::{Error, Result};
