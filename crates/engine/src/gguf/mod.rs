//! GGUF reader and writer.
//!
//! Layout (little-endian): magic "GGUF", version u32 (2 or 3), tensor count
//! u64, metadata count u64; metadata entries (key string, value type u32,
//! value); tensor infos (name, n_dims u32, dims u64 × n_dims in `ne` order,
//! ggml type u32, data offset u64 relative to the data section); zero
//! padding to `general.alignment` (default 32); tensor data. A string is a
//! u64 byte length plus UTF-8 bytes; an array is an element type u32, a u64
//! count and the elements.

mod reader;
pub mod split;
mod types;
mod writer;

pub use reader::Gguf;
pub use types::{GgmlType, TensorInfo, Value};
pub use writer::{write_header, GgufWriter, TensorEntry};

/// "GGUF" read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of metadata arrays accepted (an array of arrays is depth 2).
pub const MAX_ARRAY_DEPTH: usize = 8;
