//! The SIMD kernels, one tree per instruction-set architecture (as memchr's
//! `arch/`). Each ISA module is private to the crate; `ops` dispatches into
//! it through entry points that take a capability token from `cpu`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
