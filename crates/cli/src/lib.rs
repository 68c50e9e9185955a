//! The `lbm` command's library half: everything the binary does, reachable
//! from integration tests.

pub mod host;
pub mod image;
pub mod qemu;
