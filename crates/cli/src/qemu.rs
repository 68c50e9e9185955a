//! Booting an image in QEMU with OVMF.
//!
//! The VM is a q35 machine with the image on virtio-blk (IDE is ~100x slower
//! under OVMF), no display (`-vga none` makes the serial console 4x faster),
//! no network and no default devices, `-no-reboot` (a reset ends QEMU), and an
//! `isa-debug-exit` device at port 0xf4: a guest that writes `v` there ends
//! QEMU with status `(v << 1) | 1`. Each run gets a fresh copy of the OVMF
//! variable store, since stale boot entries drop OVMF into its shell.
//!
//! Environment overrides: `LBM_QEMU` (the QEMU binary), `LBM_OVMF_CODE` and
//! `LBM_OVMF_VARS` (firmware files; for a unified `OVMF.fd` give the same file
//! twice), `LBM_ACCEL` (`kvm` or `tcg`, skipping the KVM probe).

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The QEMU binary looked for on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The I/O port of the `isa-debug-exit` device.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// OVMF firmware pairs (code, variable-store template) looked for, in order.
/// A pair whose two paths are equal is a unified image (code and variables in
/// one file).
pub const OVMF_CANDIDATES: &[(&str, &str)] = &[
    // Debian, Ubuntu (package `ovmf`)
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    // Fedora (edk2-ovmf), Arch (edk2-ovmf)
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
        "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
    ),
    // Older Debian/Ubuntu unified image
    ("/usr/share/ovmf/OVMF.fd", "/usr/share/ovmf/OVMF.fd"),
    ("/usr/share/qemu/OVMF.fd", "/usr/share/qemu/OVMF.fd"),
];

/// Where the guest's serial console goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// On the terminal, like `-nographic`: keys go to the guest (Ctrl-C
    /// included), Ctrl-A X quits QEMU, Ctrl-A C toggles the QEMU monitor.
    Stdio,
    /// On QEMU's stdin/stdout as plain pipes (for programs driving the VM):
    /// `command` sets stdin, stdout and stderr to `Stdio::piped()`.
    Pipe,
}

/// How to run the VM.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// The raw disk image to boot.
    pub image: PathBuf,
    /// Guest memory as QEMU's `-m` takes it, e.g. `"4G"`.
    pub memory: String,
    /// Virtual CPUs.
    pub cores: usize,
    pub serial: Serial,
    /// Attach the image read-only (several VMs can then share it).
    pub readonly: bool,
    /// Appended to QEMU's command line.
    pub extra_args: Vec<String>,
}

impl QemuOptions {
    /// 4 GiB, 2 cores, serial on the terminal, read-write image.
    pub fn new(image: impl Into<PathBuf>) -> Self {
        QemuOptions {
            image: image.into(),
            memory: "4G".to_string(),
            cores: 2,
            serial: Serial::Stdio,
            readonly: false,
            extra_args: Vec::new(),
        }
    }
}

/// `qemu-system-x86_64` from `LBM_QEMU` or `PATH`.
pub fn find_qemu() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("LBM_QEMU") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("LBM_QEMU is set to {}, which is not a file", p.display());
    }
    find_qemu_in(&std::env::var_os("PATH").unwrap_or_default())
}

fn find_qemu_in(path: &std::ffi::OsStr) -> Result<PathBuf> {
    for dir in std::env::split_paths(path) {
        let candidate = dir.join(QEMU_BINARY);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!(
        "{QEMU_BINARY} was not found on PATH; install it with `sudo apt-get install qemu-system-x86` \
         (or run `cargo xtask setup`)"
    )
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// The OVMF firmware: (code, variable-store template). From `LBM_OVMF_CODE`
/// and `LBM_OVMF_VARS`, else the first of [`OVMF_CANDIDATES`] present.
pub fn find_ovmf() -> Result<(PathBuf, PathBuf)> {
    match (
        std::env::var_os("LBM_OVMF_CODE"),
        std::env::var_os("LBM_OVMF_VARS"),
    ) {
        (Some(code), Some(vars)) => {
            let (code, vars) = (PathBuf::from(code), PathBuf::from(vars));
            for p in [&code, &vars] {
                if !p.is_file() {
                    bail!(
                        "OVMF file {} (from LBM_OVMF_CODE/LBM_OVMF_VARS) does not exist",
                        p.display()
                    );
                }
            }
            return Ok((code, vars));
        }
        (None, None) => {}
        _ => bail!("set both LBM_OVMF_CODE and LBM_OVMF_VARS, or neither"),
    }
    find_ovmf_in(OVMF_CANDIDATES)
}

fn find_ovmf_in(candidates: &[(&str, &str)]) -> Result<(PathBuf, PathBuf)> {
    for (code, vars) in candidates {
        if Path::new(code).is_file() && Path::new(vars).is_file() {
            return Ok((PathBuf::from(code), PathBuf::from(vars)));
        }
    }
    let looked: Vec<&str> = candidates.iter().map(|(c, _)| *c).collect();
    bail!(
        "no OVMF UEFI firmware found (looked for {}); install it with `sudo apt-get install ovmf` \
         (or run `cargo xtask setup`)",
        looked.join(", ")
    )
}

/// Copies the OVMF variable-store template into `dir` (a fresh store for one
/// run) and returns the copy's path.
pub fn fresh_vars(dir: &Path) -> Result<PathBuf> {
    let (_, template) = find_ovmf()?;
    let copy = dir.join("OVMF_VARS.fd");
    fs::copy(&template, &copy)
        .with_context(|| format!("cannot copy {} to {}", template.display(), copy.display()))?;
    #[cfg(unix)]
    {
        // The template is read-only; the copy must be writable.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot make {} writable", copy.display()))?;
    }
    Ok(copy)
}

/// Whether KVM works here: `/dev/kvm` opens read-write and QEMU can set up a
/// q35 VM with `-cpu max` on it (on nested machines without VMX it cannot;
/// QEMU then aborts). Probed once per process, ~0.1 s. `LBM_ACCEL=kvm|tcg`
/// skips the probe.
pub fn kvm_usable() -> bool {
    static KVM: OnceLock<bool> = OnceLock::new();
    *KVM.get_or_init(|| match std::env::var("LBM_ACCEL").as_deref() {
        Ok("kvm") => true,
        Ok("tcg") => false,
        _ => probe_kvm(),
    })
}

fn probe_kvm() -> bool {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let Ok(qemu) = find_qemu() else { return false };
    let child = Command::new(qemu)
        .args([
            "-accel", "kvm", "-machine", "q35", "-cpu", "max", "-m", "64M",
        ])
        .args(["-nodefaults", "-display", "none", "-S", "-monitor", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"quit\n");
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// The QEMU command for `opts`, using `vars_copy` as the (writable) OVMF
/// variable store: make it with [`fresh_vars`] in a temporary directory.
pub fn command(opts: &QemuOptions, vars_copy: &Path) -> Result<Command> {
    let qemu = find_qemu()?;
    let (code, vars_template) = find_ovmf()?;
    if !opts.image.is_file() {
        bail!(
            "disk image {} does not exist; build one with `lbm image`",
            opts.image.display()
        );
    }
    if !vars_copy.is_file() {
        bail!("OVMF variable store {} does not exist", vars_copy.display());
    }
    if opts.cores == 0 {
        bail!("the VM needs at least one core");
    }
    if opts.memory.trim().is_empty() {
        bail!("no VM memory size given");
    }

    let mut cmd = Command::new(qemu);
    let accel = if kvm_usable() { "kvm" } else { "tcg" };
    cmd.args(["-machine", "q35", "-accel", accel, "-cpu", "max"]);
    cmd.arg("-m").arg(&opts.memory);
    cmd.arg("-smp").arg(opts.cores.to_string());
    cmd.arg("-nodefaults");
    if code == vars_template {
        // Unified image: the whole (fresh) copy is the flash.
        cmd.arg("-drive").arg(drive_arg(
            "if=pflash,format=raw,unit=0,file=",
            vars_copy,
            "",
        ));
    } else {
        cmd.arg("-drive").arg(drive_arg(
            "if=pflash,format=raw,unit=0,file=",
            &code,
            ",readonly=on",
        ));
        cmd.arg("-drive").arg(drive_arg(
            "if=pflash,format=raw,unit=1,file=",
            vars_copy,
            "",
        ));
    }
    let ro = if opts.readonly { ",readonly=on" } else { "" };
    cmd.arg("-drive").arg(drive_arg(
        "if=none,id=disk0,format=raw,file=",
        &opts.image,
        ro,
    ));
    cmd.args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
    cmd.args(["-vga", "none", "-display", "none", "-no-reboot"]);
    cmd.args([
        "-device",
        &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
    ]);
    match opts.serial {
        Serial::Stdio => {
            cmd.args(["-chardev", "stdio,id=con0,mux=on,signal=off"]);
            cmd.args([
                "-serial",
                "chardev:con0",
                "-mon",
                "chardev=con0,mode=readline",
            ]);
        }
        Serial::Pipe => {
            cmd.args([
                "-chardev",
                "stdio,id=con0,signal=off",
                "-serial",
                "chardev:con0",
            ]);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
    }
    cmd.args(&opts.extra_args);
    Ok(cmd)
}

/// `prefix` + path (commas doubled, as QEMU's option syntax wants) + `suffix`.
fn drive_arg(prefix: &str, path: &Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    let p = path.as_os_str();
    match p.to_str() {
        Some(text) => s.push(text.replace(',', ",,")),
        None => s.push(p),
    }
    s.push(suffix);
    s
}

/// Boots `opts.image` and waits for QEMU to end; returns its exit status.
/// With [`Serial::Stdio`] the console is the terminal (Ctrl-A X quits); with
/// [`Serial::Pipe`] the guest's output passes through and it gets no input.
/// A guest writing `v` to port 0xf4 makes the status `(v << 1) | 1`.
pub fn run(opts: &QemuOptions) -> Result<i32> {
    let dir = tempfile::Builder::new()
        .prefix("lbm-qemu-")
        .tempdir()
        .context("cannot create a temporary directory for the OVMF variables")?;
    let vars = fresh_vars(dir.path())?;
    let mut cmd = command(opts, &vars)?;
    if opts.serial == Serial::Pipe {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
    } else {
        eprintln!("[lbm qemu] serial console on this terminal; Ctrl-A X quits QEMU");
    }
    let status = cmd
        .status()
        .map_err(|e| anyhow!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    drop(dir);
    match status.code() {
        Some(code) => Ok(code),
        None => bail!("QEMU was ended by a signal ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_say_how_to_install_them() {
        let err = find_qemu_in(std::ffi::OsStr::new("/nonexistent-dir"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sudo apt-get install qemu-system-x86"),
            "{err}"
        );
        assert!(err.contains("cargo xtask setup"), "{err}");
        let err = find_ovmf_in(&[("/nonexistent/OVMF_CODE.fd", "/nonexistent/OVMF_VARS.fd")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sudo apt-get install ovmf"), "{err}");
        assert!(err.contains("/nonexistent/OVMF_CODE.fd"), "{err}");
    }

    #[test]
    fn drive_paths_escape_commas() {
        let arg = drive_arg("file=", Path::new("/tmp/a,b.img"), ",readonly=on");
        assert_eq!(arg, "file=/tmp/a,,b.img,readonly=on");
    }
}
