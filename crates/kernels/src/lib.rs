//! Kernels: CPU feature detection, scalar reference kernels, SIMD kernels
//! picked once at run time, and GGUF-compatible quant blocks.
//!
//! Layers, leaves first: [`math`] (libm-free scalar math), [`cast`], [`half`],
//! [`quant`] (block layouts), [`scalar`] (portable references), the private
//! per-ISA tree `arch/<isa>/` (e.g. `arch/x86_64/avx2.rs`), and [`ops`] (the
//! dispatching entry points the engine calls). [`cpu`] detects the one
//! [`cpu::SimdLevel`]; [`store`] owns a model's bytes and the views the
//! kernels read.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub(crate) mod arch;
pub mod cast;
pub mod cpu;
pub mod exec;
pub mod half;
pub mod math;
pub mod ops;
pub mod quant;
pub mod scalar;
pub mod store;
pub mod types;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_f32;
#[cfg(test)]
mod tests_quant;
#[cfg(test)]
mod tests_x8;
