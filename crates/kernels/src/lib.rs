//! Kernels: CPU feature detection, scalar reference kernels, SIMD kernels
//! picked once at run time, and GGUF-compatible quant blocks.
#![no_std]

pub mod exec;
