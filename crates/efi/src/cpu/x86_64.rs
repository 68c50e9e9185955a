//! x86-64: enabling AVX (CR4.OSXSAVE + XCR0) on each core, the brand
//! string, APIC ids and the TSC.

use core::arch::asm;
use core::arch::x86_64::{__cpuid_count, _rdtsc, CpuidResult};

/// CPUID for `leaf`/`sub`.
pub fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
    // SAFETY: CPUID exists on every x86-64 CPU and has no side effects.
    #[allow(unused_unsafe)]
    unsafe {
        __cpuid_count(leaf, sub)
    }
}

/// The time stamp counter (invariant, tracks real time).
pub fn ticks() -> u64 {
    // SAFETY: RDTSC is unprivileged on x86-64 and has no side effects
    // (firmware does not set CR4.TSD).
    #[allow(unused_unsafe)]
    unsafe {
        _rdtsc()
    }
}

/// The rate of [`ticks`] when the hardware states it: never on x86-64 (the
/// TSC is calibrated against the firmware's stall).
pub fn ticks_hz() -> Option<u64> {
    None
}

const CR4_OSXSAVE: u64 = 1 << 18;
/// XCR0 bits: x87, SSE, AVX.
const XCR0_AVX: u64 = 0x7;
/// XCR0 bits: AVX-512 opmask, ZMM0-15 upper halves, ZMM16-31.
const XCR0_AVX512: u64 = 0xE0;

/// XCR0 (valid only once CR4.OSXSAVE is set).
fn xgetbv0() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: callers only use this after checking CPUID.1:ECX.OSXSAVE or
    // after setting CR4.OSXSAVE themselves, so XGETBV does not fault.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// What [`enable_simd`] did on one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimdState {
    /// XCR0 after enabling (0 if the CPU has no XSAVE).
    pub xcr0: u64,
}

impl SimdState {
    /// For the banner: the register state enabled.
    pub fn describe(&self) -> alloc::string::String {
        alloc::format!("XCR0 {:#x}", self.xcr0)
    }
}

/// Enables the AVX (and AVX-512 where present) register state on the calling
/// core: sets CR4.OSXSAVE and writes XCR0 = x87|SSE|AVX (| opmask|ZMM), masked
/// by what CPUID(0xD,0) says the CPU supports. Each core must do this itself:
/// application processors do not inherit it from the bootstrap processor.
pub fn enable_simd() -> SimdState {
    let leaf1 = cpuid(1, 0);
    let has_xsave = leaf1.ecx & (1 << 26) != 0;
    if !has_xsave {
        return SimdState { xcr0: 0 };
    }
    let has_avx = leaf1.ecx & (1 << 28) != 0;
    let max_leaf = cpuid(0, 0).eax;

    let cr4: u64;
    // SAFETY: UEFI runs us in ring 0 (long mode), where reading CR4 is allowed.
    unsafe {
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
    }
    if cr4 & CR4_OSXSAVE == 0 {
        // SAFETY: ring 0; CPUID says XSAVE exists, so CR4.OSXSAVE is a valid
        // bit to set. It only allows XGETBV/XSETBV and AVX state; the firmware
        // does not rely on it being clear.
        unsafe {
            asm!("mov cr4, {}", in(reg) cr4 | CR4_OSXSAVE, options(nostack, preserves_flags));
        }
    }

    let supported = if max_leaf >= 0xD {
        let d = cpuid(0xD, 0);
        (u64::from(d.edx) << 32) | u64::from(d.eax)
    } else {
        0x3
    };
    let avx512f = max_leaf >= 7 && cpuid(7, 0).ebx & (1 << 16) != 0;
    let mut want = 0x3; // x87 | SSE
    if has_avx && supported & XCR0_AVX == XCR0_AVX {
        want |= XCR0_AVX;
        if avx512f && supported & XCR0_AVX512 == XCR0_AVX512 {
            want |= XCR0_AVX512;
        }
    }
    let current = xgetbv0();
    // Never clear a bit the firmware enabled; never set one the CPU lacks.
    let value = (current | want) & (supported | 1);
    if value != current {
        // SAFETY: ring 0 with CR4.OSXSAVE set (above); `value` has bit 0
        // (x87) set, only bits CPUID(0xD,0) reports as supported, and the
        // AVX/AVX-512 groups are enabled whole as the SDM requires, so XSETBV
        // does not fault.
        unsafe {
            asm!(
                "xsetbv",
                in("ecx") 0u32,
                in("eax") value as u32,
                in("edx") (value >> 32) as u32,
                options(nostack, preserves_flags)
            );
        }
    }
    SimdState { xcr0: xgetbv0() }
}

/// The processor brand string, e.g. "QEMU TCG CPU version 2.5+".
pub fn brand_string() -> alloc::string::String {
    let max_ext = cpuid(0x8000_0000, 0).eax;
    if max_ext < 0x8000_0004 {
        return alloc::string::String::from("unknown x86-64 CPU");
    }
    let mut bytes = [0u8; 48];
    for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let r = cpuid(leaf, 0);
        for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
            let at = i * 16 + j * 4;
            bytes[at..at + 4].copy_from_slice(&reg.to_le_bytes());
        }
    }
    brand_from_bytes(&bytes)
}

/// Turns the 48 raw brand bytes into a trimmed string.
pub fn brand_from_bytes(bytes: &[u8]) -> alloc::string::String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text: alloc::string::String =
        bytes[..end].iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect();
    // Collapse the runs of spaces some vendors pad with.
    let mut out = alloc::string::String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.is_empty() {
        out.push_str("unknown x86-64 CPU");
    }
    out
}

/// The calling core's APIC id (x2APIC id from leaf 0xB when present).
pub fn core_id() -> u64 {
    if cpuid(0, 0).eax >= 0xB {
        let r = cpuid(0xB, 0);
        if r.ebx != 0 {
            return u64::from(r.edx);
        }
    }
    u64::from(cpuid(1, 0).ebx >> 24)
}

/// Dot product with AVX2 + FMA intrinsics (8 lanes, `vfmadd231ps`).
///
/// # Safety
/// The CPU must support AVX2 and FMA and the calling core must have the YMM
/// state enabled (see [`enable_simd`]).
#[target_feature(enable = "avx,avx2,fma")]
unsafe fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    use core::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps both 8-float loads inside the slices.
        let (va, vb) = unsafe { (_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i))) };
        acc = _mm256_fmadd_ps(va, vb, acc);
        i += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds exactly 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut sum: f32 = lanes.iter().sum();
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// The vector dot product the banner's check runs, and its name; `None` if
/// AVX2/FMA is not usable.
pub fn vector_dot() -> Option<(&'static str, super::DotFn)> {
    // The level the kernels use, from the one detection in `kernels::cpu`.
    kernels::cpu::avx2()?;
    fn fma(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only handed out after kernels::cpu::avx2() gave its token:
        // AVX2 and FMA exist and the YMM state is enabled on this core.
        unsafe { dot_fma(a, b) }
    }
    Some(("AVX2+FMA", fma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_is_trimmed() {
        let mut b = [0u8; 48];
        let s = b"  Intel(R) Core(TM)   i7-8700 CPU @ 3.20GHz";
        b[..s.len()].copy_from_slice(s);
        assert_eq!(brand_from_bytes(&b), "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz");
        assert_eq!(brand_from_bytes(&[0u8; 48]), "unknown x86-64 CPU");
        assert_eq!(brand_from_bytes(b"QEMU\x01CPU"), "QEMU?CPU");
    }

    #[test]
    fn host_queries_do_not_crash() {
        // Unprivileged parts only: CPUID and TSC.
        assert!(!brand_string().is_empty());
        let a = ticks();
        let b = ticks();
        assert!(b >= a);
    }
}
