//! CPU state for the firmware layer, one module per architecture with the
//! same functions: [`enable_simd`] (the vector register state on the calling
//! core), [`ticks`] (a free-running counter: the TSC on x86-64, the generic
//! timer's virtual count on aarch64), [`brand_string`], [`core_id`] and
//! [`vector_dot`] (the banner's check that vector code runs and agrees with
//! scalar code). The SIMD level is `kernels::cpu::level()`: detected once
//! there, after [`enable_simd`] has enabled the state.
//!
//! Everything here except [`brand_string`] runs on application processors
//! too: no allocation, no firmware calls, tiny stack.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

/// The architecture's short name, for the banner.
pub const ARCH: &str = if cfg!(target_arch = "aarch64") { "aarch64" } else { "x86-64" };

static MULTICORE: AtomicBool = AtomicBool::new(false);
static BSP_ID: AtomicU64 = AtomicU64::new(0);

/// Called on the bootstrap processor before any application processor runs
/// our code: from then on [`on_bsp`] tells the cores apart.
pub fn mark_multicore() {
    BSP_ID.store(core_id(), Ordering::SeqCst);
    MULTICORE.store(true, Ordering::SeqCst);
}

/// Whether the calling core is the bootstrap processor (the only one that
/// may call boot services).
pub fn on_bsp() -> bool {
    if !MULTICORE.load(Ordering::Acquire) {
        return true;
    }
    core_id() == BSP_ID.load(Ordering::Relaxed)
}

/// A dot product of two f32 rows.
pub type DotFn = fn(&[f32], &[f32]) -> f32;

/// Scalar reference dot product (plain `mulss`/`addss` or `fmul`/`fadd`).
#[inline(never)]
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in a.iter().zip(b) {
        sum += x * y;
    }
    sum
}

/// Checks that the vector dot product runs on this core and agrees with
/// scalar code. Returns (its name, vector result, scalar result), or `None`
/// if the level in use has no vector unit.
pub fn simd_selftest() -> Option<(&'static str, f32, f32)> {
    let (name, dot) = vector_dot()?;
    let a: [f32; 67] = core::array::from_fn(|i| (i as f32) * 0.25 - 3.0);
    let b: [f32; 67] = core::array::from_fn(|i| 1.0 / (i as f32 + 1.0));
    let a = core::hint::black_box(a);
    Some((name, dot(&a, &b), dot_scalar(&a, &b)))
}

/// An Arm main ID register (MIDR_EL1) as a name: the implementer and, for
/// the parts we know, the core ("Arm Neoverse-N1 r3p1"); otherwise the raw
/// fields.
#[cfg_attr(not(any(test, target_arch = "aarch64")), allow(dead_code))]
pub fn describe_midr(midr: u64) -> alloc::string::String {
    let implementer = (midr >> 24) & 0xff;
    let variant = (midr >> 20) & 0xf;
    let part = (midr >> 4) & 0xfff;
    let revision = midr & 0xf;
    let vendor = match implementer {
        0x41 => Some("Arm"),
        0x42 => Some("Broadcom"),
        0x43 => Some("Cavium"),
        0x46 => Some("Fujitsu"),
        0x48 => Some("HiSilicon"),
        0x4e => Some("NVIDIA"),
        0x51 => Some("Qualcomm"),
        0x61 => Some("Apple"),
        0x6d => Some("Microsoft"),
        0xc0 => Some("Ampere"),
        _ => None,
    };
    let core = match (implementer, part) {
        (0x41, 0xd03) => Some("Cortex-A53"),
        (0x41, 0xd04) => Some("Cortex-A35"),
        (0x41, 0xd05) => Some("Cortex-A55"),
        (0x41, 0xd07) => Some("Cortex-A57"),
        (0x41, 0xd08) => Some("Cortex-A72"),
        (0x41, 0xd09) => Some("Cortex-A73"),
        (0x41, 0xd0a) => Some("Cortex-A75"),
        (0x41, 0xd0b) => Some("Cortex-A76"),
        (0x41, 0xd0c) => Some("Neoverse-N1"),
        (0x41, 0xd0d) => Some("Cortex-A77"),
        (0x41, 0xd40) => Some("Neoverse-V1"),
        (0x41, 0xd41) => Some("Cortex-A78"),
        (0x41, 0xd44) => Some("Cortex-X1"),
        (0x41, 0xd46) => Some("Cortex-A510"),
        (0x41, 0xd47) => Some("Cortex-A710"),
        (0x41, 0xd48) => Some("Cortex-X2"),
        (0x41, 0xd49) => Some("Neoverse-N2"),
        (0x41, 0xd4f) => Some("Neoverse-V2"),
        (0xc0, 0xac3) => Some("Ampere-1"),
        _ => None,
    };
    match (vendor, core) {
        (Some(v), Some(c)) => alloc::format!("{v} {c} r{variant}p{revision}"),
        (Some(v), None) => alloc::format!("{v} part {part:#05x} r{variant}p{revision}"),
        (None, _) => {
            alloc::format!("Arm implementer {implementer:#04x} part {part:#05x} r{variant}p{revision} (MIDR {midr:#x})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_dot_matches_scalar() {
        if let Some((name, fast, slow)) = simd_selftest() {
            assert!((fast - slow).abs() <= 1e-4 * slow.abs().max(1.0), "{name}: {fast} vs {slow}");
        }
        assert!(on_bsp());
    }

    #[test]
    fn midr_names() {
        // Neoverse-N1 r3p1 (AWS Graviton2) and Cortex-A72 r0p3 (Raspberry Pi 4).
        assert_eq!(describe_midr(0x413f_d0c1), "Arm Neoverse-N1 r3p1");
        assert_eq!(describe_midr(0x410f_d083), "Arm Cortex-A72 r0p3");
        assert_eq!(describe_midr(0x5100_0000 | (0x802 << 4)), "Qualcomm part 0x802 r0p0");
        // QEMU's "max" CPU reports implementer 0.
        assert_eq!(describe_midr(0x000f_0510), "Arm implementer 0x00 part 0x051 r0p0 (MIDR 0xf0510)");
    }
}
