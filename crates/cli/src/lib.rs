//! The `lbm` command's library half: everything the binary does, reachable
//! from integration tests.
#![forbid(unsafe_code)]

pub mod bench;
pub mod convert;
pub mod host;
pub mod image;
pub mod pull;
pub mod qemu;
pub mod quantize;
pub mod spm_model;
pub mod template_cmd;
