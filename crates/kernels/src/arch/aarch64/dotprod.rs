//! The NEON tile kernels with FEAT_DotProd: `sdot` gives the integer lanes
//! (lane k: the products of bytes 4k..4k+4) in one instruction, the same
//! lanes as `neon::dot4`, so the results are bit-identical to the NEON level.
//! Private to the crate; `ops` dispatches with a [`crate::cpu::DotprodToken`].

use core::arch::aarch64::*;

/// `acc` plus, in lane k, the products of bytes 4k..4k+4 of `a` and `b`
/// (`sdot`; the intrinsic is not stable yet, so inline assembly).
#[inline]
#[target_feature(enable = "dotprod")]
pub(crate) fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: this function is compiled only with FEAT_DotProd enabled, and its
    // callers run only with a DotprodToken (or I8mmToken): `sdot` exists. It
    // reads and writes only the registers named.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The tile kernels with `sdot`.
pub(crate) mod tiles {
    crate::arch::aarch64::neon::tile_kernels!(
        "dotprod",
        crate::arch::aarch64::dotprod::sdot,
        crate::cpu::DotprodToken,
        crate::cpu::dotprod
    );
}
