//! aarch64: the FP/Advanced SIMD state (enabled by the firmware, as the UEFI
//! specification requires on AArch64), the main ID register, the core's
//! affinity (MPIDR_EL1) and the generic timer's virtual count.

use core::arch::asm;

/// The generic timer's virtual count (CNTVCT_EL0): free-running at the
/// timer frequency, the same on every core.
pub fn ticks() -> u64 {
    let v: u64;
    // SAFETY: CNTVCT_EL0 is readable at every exception level UEFI runs us
    // at (EL1 or EL2); reading it has no side effects. The ISB keeps the read
    // from being hoisted above earlier instructions.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v
}

/// The rate of [`ticks`] in Hz when the hardware states it: the generic
/// timer's frequency (CNTFRQ_EL0, set by the firmware), if plausible.
pub fn ticks_hz() -> Option<u64> {
    Some(timer_frequency()).filter(|&hz| hz >= 1_000_000)
}

fn timer_frequency() -> u64 {
    let v: u64;
    // SAFETY: CNTFRQ_EL0 is readable at EL0 and above; no side effects.
    unsafe {
        asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v
}

/// The exception level we run at (1 or 2 under UEFI).
fn current_el() -> u64 {
    let v: u64;
    // SAFETY: CurrentEL is readable at EL1 and above, where UEFI runs us; no side effects.
    unsafe {
        asm!("mrs {}, CurrentEL", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    (v >> 2) & 3
}

/// What [`enable_simd`] found on one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimdState {
    /// The exception level.
    pub el: u64,
}

impl SimdState {
    /// For the banner.
    pub fn describe(&self) -> alloc::string::String {
        alloc::format!("EL{}, FP/ASIMD enabled by the firmware", self.el)
    }
}

/// On aarch64 the FP/Advanced SIMD registers are architectural and UEFI
/// enables them before starting an image (our code, compiled for a target
/// with NEON, could not have run this far otherwise); optional features are
/// detected by `kernels::cpu` from the ID registers. Nothing to switch on:
/// this reports the state.
pub fn enable_simd() -> SimdState {
    SimdState { el: current_el() }
}

/// The processor's name from MIDR_EL1.
pub fn brand_string() -> alloc::string::String {
    let midr: u64;
    // SAFETY: MIDR_EL1 is readable at EL1 and above; no side effects.
    unsafe {
        asm!("mrs {}, midr_el1", out(reg) midr, options(nomem, nostack, preserves_flags));
    }
    super::describe_midr(midr)
}

/// The calling core's affinity (MPIDR_EL1 Aff3..Aff0): unique per core.
pub fn core_id() -> u64 {
    let v: u64;
    // SAFETY: MPIDR_EL1 is readable at EL1 and above; no side effects.
    unsafe {
        asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v & 0xff_00ff_ffff
}

/// Dot product with NEON `fmla` on four lanes.
fn dot_neon(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: NEON (Advanced SIMD) is part of every aarch64 target we build
    // for and is enabled by the firmware (see `enable_simd`).
    unsafe { dot_neon_impl(a, b) }
}

#[target_feature(enable = "neon")]
fn dot_neon_impl(a: &[f32], b: &[f32]) -> f32 {
    use core::arch::aarch64::*;
    let n = a.len().min(b.len());
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: `i + 4 <= n` keeps both 4-float loads inside the slices;
        // NEON is part of the aarch64 target.
        let (va, vb) = unsafe { (vld1q_f32(a.as_ptr().add(i)), vld1q_f32(b.as_ptr().add(i))) };
        acc = vfmaq_f32(acc, va, vb);
        i += 4;
    }
    let mut sum = vaddvq_f32(acc);
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// The vector dot product the banner's check runs (NEON is always there).
pub fn vector_dot() -> Option<(&'static str, super::DotFn)> {
    Some(("NEON", dot_neon))
}
