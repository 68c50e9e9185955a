//! x86_64 kernels: AVX2 (+FMA, F16C), AVX-512 (VNNI) and the row-octet
//! kernels for both.

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod avx512_f32;
pub(crate) mod x8;
