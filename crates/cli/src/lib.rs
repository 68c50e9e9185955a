//! The `lbm` command's library half, reachable from integration tests: host
//! model loading and the terminal console, the quantizer, bench and the
//! template command. Conversion, the hub client, the image writer and QEMU
//! are their own crates (`convert`, `hub`, `image`, `qemu`).
#![forbid(unsafe_code)]

pub mod bench;
pub mod host;
pub mod quantize;
pub mod template_cmd;
pub mod threads;
