//! CPU feature detection (CPUID + XGETBV) and the SIMD level the kernels use.
//!
//! Detection only reads CPUID and XCR0; it never enables anything. On UEFI the
//! firmware layer must enable AVX state (CR4.OSXSAVE, XCR0) on every core
//! before the first kernel call, because the level is detected once and cached.
//!
//! [`SimdLevel`] is the one name of the level (banners, `/stats`, `--simd`).
//! The capability tokens ([`Avx2Token`], [`Avx512VnniToken`]) are zero-sized
//! proofs that the level was detected: only this module can create them, and
//! the per-ISA kernel entry points take them, so the one `unsafe` call into
//! each private `#[target_feature]` function cites the token.

use core::sync::atomic::{AtomicU8, Ordering};

/// The kernel families, from slowest to fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Portable Rust: the reference for every other level.
    Scalar = 1,
    /// AVX2 + FMA + F16C.
    Avx2 = 2,
    /// AVX-512 F/BW/VL (plus AVX2 for the parts that have no 512-bit kernel).
    Avx512 = 3,
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`), for the quantized dot products.
    Avx512Vnni = 4,
}

impl SimdLevel {
    /// A short name for banners and `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Avx512Vnni => "avx512vnni",
        }
    }

    /// Every level, slowest first.
    pub const ALL: [SimdLevel; 4] = [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512, SimdLevel::Avx512Vnni];

    /// The level a [`name`](Self::name) names (case-insensitive).
    pub fn from_name(s: &str) -> Option<SimdLevel> {
        Self::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// What the processor and the OS (or firmware) allow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub sse2: bool,
    pub avx: bool,
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
    /// CPUID.1:ECX.XSAVE: the processor supports XSAVE/XSETBV.
    pub xsave: bool,
    /// CPUID.1:ECX.OSXSAVE: CR4.OSXSAVE is set, so XGETBV may be used.
    pub osxsave: bool,
    /// XCR0 as read by XGETBV (0 when OSXSAVE is clear).
    pub xcr0: u64,
}

impl CpuFeatures {
    /// The best level whose instructions are both present and enabled.
    pub fn best_level(&self) -> SimdLevel {
        let ymm = self.osxsave && self.xcr0 & 0x6 == 0x6;
        let zmm = ymm && self.xcr0 & 0xE0 == 0xE0;
        if zmm && self.avx512f && self.avx512bw && self.avx512vl && self.avx2 && self.fma && self.f16c {
            if self.avx512vnni {
                SimdLevel::Avx512Vnni
            } else {
                SimdLevel::Avx512
            }
        } else if ymm && self.avx && self.avx2 && self.fma && self.f16c {
            SimdLevel::Avx2
        } else {
            SimdLevel::Scalar
        }
    }
}

/// Reads CPUID and XCR0.
#[cfg(target_arch = "x86_64")]
pub fn detect() -> CpuFeatures {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID is always available on x86_64.
    let max_leaf = __cpuid(0).eax;
    let l1 = __cpuid(1);
    let mut f = CpuFeatures {
        sse2: l1.edx & (1 << 26) != 0,
        avx: l1.ecx & (1 << 28) != 0,
        fma: l1.ecx & (1 << 12) != 0,
        f16c: l1.ecx & (1 << 29) != 0,
        xsave: l1.ecx & (1 << 26) != 0,
        osxsave: l1.ecx & (1 << 27) != 0,
        ..Default::default()
    };
    if max_leaf >= 7 {
        let l7 = __cpuid_count(7, 0);
        f.avx2 = l7.ebx & (1 << 5) != 0;
        f.avx512f = l7.ebx & (1 << 16) != 0;
        f.avx512bw = l7.ebx & (1 << 30) != 0;
        f.avx512vl = l7.ebx & (1 << 31) != 0;
        f.avx512vnni = l7.ecx & (1 << 11) != 0;
    }
    if f.osxsave {
        f.xcr0 = xgetbv0();
    }
    f
}

/// Reads CPUID and XCR0 (no SIMD kernels on other architectures).
#[cfg(not(target_arch = "x86_64"))]
pub fn detect() -> CpuFeatures {
    CpuFeatures::default()
}

#[cfg(target_arch = "x86_64")]
fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called when CPUID reports OSXSAVE, so XGETBV is enabled;
    // reading XCR0 (ecx = 0) has no side effects.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The processor's brand string (CPUID 0x80000002..4), trimmed, written into `buf`.
#[cfg(target_arch = "x86_64")]
pub fn brand_string(buf: &mut [u8; 48]) -> &str {
    use core::arch::x86_64::__cpuid;
    *buf = [0; 48];
    if __cpuid(0x8000_0000).eax < 0x8000_0004 {
        return "unknown CPU";
    }
    for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let r = __cpuid(leaf);
        for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].iter().enumerate() {
            let off = i * 16 + j * 4;
            buf[off..off + 4].copy_from_slice(&reg.to_le_bytes());
        }
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(48);
    core::str::from_utf8(&buf[..end]).map(str::trim).unwrap_or("unknown CPU")
}

/// The processor's brand string (not available on this architecture).
#[cfg(not(target_arch = "x86_64"))]
pub fn brand_string(_buf: &mut [u8; 48]) -> &str {
    "unknown CPU"
}

/// 0 = not yet detected; otherwise a `SimdLevel` discriminant.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The SIMD level in use: detected on first call and cached.
pub fn level() -> SimdLevel {
    match LEVEL.load(Ordering::Relaxed) {
        1 => SimdLevel::Scalar,
        2 => SimdLevel::Avx2,
        3 => SimdLevel::Avx512,
        4 => SimdLevel::Avx512Vnni,
        _ => {
            let l = detect().best_level();
            LEVEL.store(l as u8, Ordering::Relaxed);
            l
        }
    }
}

/// Caps the level (never raises it above what the CPU has) and returns the
/// level now in use. Used by tests, by `lbm --simd`/`LBM_SIMD` and by
/// `simd =` in the UEFI app's settings, to measure the lower levels on any
/// machine.
pub fn force_level(max: SimdLevel) -> SimdLevel {
    let l = detect().best_level().min(max);
    LEVEL.store(l as u8, Ordering::Relaxed);
    l
}

/// Proof that AVX2, FMA and F16C are present and their (YMM) state enabled:
/// only [`avx2`] and [`caps`] create it, from the detected level.
#[derive(Debug, Clone, Copy)]
pub struct Avx2Token(());

/// Proof that AVX-512 F/BW/VL and VNNI (and AVX2, FMA, F16C) are present and
/// their (ZMM) state enabled: only [`avx512_vnni`] and [`caps`] create it.
#[derive(Debug, Clone, Copy)]
pub struct Avx512VnniToken(());

impl Avx512VnniToken {
    /// Every CPU with AVX-512 VNNI at our level has the AVX2 kernels too.
    #[inline]
    pub fn avx2(self) -> Avx2Token {
        Avx2Token(())
    }
}

/// The AVX2 token, if the level in use is at least [`SimdLevel::Avx2`].
#[inline]
pub fn avx2() -> Option<Avx2Token> {
    (cfg!(target_arch = "x86_64") && level() >= SimdLevel::Avx2).then_some(Avx2Token(()))
}

/// The AVX-512 VNNI token, if the level in use is [`SimdLevel::Avx512Vnni`].
#[inline]
pub fn avx512_vnni() -> Option<Avx512VnniToken> {
    (cfg!(target_arch = "x86_64") && level() >= SimdLevel::Avx512Vnni).then_some(Avx512VnniToken(()))
}

/// The kernel family the matrix kernels run, with its token: the level in
/// use, folded to the families that have kernels (AVX-512 without VNNI runs
/// the AVX2 ones).
#[derive(Debug, Clone, Copy)]
pub enum Caps {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2Token),
    #[cfg(target_arch = "x86_64")]
    Vnni(Avx512VnniToken),
}

/// The [`Caps`] of the level in use.
#[inline]
pub fn caps() -> Caps {
    #[cfg(target_arch = "x86_64")]
    match (avx512_vnni(), avx2()) {
        (Some(v), _) => Caps::Vnni(v),
        (None, Some(a)) => Caps::Avx2(a),
        (None, None) => Caps::Scalar,
    }
    #[cfg(not(target_arch = "x86_64"))]
    Caps::Scalar
}
