//! ARM64: one disk image from the `image` crate holding both builds of the
//! UEFI app (`EFI/BOOT/BOOTAA64.EFI` and `EFI/BOOT/BOOTX64.EFI`) boots on
//! QEMU's aarch64 `virt` machine with AAVMF and on the x86-64 q35 machine
//! with OVMF, each firmware starting its own. On aarch64 (software emulation
//! of every instruction, so the tiny stories260K model) the banner names the
//! NEON level and the single core, the greedy reply equals the independent
//! llama2.c reference in ../shared, `/stats` names the level and `/exit`
//! powers off with status 0.

use std::path::PathBuf;
use std::time::Duration;

use qemu::{Arch, Vm, VmConfig};

mod common;

const T: Duration = Duration::from_secs(180);

/// Both apps, or None (with a skip notice) when one is not built and CI is
/// not set; with CI set a missing app or QEMU fails the test.
fn apps(test: &str) -> Option<(PathBuf, PathBuf)> {
    if !qemu::available_for(test, Arch::Aarch64) || !qemu::available(test) {
        return None;
    }
    match (testdata::efi_app_aarch64(), testdata::efi_app()) {
        (Some(a), Some(x)) => Some((a, x)),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: target/efi/BOOTAA64.EFI or BOOTX64.EFI is missing; run `cargo xtask build-efi --arch aarch64` \
             and `cargo xtask build-efi` first (cargo xtask test does)"
        ),
        _ => {
            eprintln!("SKIPPING {test}: the UEFI apps are not built (cargo xtask build-efi [--arch aarch64])");
            None
        }
    }
}

#[test]
fn one_image_boots_on_aarch64_and_x86_64() {
    let Some((arm, x86)) = apps("one_image_boots_on_aarch64_and_x86_64") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lbm.cfg");
    std::fs::write(&cfg, "temperature = 0\nmax_tokens = 24\n").unwrap();
    let img = dir.path().join("both.img");
    let opts = image::ImageOptions {
        output: img.clone(),
        efi: vec![arm, x86],
        models: vec![testdata::path("testdata/stories260K/stories260K.bin")],
        tokenizers: vec![testdata::path("testdata/stories260K/tok512.bin")],
        extra_files: vec![(cfg, "lbm.cfg".into())],
        size: None,
    };
    image::build_image(&opts, &mut |_, _, _| {}).expect("image");

    // aarch64.
    let config = VmConfig {
        memory: "1G".into(),
        cores: 2,
        arch: Arch::Aarch64,
        deadline: Duration::from_secs(420),
        ..Default::default()
    };
    let mut vm = Vm::boot_with(&img, config).unwrap();
    let banner = vm.expect("LBM-READY", T).unwrap();
    assert!(banner.contains("llm-baremetal") && banner.contains(" (aarch64)\n"), "{banner}");
    let simd = banner.lines().find(|l| l.starts_with("SIMD:")).unwrap_or_else(|| panic!("no SIMD line:\n{banner}"));
    // QEMU's `max` CPU has NEON with the dot-product and i8mm extensions.
    assert!(simd.starts_with("SIMD:   neon-i8mm (EL"), "{simd}");
    assert!(simd.contains("NEON check: ") && simd.ends_with(" ok"), "{simd}");
    assert!(banner.contains("Cores:  1 (no MP services in this firmware)"), "{banner}");
    vm.expect("You: ", T).unwrap();
    common::vm::once_upon_a_time_as_llama2c(&mut vm, T);
    vm.send_line("/stats").unwrap();
    let stats = vm.expect("memory:", T).unwrap();
    assert!(stats.contains("cpu:         neon-i8mm SIMD, 1 core\n"), "{stats}");
    vm.send_line("/exit").unwrap();
    vm.expect("Bye.", T).unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0), "QEMU exits 0 after /exit");
    drop(vm);

    // The same image on x86-64.
    let config = VmConfig { memory: "1G".into(), cores: 2, deadline: Duration::from_secs(420), ..Default::default() };
    let mut vm = Vm::boot_with(&img, config).unwrap();
    let banner = vm.expect("LBM-READY", T).unwrap();
    assert!(banner.contains(" (x86-64)\n"), "{banner}");
    vm.expect("You: ", T).unwrap();
    vm.send_line("/exit").unwrap();
    vm.expect("Bye.", T).unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0), "QEMU exits 0 after /exit");
}
