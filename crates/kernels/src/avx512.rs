//! AVX-512 kernels (F, BW, VL and VNNI). Private to the crate; callers (the
//! dispatchers in `ops`) must have checked `cpu::level() >= Avx512Vnni`.
//!
//! The matrix tiles are the AVX2 ones (`avx2::tile_kernels`) compiled with
//! AVX-512VL, which gives them 32 vector registers (bigger tiles without
//! spills), and with the VNNI `vpdpbusd` in place of maddubs + madd: the
//! integer lanes are identical, so results are bit-identical to the AVX2
//! level.

use core::arch::x86_64::*;

/// `vpdpbusd` from zero: unsigned bytes `a` times signed bytes `b`, summed in
/// groups of four into eight i32 lanes (no intermediate saturation).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn mul_sum_vnni(a: __m256i, b: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
}

/// The tile kernels compiled for AVX-512 F/BW/VL + VNNI (plus AVX2, FMA, F16C).
pub(crate) mod tiles {
    crate::avx2::tile_kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", crate::avx512::mul_sum_vnni);
}
