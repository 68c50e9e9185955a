//! A light check that a file to install as `EFI/BOOT/BOOTX64.EFI` or
//! `EFI/BOOT/BOOTAA64.EFI` is a UEFI application (PE32+, subsystem 10) for
//! x86-64 or aarch64, and which of the two: the machine type picks the
//! removable-media boot path, so a wrong file (the Linux `lbm` binary, a
//! model, a truncated copy) is refused when the image is built instead of
//! being found out at boot.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

const IMAGE_FILE_MACHINE_AMD64: u16 = 0x8664;
const IMAGE_FILE_MACHINE_ARM64: u16 = 0xaa64;

/// The architecture of a UEFI application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EfiArch {
    X86_64,
    Aarch64,
}

impl EfiArch {
    /// Where the firmware looks for it on removable media.
    pub fn boot_file(self) -> &'static str {
        match self {
            EfiArch::X86_64 => "EFI/BOOT/BOOTX64.EFI",
            EfiArch::Aarch64 => "EFI/BOOT/BOOTAA64.EFI",
        }
    }

    /// The architecture's name.
    pub fn name(self) -> &'static str {
        match self {
            EfiArch::X86_64 => "x86-64",
            EfiArch::Aarch64 => "aarch64",
        }
    }

    /// The boot file's name alone (`BOOTX64.EFI`).
    pub fn file_name(self) -> &'static str {
        &self.boot_file()["EFI/BOOT/".len()..]
    }

    /// From a name such as `x86_64` or `aarch64` (also `x64`, `amd64`, `arm64`).
    pub fn parse(s: &str) -> Option<EfiArch> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "x64" | "amd64" => Some(EfiArch::X86_64),
            "aarch64" | "arm64" | "aa64" => Some(EfiArch::Aarch64),
            _ => None,
        }
    }

    /// The `--arch` value naming it for `cargo xtask build-efi`.
    pub fn cargo_name(self) -> &'static str {
        match self {
            EfiArch::X86_64 => "x86_64",
            EfiArch::Aarch64 => "aarch64",
        }
    }
}
const PE32_PLUS_MAGIC: u16 = 0x20b;
const SUBSYSTEM_EFI_APPLICATION: u16 = 10;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Why `head` (the first bytes of a file) is not an x86-64 or aarch64 EFI
/// application, or `None` when it is one.
pub fn efi_app_problem(head: &[u8]) -> Option<String> {
    efi_app_arch(head).err()
}

/// The architecture of the EFI application whose first bytes are `head`, or
/// why it is not one.
pub fn efi_app_arch(head: &[u8]) -> Result<EfiArch, String> {
    if let Some(why) = efi_header_problem(head) {
        return Err(why);
    }
    // The header was checked: the PE offset and the machine field are there.
    let pe = u32_at(head, 0x3c).unwrap_or(0) as usize;
    Ok(if u16_at(head, pe + 4) == Some(IMAGE_FILE_MACHINE_ARM64) { EfiArch::Aarch64 } else { EfiArch::X86_64 })
}

fn efi_header_problem(head: &[u8]) -> Option<String> {
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
        Some(IMAGE_FILE_MACHINE_AMD64 | IMAGE_FILE_MACHINE_ARM64) => {}
        Some(m) => {
            return Some(format!("it is built for machine type {m:#06x}, not x86-64 (0x8664) or aarch64 (0xaa64)"))
        }
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

/// The architecture of the EFI application at `path`; fails with a clear
/// message unless it is an x86-64 or aarch64 one.
pub fn check_efi_app(path: &Path) -> Result<EfiArch> {
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .with_context(|| format!("cannot open the EFI application {}", path.display()))?
        .take(4096)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read the EFI application {}", path.display()))?;
    efi_app_arch(&head).map_err(|why| {
        anyhow::anyhow!(
            "{} is not an x86-64 or aarch64 UEFI application ({why}); build one with `cargo xtask build-efi` \
             (it produces target/efi/BOOTX64.EFI; with --arch aarch64, target/efi/BOOTAA64.EFI)",
            path.display()
        )
    })
}
