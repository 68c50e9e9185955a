//! aarch64 kernels: NEON (Advanced SIMD, the ARMv8-A baseline), NEON with
//! FEAT_DotProd (`sdot`) and with FEAT_I8MM (`smmla`).
//!
//! The float and 32-block kernels reproduce the AVX2 kernels' lane order
//! (eight float lanes as two `float32x4_t`, the same integer lanes, the same
//! horizontal sums), so aarch64 and x86 give the same bits; the K-quants
//! reduce each super-block to one exact integer and are bit-identical to the
//! scalar twins, as on x86.

pub(crate) mod dotprod;
pub(crate) mod i8mm;
pub(crate) mod neon;
