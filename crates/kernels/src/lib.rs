//! Kernels: CPU feature detection, scalar reference kernels, SIMD kernels
//! picked once at run time, and GGUF-compatible quant blocks.
//!
//! Layers, as in ggml: [`quant`] (block layouts), [`scalar`] (portable
//! references), private per-ISA modules, and [`ops`] (the dispatching entry
//! points the engine calls).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;
#[cfg(all(test, not(feature = "std")))]
extern crate std;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_f32;
pub mod cast;
pub mod cpu;
pub mod exec;
pub mod half;
#[cfg(feature = "std")]
pub mod hugebuf;
pub mod ops;
#[cfg(feature = "std")]
pub mod pool;
pub mod quant;
pub mod scalar;
pub mod types;
#[cfg(target_arch = "x86_64")]
mod x8;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_f32;
#[cfg(test)]
mod tests_quant;
#[cfg(test)]
mod tests_x8;
