//! `cargo xtask efi-smoke`: boots the built UEFI app under QEMU + OVMF (the
//! `qemu` crate) with a throwaway directory served as a FAT disk (QEMU's
//! vvfat), then plays a script of expected output and keys to send over the
//! serial console.
//!
//! This is a developer harness for the firmware layer; `lbm image` / `lbm
//! qemu` are the user-facing tools.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qemu::{Disk, Vm, VmConfig};

const HELP: &str = "\
usage: cargo xtask efi-smoke [OPTIONS]

Boots target/efi/BOOTX64.EFI (or --efi PATH) under QEMU with an ESP made from
a temporary directory, then runs the script given by --expect/--send in order.

options:
  --efi PATH           the app to boot (default target/efi/BOOTX64.EFI)
  --file SRC[=DEST]    copy SRC into the ESP (DEST is a path inside it, with /;
                       default: the root); may repeat
  --expect TEXT        wait until TEXT appears in the output (after the
                       previous expectation; the output is matched without
                       ANSI escapes and carriage returns)
  --reject TEXT        fail if TEXT ever appears in the output
  --send TEXT          send TEXT to the serial port; escapes: \\r \\n \\e \\t
                       \\xHH \\\\ ; sent one character at a time
  --until-exit         after the script, wait for QEMU to exit (shutdown)
  --timeout SECS       give up after SECS seconds (default 120)
  --smp N              virtual CPUs (default 2)
  --mem SIZE           guest memory (default 2G)
  --log PATH           also write the console output to PATH
  --image PATH         boot this disk image (e.g. from `lbm image`, opened
                       read-only) instead of an ESP made from --efi/--file
  --arch A             x86_64 (default) or aarch64: the guest, and the default
                       app (target/efi/BOOTAA64.EFI for aarch64)
";

/// One step of a console script.
pub enum Step {
    /// Wait for this text (after the previous expectation), in the output
    /// without ANSI escapes and carriage returns.
    Expect(String),
    /// Send these bytes.
    Send(Vec<u8>),
}

/// What to boot and what to play.
pub struct Opts {
    pub efi: PathBuf,
    /// The guest's architecture.
    pub arch: qemu::Arch,
    /// (source on the host, destination path inside the ESP with `/`).
    pub files: Vec<(PathBuf, String)>,
    /// (text, destination path inside the ESP).
    pub texts: Vec<(String, String)>,
    pub steps: Vec<Step>,
    pub rejects: Vec<String>,
    pub until_exit: bool,
    pub timeout: Duration,
    pub smp: u32,
    pub mem: String,
    pub log: Option<PathBuf>,
    /// Boot this disk image (read-only) instead of an ESP made from files.
    pub image: Option<PathBuf>,
}

impl Opts {
    /// Defaults: the built app, 2 vCPUs, 2 GiB, 120 s.
    pub fn new(root: &Path) -> Self {
        Opts {
            efi: root.join("target/efi/BOOTX64.EFI"),
            arch: qemu::Arch::X86_64,
            files: Vec::new(),
            texts: Vec::new(),
            steps: Vec::new(),
            rejects: Vec::new(),
            until_exit: false,
            timeout: Duration::from_secs(120),
            smp: 2,
            mem: "2G".into(),
            log: None,
            image: None,
        }
    }
}

/// Decodes the escapes of `--send`.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let Some(&c) = b.get(i + 1) else {
            return Err(format!("trailing backslash in '{s}'"));
        };
        i += 2;
        match c {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b'e' => out.push(0x1b),
            b't' => out.push(b'\t'),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = s.get(i..i + 2).ok_or_else(|| format!("bad \\x escape in '{s}'"))?;
                let v = u8::from_str_radix(hex, 16).map_err(|_| format!("bad \\x escape in '{s}'"))?;
                if v == 0x01 {
                    return Err("refusing to send 0x01 (QEMU's escape key)".into());
                }
                out.push(v);
                i += 2;
            }
            other => return Err(format!("unknown escape '\\{}' in '{s}'", other as char)),
        }
    }
    Ok(out)
}

fn parse(root: &Path, args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::new(root);
    let mut efi_given = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or_else(|| format!("efi-smoke: {name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => return Err(HELP.to_string()),
            "--efi" => {
                o.efi = PathBuf::from(val("--efi")?);
                efi_given = true;
            }
            "--arch" => o.arch = qemu::Arch::parse(&val("--arch")?).map_err(|e| format!("efi-smoke: {e}"))?,
            "--file" => {
                let v = val("--file")?;
                let (src, dest) = match v.split_once('=') {
                    Some((s, d)) => (PathBuf::from(s), d.trim_start_matches('/').to_string()),
                    None => {
                        let p = PathBuf::from(&v);
                        let name = p
                            .file_name()
                            .ok_or_else(|| format!("efi-smoke: bad --file '{v}'"))?
                            .to_string_lossy()
                            .into_owned();
                        (p, name)
                    }
                };
                o.files.push((src, dest));
            }
            "--expect" => o.steps.push(Step::Expect(val("--expect")?)),
            "--reject" => o.rejects.push(val("--reject")?),
            "--send" => o.steps.push(Step::Send(unescape(&val("--send")?)?)),
            "--until-exit" => o.until_exit = true,
            "--timeout" => {
                let v = val("--timeout")?;
                let secs: u64 = v.parse().map_err(|_| format!("efi-smoke: bad --timeout '{v}'"))?;
                o.timeout = Duration::from_secs(secs);
            }
            "--smp" => {
                let v = val("--smp")?;
                o.smp = v.parse().map_err(|_| format!("efi-smoke: bad --smp '{v}'"))?;
            }
            "--mem" => o.mem = val("--mem")?,
            "--log" => o.log = Some(PathBuf::from(val("--log")?)),
            "--image" => o.image = Some(PathBuf::from(val("--image")?)),
            other => return Err(format!("efi-smoke: unknown argument '{other}'\n{HELP}")),
        }
    }
    if !efi_given {
        o.efi = root.join("target/efi").join(o.arch.boot_file());
    }
    Ok(o)
}

/// `cargo xtask efi-smoke ...`.
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let o = parse(root, args)?;
    boot(root, &o).map(|_| ())
}

/// Boots the app with the files and script of `o`; returns the console
/// output once the script has passed.
pub fn boot(root: &Path, o: &Opts) -> Result<Vec<u8>, String> {
    if o.image.is_some() && (!o.files.is_empty() || !o.texts.is_empty()) {
        return Err("efi-smoke: --image cannot be combined with --file".into());
    }
    if o.image.is_none() && !o.efi.exists() {
        return Err(format!("{} does not exist (run `cargo xtask build-efi`)", o.efi.display()));
    }
    // A fresh scratch directory per run (by process id).
    let work = root.join(format!("target/efi/smoke-{}", std::process::id()));
    let esp = work.join("esp");
    let boot = esp.join("EFI").join("BOOT");
    std::fs::create_dir_all(&boot).map_err(|e| format!("cannot create {}: {e}", boot.display()))?;
    std::fs::copy(&o.efi, boot.join(o.arch.boot_file()))
        .map_err(|e| format!("cannot copy {}: {e}", o.efi.display()))?;
    for (src, dest) in &o.files {
        let to = esp.join(dest);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::copy(src, &to).map_err(|e| format!("cannot copy {} to {}: {e}", src.display(), to.display()))?;
    }
    for (text, dest) in &o.texts {
        let to = esp.join(dest);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&to, text).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    }
    let disk = match &o.image {
        Some(img) => Disk::Image(img.clone()),
        None => Disk::FatDir(esp),
    };
    let result = boot_and_play(o, disk);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn boot_and_play(o: &Opts, disk: Disk) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    let config = VmConfig {
        memory: o.mem.clone(),
        cores: o.smp as usize,
        readonly: true,
        deadline: o.timeout,
        exclusive: false,
        arch: o.arch,
        ..VmConfig::default()
    };
    let mut vm = Vm::boot_with(disk, config).map_err(|e| format!("efi-smoke: {e:#}"))?;
    let played = play(o, &mut vm, start);
    if let Some(log) = &o.log {
        std::fs::write(log, vm.raw_output()).map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    }
    played.map_err(|e| format!("efi-smoke: {e}"))?;
    eprintln!("efi-smoke: ok ({} s)", start.elapsed().as_secs());
    Ok(vm.raw_output())
}

/// Plays the script on `vm`: each expectation races the rejected texts.
fn play(o: &Opts, vm: &mut Vm, start: Instant) -> Result<(), String> {
    let left = || o.timeout.saturating_sub(start.elapsed());
    for (i, step) in o.steps.iter().enumerate() {
        match step {
            Step::Expect(t) => {
                let mut needles = vec![t.as_str()];
                needles.extend(o.rejects.iter().map(String::as_str));
                let (which, _) = vm
                    .expect_any(&needles, left())
                    .map_err(|e| format!("at step {} of {}: {e:#}", i + 1, o.steps.len()))?;
                if which > 0 {
                    return Err(format!("rejected text '{}' appeared", needles[which]));
                }
            }
            Step::Send(bytes) => vm.send_slowly(bytes).map_err(|e| format!("{e:#}"))?,
        }
    }
    if o.until_exit {
        match vm.wait_end(left()) {
            Some(exit) => eprintln!("efi-smoke: QEMU ended ({exit:?})"),
            None => return Err(format!("timeout after {} s waiting for QEMU to exit", o.timeout.as_secs())),
        }
    }
    let out = vm.output();
    match o.rejects.iter().find(|r| out.contains(r.as_str())) {
        Some(r) => Err(format!("rejected text '{r}' appeared")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_handles_escapes() {
        assert_eq!(unescape("a\\r\\n").unwrap(), b"a\r\n");
        assert_eq!(unescape("\\e[A\\x7f\\\\").unwrap(), b"\x1b[A\x7f\\");
        assert!(unescape("\\x01").is_err());
        assert!(unescape("\\q").is_err());
        assert!(unescape("x\\").is_err());
    }
}
