//! The terminal side of llm-baremetal, shared by the UEFI app and `lbm chat`:
//! `no_std` + `alloc`, safe Rust.
//!
//! A platform implements [`Console`] (text out, [`Key`]s in, a clock),
//! decoding its input with [`KeyDecoder`]; [`Chat`] is the REPL (prompt,
//! [`read_line`] editing, slash commands, streaming replies, a conversation
//! whose history lives in the KV cache) over the engine's model, session,
//! tokenizer, sampler and templates; [`read_answer`] reads menu choices;
//! [`format_size`] and [`format_params`] render numbers for people.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod chat;
mod console;
mod fmt;
mod keys;
mod line;

pub use chat::{Chat, ChatSettings, ReplExit, Stats, Turn, MAX_TURNS};
pub use console::{Console, Key, PlatformInfo};
pub use fmt::{format_params, format_size};
pub use keys::{KeyDecoder, RawKey};
pub use line::{read_answer, read_line, InputHistory, LineEvent};
