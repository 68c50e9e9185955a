//! CPU feature detection (CPUID + XGETBV on x86_64; HWCAP or the ID
//! registers on aarch64) and the SIMD level the kernels use.
//!
//! Detection only reads CPUID and XCR0 (or, on aarch64, `getauxval` on Linux
//! and `ID_AA64ISAR0/1_EL1` on UEFI); it never enables anything. On UEFI the
//! x86 firmware layer must enable AVX state (CR4.OSXSAVE, XCR0) on every core
//! before the first kernel call, because the level is detected once and cached.
//!
//! [`SimdLevel`] is the one name of the level (banners, `/stats`, `--simd`).
//! The capability tokens ([`Avx2Token`], [`Avx512VnniToken`], [`NeonToken`],
//! [`DotprodToken`], [`I8mmToken`]) are zero-sized proofs that the level was
//! detected: only this module can create them, and the per-ISA kernel entry
//! points take them, so the one `unsafe` call into each private
//! `#[target_feature]` function cites the token.

use core::sync::atomic::{AtomicU8, Ordering};

/// The kernel families. Levels of one architecture are ordered from
/// slowest to fastest, and [`SimdLevel::Scalar`] is below every level; levels
/// of different architectures (AVX2 and NEON, say) are not comparable, so
/// `a <= b` is false both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Portable Rust: the reference for every other level.
    Scalar = 1,
    /// AVX2 + FMA + F16C (x86_64).
    Avx2 = 2,
    /// AVX-512 F/BW/VL (plus AVX2 for the parts that have no 512-bit kernel).
    Avx512 = 3,
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`), for the quantized dot products.
    Avx512Vnni = 4,
    /// ARMv8-A Advanced SIMD (aarch64; always present there).
    Neon = 5,
    /// NEON with FEAT_DotProd (`sdot`/`udot`).
    NeonDotprod = 6,
    /// NEON with FEAT_DotProd and FEAT_I8MM (`smmla`).
    NeonI8mm = 7,
}

/// The architecture a level belongs to (`None` for scalar, which all share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    X86,
    Arm,
}

impl SimdLevel {
    /// A short name for banners and `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Avx512Vnni => "avx512vnni",
            SimdLevel::Neon => "neon",
            SimdLevel::NeonDotprod => "neon-dotprod",
            SimdLevel::NeonI8mm => "neon-i8mm",
        }
    }

    /// Every level: scalar, then each architecture's slowest first.
    pub const ALL: [SimdLevel; 7] = [
        SimdLevel::Scalar,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
        SimdLevel::Avx512Vnni,
        SimdLevel::Neon,
        SimdLevel::NeonDotprod,
        SimdLevel::NeonI8mm,
    ];

    /// The level a [`name`](Self::name) names (case-insensitive).
    pub fn from_name(s: &str) -> Option<SimdLevel> {
        Self::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(s.trim()))
    }

    fn from_u8(v: u8) -> Option<SimdLevel> {
        Self::ALL.into_iter().find(|l| *l as u8 == v)
    }

    fn family(self) -> Option<Family> {
        match self {
            SimdLevel::Scalar => None,
            SimdLevel::Avx2 | SimdLevel::Avx512 | SimdLevel::Avx512Vnni => Some(Family::X86),
            SimdLevel::Neon | SimdLevel::NeonDotprod | SimdLevel::NeonI8mm => Some(Family::Arm),
        }
    }

    /// The rank within the family (scalar 0).
    fn rank(self) -> u8 {
        match self {
            SimdLevel::Scalar => 0,
            SimdLevel::Avx2 | SimdLevel::Neon => 1,
            SimdLevel::Avx512 | SimdLevel::NeonDotprod => 2,
            SimdLevel::Avx512Vnni | SimdLevel::NeonI8mm => 3,
        }
    }

    /// Whether this level's kernels can run on the architecture the crate is
    /// compiled for.
    pub fn is_native(self) -> bool {
        match self.family() {
            None => true,
            Some(Family::X86) => cfg!(target_arch = "x86_64"),
            Some(Family::Arm) => cfg!(target_arch = "aarch64"),
        }
    }
}

impl PartialOrd for SimdLevel {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        match (self.family(), other.family()) {
            (Some(a), Some(b)) if a != b => None,
            _ => Some(self.rank().cmp(&other.rank())),
        }
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
    /// aarch64 Advanced SIMD (HWCAP_ASIMD; always there on ARMv8-A).
    pub neon: bool,
    /// aarch64 FEAT_DotProd (HWCAP_ASIMDDP, ID_AA64ISAR0_EL1.DP).
    pub dotprod: bool,
    /// aarch64 FEAT_I8MM (HWCAP2_I8MM, ID_AA64ISAR1_EL1.I8MM).
    pub i8mm: bool,
}

impl CpuFeatures {
    /// The best level whose instructions are both present and enabled, among
    /// the levels of the architecture the crate is compiled for.
    pub fn best_level(&self) -> SimdLevel {
        if cfg!(target_arch = "aarch64") {
            return match (self.neon, self.dotprod, self.i8mm) {
                (true, true, true) => SimdLevel::NeonI8mm,
                (true, true, false) => SimdLevel::NeonDotprod,
                (true, false, _) => SimdLevel::Neon,
                (false, _, _) => SimdLevel::Scalar,
            };
        }
        if !cfg!(target_arch = "x86_64") {
            return SimdLevel::Scalar;
        }
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

/// Reads the aarch64 features: HWCAP/HWCAP2 on Linux, the ID registers on
/// UEFI (which runs at EL1 or EL2, where they are readable); elsewhere only
/// the baseline (NEON).
#[cfg(target_arch = "aarch64")]
pub fn detect() -> CpuFeatures {
    let (neon, dotprod, i8mm) = arm::features();
    CpuFeatures { neon, dotprod, i8mm, ..Default::default() }
}

/// No SIMD kernels on other architectures.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn detect() -> CpuFeatures {
    CpuFeatures::default()
}

#[cfg(target_arch = "aarch64")]
mod arm {
    /// (NEON, DotProd, I8MM) of this processor.
    #[cfg(target_os = "linux")]
    pub(super) fn features() -> (bool, bool, bool) {
        let (hw, hw2) = (hwcap(AT_HWCAP), hwcap(AT_HWCAP2));
        let neon = hw & HWCAP_ASIMD != 0;
        let dotprod = neon && hw & HWCAP_ASIMDDP != 0;
        (neon, dotprod, dotprod && hw2 & HWCAP2_I8MM != 0)
    }

    /// (NEON, DotProd, I8MM) of this processor, from ID_AA64ISAR0_EL1.DP
    /// (bits 47:44) and ID_AA64ISAR1_EL1.I8MM (bits 55:52).
    #[cfg(target_os = "uefi")]
    pub(super) fn features() -> (bool, bool, bool) {
        let (isar0, isar1): (u64, u64);
        // SAFETY: UEFI applications run at EL1 or EL2, where the ID registers
        // are readable; reading them has no side effects.
        unsafe {
            core::arch::asm!(
                "mrs {0}, ID_AA64ISAR0_EL1",
                "mrs {1}, ID_AA64ISAR1_EL1",
                out(reg) isar0,
                out(reg) isar1,
                options(nomem, nostack, preserves_flags)
            );
        }
        let dotprod = (isar0 >> 44) & 0xF != 0;
        (true, dotprod, dotprod && (isar1 >> 52) & 0xF != 0)
    }

    /// Elsewhere: the baseline only.
    #[cfg(not(any(target_os = "linux", target_os = "uefi")))]
    pub(super) fn features() -> (bool, bool, bool) {
        (cfg!(target_feature = "neon"), false, false)
    }

    #[cfg(target_os = "linux")]
    const AT_HWCAP: u64 = 16;
    #[cfg(target_os = "linux")]
    const AT_HWCAP2: u64 = 26;
    #[cfg(target_os = "linux")]
    const HWCAP_ASIMD: u64 = 1 << 1;
    #[cfg(target_os = "linux")]
    pub(super) const HWCAP_CPUID: u64 = 1 << 11;
    #[cfg(target_os = "linux")]
    const HWCAP_ASIMDDP: u64 = 1 << 20;
    #[cfg(target_os = "linux")]
    const HWCAP2_I8MM: u64 = 1 << 13;

    #[cfg(target_os = "linux")]
    extern "C" {
        /// glibc's (and musl's) auxiliary-vector lookup.
        fn getauxval(ty: u64) -> u64;
    }

    /// The auxiliary-vector entry `ty` (0 if absent).
    #[cfg(target_os = "linux")]
    pub(super) fn hwcap(ty: u64) -> u64 {
        // SAFETY: getauxval takes any type id and returns 0 for unknown ones;
        // it only reads the process's auxiliary vector.
        unsafe { getauxval(ty) }
    }

    #[cfg(target_os = "linux")]
    pub(super) const HWCAP: u64 = AT_HWCAP;

    /// MIDR_EL1, where it can be read: on UEFI (EL1/EL2) always; on Linux
    /// when the kernel emulates EL0 reads of the ID registers (HWCAP_CPUID).
    pub(super) fn midr() -> Option<u64> {
        #[cfg(target_os = "linux")]
        if hwcap(HWCAP) & HWCAP_CPUID == 0 {
            return None;
        }
        #[cfg(any(target_os = "linux", target_os = "uefi"))]
        {
            let v: u64;
            // SAFETY: on UEFI (EL1/EL2) MIDR_EL1 is readable; on Linux the
            // kernel traps and emulates the read (HWCAP_CPUID checked above).
            // Reading it has no side effects.
            unsafe { core::arch::asm!("mrs {0}, MIDR_EL1", out(reg) v, options(nomem, nostack, preserves_flags)) };
            Some(v)
        }
        #[cfg(not(any(target_os = "linux", target_os = "uefi")))]
        None
    }

    /// A name for MIDR_EL1's implementer code.
    pub(super) fn implementer(code: u8) -> Option<&'static str> {
        Some(match code {
            0x41 => "Arm",
            0x42 => "Broadcom",
            0x43 => "Cavium",
            0x46 => "Fujitsu",
            0x48 => "HiSilicon",
            0x4e => "NVIDIA",
            0x51 => "Qualcomm",
            0x61 => "Apple",
            0x6d => "Microsoft",
            0xc0 => "Ampere",
            _ => return None,
        })
    }
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

/// The processor as MIDR_EL1 names it ("ARM implementer 0x41 (Arm) part
/// 0xd0c r3p1"), written into `buf`; "unknown CPU" where MIDR_EL1 cannot be read.
#[cfg(target_arch = "aarch64")]
pub fn brand_string(buf: &mut [u8; 48]) -> &str {
    use core::fmt::Write;
    struct W<'a>(&'a mut [u8; 48], usize);
    impl Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            if end > self.0.len() {
                return Err(core::fmt::Error);
            }
            self.0[self.1..end].copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    *buf = [0; 48];
    let Some(midr) = arm::midr() else { return "unknown CPU" };
    let imp = (midr >> 24) as u8;
    let (var, part, rev) = ((midr >> 20) & 0xF, (midr >> 4) & 0xFFF, midr & 0xF);
    let mut w = W(buf, 0);
    let ok = match arm::implementer(imp) {
        Some(name) => write!(w, "ARM implementer {imp:#04x} ({name}) part {part:#05x} r{var}p{rev}"),
        None => write!(w, "ARM implementer {imp:#04x} part {part:#05x} r{var}p{rev}"),
    };
    let len = w.1;
    match ok {
        Ok(()) => core::str::from_utf8(&buf[..len]).unwrap_or("unknown CPU"),
        Err(_) => "unknown CPU",
    }
}

/// The processor's brand string (not available on this architecture).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn brand_string(_buf: &mut [u8; 48]) -> &str {
    "unknown CPU"
}

/// 0 = not yet detected; otherwise a `SimdLevel` discriminant.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The SIMD level in use: detected on first call and cached.
pub fn level() -> SimdLevel {
    match SimdLevel::from_u8(LEVEL.load(Ordering::Relaxed)) {
        Some(l) => l,
        None => {
            let l = detect().best_level();
            LEVEL.store(l as u8, Ordering::Relaxed);
            l
        }
    }
}

/// The level at most `max` that a CPU whose best level is `best` runs: `max`
/// itself if `best` has it, else `best`; scalar if `max` is a level of
/// another architecture (an x86 cap on aarch64, or the reverse).
pub fn cap(best: SimdLevel, max: SimdLevel) -> SimdLevel {
    match max.partial_cmp(&best) {
        Some(core::cmp::Ordering::Greater) => best,
        Some(_) => max,
        None => SimdLevel::Scalar,
    }
}

/// Caps the level (never raises it above what the CPU has; see [`cap`]) and
/// returns the level now in use. Used by tests, by `lbm --simd`/`LBM_SIMD`
/// and by `simd =` in the UEFI app's settings, to measure the lower levels on
/// any machine.
pub fn force_level(max: SimdLevel) -> SimdLevel {
    let l = cap(detect().best_level(), max);
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

/// Proof that aarch64 Advanced SIMD (NEON, with its FP16 to FP32
/// conversions) is present: only [`neon`] and [`caps`] create it.
#[derive(Debug, Clone, Copy)]
pub struct NeonToken(());

/// Proof that NEON and FEAT_DotProd (`sdot`) are present: only [`dotprod`]
/// and [`caps`] create it.
#[derive(Debug, Clone, Copy)]
pub struct DotprodToken(());

/// Proof that NEON, FEAT_DotProd and FEAT_I8MM (`smmla`) are present: only
/// [`i8mm`] and [`caps`] create it.
#[derive(Debug, Clone, Copy)]
pub struct I8mmToken(());

impl DotprodToken {
    /// DotProd implies NEON.
    #[inline]
    pub fn neon(self) -> NeonToken {
        NeonToken(())
    }
}

impl I8mmToken {
    /// The I8MM level implies DotProd (it only counts with it).
    #[inline]
    pub fn dotprod(self) -> DotprodToken {
        DotprodToken(())
    }

    /// And NEON.
    #[inline]
    pub fn neon(self) -> NeonToken {
        NeonToken(())
    }
}

/// The NEON token, if the level in use is at least [`SimdLevel::Neon`].
#[inline]
pub fn neon() -> Option<NeonToken> {
    (cfg!(target_arch = "aarch64") && level() >= SimdLevel::Neon).then_some(NeonToken(()))
}

/// The DotProd token, if the level in use is at least [`SimdLevel::NeonDotprod`].
#[inline]
pub fn dotprod() -> Option<DotprodToken> {
    (cfg!(target_arch = "aarch64") && level() >= SimdLevel::NeonDotprod).then_some(DotprodToken(()))
}

/// The I8MM token, if the level in use is [`SimdLevel::NeonI8mm`].
#[inline]
pub fn i8mm() -> Option<I8mmToken> {
    (cfg!(target_arch = "aarch64") && level() >= SimdLevel::NeonI8mm).then_some(I8mmToken(()))
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
    #[cfg(target_arch = "aarch64")]
    Neon(NeonToken),
    #[cfg(target_arch = "aarch64")]
    Dotprod(DotprodToken),
    #[cfg(target_arch = "aarch64")]
    I8mm(I8mmToken),
}

/// The [`Caps`] of the level in use.
#[inline]
pub fn caps() -> Caps {
    #[cfg(target_arch = "x86_64")]
    return match (avx512_vnni(), avx2()) {
        (Some(v), _) => Caps::Vnni(v),
        (None, Some(a)) => Caps::Avx2(a),
        (None, None) => Caps::Scalar,
    };
    #[cfg(target_arch = "aarch64")]
    return match (i8mm(), dotprod(), neon()) {
        (Some(t), _, _) => Caps::I8mm(t),
        (None, Some(t), _) => Caps::Dotprod(t),
        (None, None, Some(t)) => Caps::Neon(t),
        (None, None, None) => Caps::Scalar,
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    Caps::Scalar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_within_an_architecture_and_cap_across() {
        use SimdLevel::*;
        assert!(Scalar < Avx2 && Avx2 < Avx512 && Avx512 < Avx512Vnni);
        assert!(Scalar < Neon && Neon < NeonDotprod && NeonDotprod < NeonI8mm);
        let (lt, ge) = (Neon <= Avx2, Neon >= Avx2);
        assert!(!lt && !ge && Neon.partial_cmp(&Avx512Vnni).is_none());
        assert_eq!(cap(NeonI8mm, NeonDotprod), NeonDotprod);
        assert_eq!(cap(NeonDotprod, NeonI8mm), NeonDotprod);
        assert_eq!(cap(NeonI8mm, Avx2), Scalar);
        assert_eq!(cap(Avx512Vnni, Neon), Scalar);
        assert_eq!(cap(Avx2, Avx512Vnni), Avx2);
        assert_eq!(cap(Scalar, Neon), Scalar);
        assert_eq!(cap(Neon, Scalar), Scalar);
        for l in SimdLevel::ALL {
            assert_eq!(SimdLevel::from_name(&l.name().to_ascii_uppercase()), Some(l));
            assert_eq!(SimdLevel::from_u8(l as u8), Some(l));
        }
        assert!(detect().best_level().is_native());
        assert_eq!(SimdLevel::from_name(" neon-dotprod "), Some(NeonDotprod));
    }

    #[test]
    fn brand_string_and_level_of_this_cpu() {
        let best = detect().best_level();
        assert!(best.is_native());
        let mut buf = [0u8; 48];
        let b = brand_string(&mut buf);
        assert!(!b.is_empty() && b.len() <= 48);
        std::eprintln!("CPU: {b}; best level {}", best.name());
    }
}
