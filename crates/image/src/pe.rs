//! A light check that the file to install as `EFI/BOOT/BOOTX64.EFI` is an
//! x86-64 UEFI application (PE32+, subsystem 10), so that a wrong file (the
//! Linux `lbm` binary, a model, a truncated copy) is refused when the image is
//! built instead of being found out at boot.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

const IMAGE_FILE_MACHINE_AMD64: u16 = 0x8664;
const PE32_PLUS_MAGIC: u16 = 0x20b;
const SUBSYSTEM_EFI_APPLICATION: u16 = 10;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Why `head` (the first bytes of a file) is not an x86-64 EFI application,
/// or `None` when it is one.
pub fn efi_app_problem(head: &[u8]) -> Option<String> {
    if head.get(..2) != Some(b"MZ") {
        return Some("it does not start with the PE/COFF 'MZ' signature".into());
    }
    let Some(pe) = u32_at(head, 0x3c).map(|v| v as usize) else {
        return Some("its DOS header is truncated".into());
    };
    if head.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Some("it has no 'PE' header where its DOS header points".into());
    }
    match u16_at(head, pe + 4) {
        Some(IMAGE_FILE_MACHINE_AMD64) => {}
        Some(m) => return Some(format!("it is built for machine type {m:#06x}, not x86-64 (0x8664)")),
        None => return Some("its COFF header is truncated".into()),
    }
    let opt = pe + 24;
    match u16_at(head, opt) {
        Some(PE32_PLUS_MAGIC) => {}
        Some(m) => return Some(format!("its optional header magic is {m:#06x}, not PE32+ (0x20b)")),
        None => return Some("its optional header is truncated".into()),
    }
    match u16_at(head, opt + 68) {
        Some(SUBSYSTEM_EFI_APPLICATION) => None,
        Some(s) => Some(format!(
            "its PE subsystem is {s}, not 10 (EFI application){}",
            if s == 3 { ": this is a console program for an operating system" } else { "" }
        )),
        None => Some("its optional header is truncated".into()),
    }
}

/// Fails with a clear message unless `path` is an x86-64 EFI application.
pub fn check_efi_app(path: &Path) -> Result<()> {
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .with_context(|| format!("cannot open the EFI application {}", path.display()))?
        .take(4096)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read the EFI application {}", path.display()))?;
    if let Some(why) = efi_app_problem(&head) {
        bail!(
            "{} is not an x86-64 UEFI application ({why}); build one with `cargo xtask build-efi` \
             (it produces target/efi/BOOTX64.EFI)",
            path.display()
        );
    }
    Ok(())
}
