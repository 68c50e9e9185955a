//! The `lbm` command's library half: everything the binary does, reachable
//! from integration tests.
#![forbid(unsafe_code)]

pub mod bench;
pub mod host;
pub mod quantize;
pub mod template_cmd;
