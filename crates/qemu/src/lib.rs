//! Booting UEFI disks in QEMU with OVMF, one driver for `lbm qemu`, `cargo
//! xtask efi-smoke`/`efi-e2e` and the VM tests.
//!
//! [`Ovmf::find`] finds the firmware, [`VmConfig`] describes the VM (memory,
//! cores, a [`Disk`]: an image file or a directory served as a FAT disk,
//! extra arguments), [`run_on_terminal`] boots it with the serial console on
//! this terminal, and [`Vm::boot_with`] boots it with the console on pipes
//! for a program to drive: sentinel waits with deadlines, QEMU killed on
//! drop, its exit status mapped by [`Exit`].
//!
//! The VM is a q35 machine with the image on virtio-blk (IDE is ~100x slower
//! under OVMF), no display (`-vga none` makes the serial console 4x faster),
//! no network and no default devices, `-no-reboot` (a reset ends QEMU), and an
//! `isa-debug-exit` device at port 0xf4: a guest that writes `v` there ends
//! QEMU with status `(v << 1) | 1`. Each run gets a fresh copy of the OVMF
//! variable store, since stale boot entries drop OVMF into its shell.
//!
//! An aarch64 guest ([`VmConfig::arch`] = [`Arch::Aarch64`]) is a `virt`
//! machine of `qemu-system-aarch64` with the AAVMF firmware (Debian packages
//! `qemu-system-arm` and `qemu-efi-aarch64`), the same virtio-blk disk and
//! serial console, no debug-exit device (the guest powers off through PSCI),
//! under TCG unless the host itself is aarch64 with KVM.
//!
//! Environment overrides: `LBM_QEMU` (the QEMU binary; `LBM_QEMU_AARCH64` for
//! aarch64), `LBM_OVMF_CODE` and `LBM_OVMF_VARS` (firmware files; for a
//! unified `OVMF.fd` give the same file twice; `LBM_AAVMF_CODE` and
//! `LBM_AAVMF_VARS` for aarch64), `LBM_ACCEL` (`kvm` or `tcg`, skipping the
//! KVM probe).
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub mod tiny_efi;
mod vm;

pub use vm::{strip_ansi, AnsiStripper, Vm, CHAR_DELAY};

/// The QEMU binary looked for on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The QEMU binary for aarch64 guests.
pub const QEMU_BINARY_AARCH64: &str = "qemu-system-aarch64";

/// The guest's architecture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Arch {
    /// A q35 PC with OVMF.
    #[default]
    X86_64,
    /// A `virt` machine with AAVMF.
    Aarch64,
}

impl Arch {
    /// From a name such as `x86_64` or `aarch64` (also `x64`, `amd64`, `arm64`).
    pub fn parse(s: &str) -> Result<Arch> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "x64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" | "aa64" => Ok(Arch::Aarch64),
            other => bail!("unknown architecture '{other}': use x86_64 or aarch64"),
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The removable-media boot file the firmware starts (`EFI/BOOT/...`).
    pub fn boot_file(self) -> &'static str {
        match self {
            Arch::X86_64 => "BOOTX64.EFI",
            Arch::Aarch64 => "BOOTAA64.EFI",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Arch::X86_64 => QEMU_BINARY,
            Arch::Aarch64 => QEMU_BINARY_AARCH64,
        }
    }

    fn qemu_env(self) -> &'static str {
        match self {
            Arch::X86_64 => "LBM_QEMU",
            Arch::Aarch64 => "LBM_QEMU_AARCH64",
        }
    }

    fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }
}

/// AAVMF firmware pairs (code, variable-store template) for aarch64 guests.
pub const AAVMF_CANDIDATES: &[(&str, &str)] = &[
    // Debian, Ubuntu (package `qemu-efi-aarch64`)
    ("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),
    // Fedora, Arch (edk2-aarch64)
    ("/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/vars-template-pflash.raw"),
];
/// The I/O port of the `isa-debug-exit` device.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// OVMF firmware pairs (code, variable-store template) looked for, in order.
/// A pair whose two paths are equal is a unified image (code and variables in
/// one file).
pub const OVMF_CANDIDATES: &[(&str, &str)] = &[
    // Debian, Ubuntu (package `ovmf`)
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    // Fedora (edk2-ovmf), Arch (edk2-ovmf)
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
    ("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),
    // Older Debian/Ubuntu unified image
    ("/usr/share/ovmf/OVMF.fd", "/usr/share/ovmf/OVMF.fd"),
    ("/usr/share/qemu/OVMF.fd", "/usr/share/qemu/OVMF.fd"),
];

/// `qemu-system-x86_64` from `LBM_QEMU` or `PATH`.
pub fn find_qemu() -> Result<PathBuf> {
    find_qemu_for(Arch::X86_64)
}

/// The QEMU binary for `arch` guests, from its environment variable or `PATH`.
pub fn find_qemu_for(arch: Arch) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(arch.qemu_env()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{} is set to {}, which is not a file", arch.qemu_env(), p.display());
    }
    find_qemu_in(arch, &std::env::var_os("PATH").unwrap_or_default())
}

fn find_qemu_in(arch: Arch, path: &std::ffi::OsStr) -> Result<PathBuf> {
    for dir in std::env::split_paths(path) {
        let candidate = dir.join(arch.binary());
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!(
        "{} was not found on PATH; install it with `sudo apt-get install {}` (or run `cargo xtask setup`)",
        arch.binary(),
        arch.qemu_package()
    )
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// The OVMF firmware files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ovmf {
    /// The firmware code (mapped read-only).
    pub code: PathBuf,
    /// The variable-store template, copied for each run. Equal to `code`
    /// for a unified image (code and variables in one file).
    pub vars: PathBuf,
}

impl Ovmf {
    /// From `LBM_OVMF_CODE` and `LBM_OVMF_VARS` (both or neither), else the
    /// first of [`OVMF_CANDIDATES`] present. The error says how to install
    /// OVMF.
    pub fn find() -> Result<Ovmf> {
        Ovmf::find_for(Arch::X86_64)
    }

    /// The firmware for `arch` guests: OVMF for x86-64, AAVMF for aarch64
    /// (`LBM_AAVMF_CODE` and `LBM_AAVMF_VARS` override).
    pub fn find_for(arch: Arch) -> Result<Ovmf> {
        let (code_var, vars_var) = match arch {
            Arch::X86_64 => ("LBM_OVMF_CODE", "LBM_OVMF_VARS"),
            Arch::Aarch64 => ("LBM_AAVMF_CODE", "LBM_AAVMF_VARS"),
        };
        match (std::env::var_os(code_var), std::env::var_os(vars_var)) {
            (Some(code), Some(vars)) => {
                let (code, vars) = (PathBuf::from(code), PathBuf::from(vars));
                for p in [&code, &vars] {
                    if !p.is_file() {
                        bail!("firmware file {} (from {code_var}/{vars_var}) does not exist", p.display());
                    }
                }
                Ok(Ovmf { code, vars })
            }
            (None, None) => match arch {
                Arch::X86_64 => Ovmf::find_in(OVMF_CANDIDATES, "OVMF", "ovmf"),
                Arch::Aarch64 => Ovmf::find_in(AAVMF_CANDIDATES, "AAVMF (aarch64)", "qemu-efi-aarch64"),
            },
            _ => bail!("set both {code_var} and {vars_var}, or neither"),
        }
    }

    fn find_in(candidates: &[(&str, &str)], name: &str, package: &str) -> Result<Ovmf> {
        for (code, vars) in candidates {
            if Path::new(code).is_file() && Path::new(vars).is_file() {
                return Ok(Ovmf { code: PathBuf::from(code), vars: PathBuf::from(vars) });
            }
        }
        let looked: Vec<&str> = candidates.iter().map(|(c, _)| *c).collect();
        bail!(
            "no {name} UEFI firmware found (looked for {}); install it with `sudo apt-get install {package}` \
             (or run `cargo xtask setup`)",
            looked.join(", ")
        )
    }

    /// Whether code and variables are one file.
    pub fn is_unified(&self) -> bool {
        self.code == self.vars
    }

    /// Copies the variable-store template into `dir` (a fresh store for one
    /// run: stale boot entries drop OVMF into its shell) and returns the
    /// copy's path.
    pub fn fresh_vars(&self, dir: &Path) -> Result<PathBuf> {
        let copy = dir.join("OVMF_VARS.fd");
        fs::copy(&self.vars, &copy)
            .with_context(|| format!("cannot copy {} to {}", self.vars.display(), copy.display()))?;
        #[cfg(unix)]
        {
            // The template is read-only; the copy must be writable.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o644))
                .with_context(|| format!("cannot make {} writable", copy.display()))?;
        }
        Ok(copy)
    }
}

/// Whether KVM works here: `/dev/kvm` opens read-write and OVMF runs its
/// first three seconds on a q35 VM with `-cpu max` under it (on nested
/// machines without VMX QEMU aborts, and on some it starts and then fails
/// to emulate the firmware). Probed once per process, 3 s.
/// `LBM_ACCEL=kvm|tcg` skips the probe.
pub fn kvm_usable() -> bool {
    static KVM: OnceLock<bool> = OnceLock::new();
    *KVM.get_or_init(|| match std::env::var("LBM_ACCEL").as_deref() {
        Ok("kvm") => true,
        Ok("tcg") => false,
        _ => probe_kvm(),
    })
}

fn probe_kvm() -> bool {
    if fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let Ok(qemu) = find_qemu() else { return false };
    // Setting up the VM is not enough: on some nested hosts KVM starts and
    // then cannot emulate the firmware's first instructions ("KVM internal
    // error ... emulation failure" in OVMF's SEC phase, the VM paused for
    // good). So run the firmware's first seconds and watch for that.
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", "kvm", "-machine", "q35", "-cpu", "max", "-m", "256M"]);
    cmd.args(["-nodefaults", "-display", "none", "-serial", "none", "-monitor", "none"]);
    match Ovmf::find() {
        Ok(o) => {
            cmd.arg("-drive").arg(drive_arg("if=pflash,format=raw,unit=0,file=", &o.code, ",readonly=on"));
        }
        Err(_) => return false,
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
    let Ok(mut child) = child else { return false };
    let Some(mut stderr) = child.stderr.take() else { return false };
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let until = Instant::now() + Duration::from_secs(3);
    let exited_ok = loop {
        match child.try_wait() {
            // The firmware alone (no disk, no variable store) may stop on its
            // own; only a failed start counts against KVM.
            Ok(Some(status)) => break status.success(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break true;
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    exited_ok && !text.contains("KVM internal error") && !text.contains("emulation failure")
}

/// What the guest boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// A raw disk image (GPT + ESP, e.g. from `lbm image`).
    Image(PathBuf),
    /// A host directory served as a FAT disk (QEMU's vvfat, read-write):
    /// the ESP's files, `EFI/BOOT/BOOTX64.EFI` included.
    FatDir(PathBuf),
}

impl From<&Path> for Disk {
    fn from(p: &Path) -> Disk {
        Disk::Image(p.to_path_buf())
    }
}

impl From<&PathBuf> for Disk {
    fn from(p: &PathBuf) -> Disk {
        Disk::Image(p.clone())
    }
}

impl From<PathBuf> for Disk {
    fn from(p: PathBuf) -> Disk {
        Disk::Image(p)
    }
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// On the terminal, like `-nographic`: keys go to the guest (Ctrl-C
    /// included), Ctrl-A X quits QEMU, Ctrl-A C toggles the QEMU monitor.
    Terminal,
    /// On QEMU's stdin/stdout as plain pipes (for programs driving the VM):
    /// [`command`] sets stdin, stdout and stderr to `Stdio::piped()`.
    Pipe,
}

/// How a VM is started.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Guest memory as QEMU's `-m` takes it, e.g. `"4G"`.
    pub memory: String,
    /// Virtual CPUs.
    pub cores: usize,
    /// The guest's architecture (x86-64 by default).
    pub arch: Arch,
    /// Attach a [`Disk::Image`] read-only (several VMs can then share it).
    pub readonly: bool,
    /// Appended to QEMU's command line.
    pub extra_args: Vec<String>,
    /// [`Vm`] only: the VM is killed this long after it started, whatever
    /// happens.
    pub deadline: Duration,
    /// [`Vm`] only: wait until no other exclusive VM of this process runs
    /// (tests in a file run in parallel; TCG VMs on a small shared machine
    /// then get so slow that console timing suffers). Released when the
    /// `Vm` is dropped: a test that needs two VMs at once must clear it on
    /// the second.
    pub exclusive: bool,
}

impl Default for VmConfig {
    /// 1 GiB, 1 core, read-only image, exclusive, deadline from
    /// `LBM_VM_DEADLINE_SECS` or 300 s.
    fn default() -> Self {
        let secs = std::env::var("LBM_VM_DEADLINE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
        VmConfig {
            memory: "1G".into(),
            cores: 1,
            arch: Arch::X86_64,
            readonly: true,
            extra_args: Vec::new(),
            deadline: Duration::from_secs(secs),
            exclusive: true,
        }
    }
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Status 0: the guest powered off (or Ctrl-A X on the terminal).
    PoweredOff,
    /// The guest wrote this value to the `isa-debug-exit` port
    /// ([`DEBUG_EXIT_PORT`]); QEMU's status was `(value << 1) | 1`. (A 0
    /// gives status 1, QEMU's own failure status: it maps to `Failed(1)`.)
    DebugExit(u8),
    /// Any other status: QEMU itself failed (bad arguments, missing files).
    Failed(i32),
    /// Ended by a signal (killed).
    Killed,
}

impl Exit {
    /// Maps QEMU's exit code (`None`: ended by a signal).
    pub fn from_code(code: Option<i32>) -> Exit {
        match code {
            Some(0) => Exit::PoweredOff,
            Some(c) if c & 1 == 1 && (3..=511).contains(&c) => Exit::DebugExit((c >> 1) as u8),
            Some(c) => Exit::Failed(c),
            None => Exit::Killed,
        }
    }

    /// The exit code QEMU had (`None` when killed).
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::PoweredOff => Some(0),
            Exit::DebugExit(v) => Some(((v as i32) << 1) | 1),
            Exit::Failed(c) => Some(c),
            Exit::Killed => None,
        }
    }
}

/// The QEMU command booting `disk` as `config` says, with the console on
/// `serial` and `vars` as the (writable) OVMF variable store: make it with
/// [`Ovmf::fresh_vars`] in a temporary directory.
///
/// The VM is a q35 machine (KVM when [`kvm_usable`], else TCG) with the disk
/// on virtio-blk (IDE is ~100x slower under OVMF), no display (`-vga none`
/// makes the serial console 4x faster), no network and no default devices,
/// `-no-reboot` (a reset ends QEMU), and an `isa-debug-exit` device at
/// [`DEBUG_EXIT_PORT`].
pub fn command(disk: &Disk, config: &VmConfig, serial: Serial, vars: &Path) -> Result<Command> {
    let qemu = find_qemu_for(config.arch)?;
    let ovmf = Ovmf::find_for(config.arch)?;
    match disk {
        Disk::Image(p) if !p.is_file() => {
            bail!("disk image {} does not exist; build one with `lbm image`", p.display())
        }
        Disk::FatDir(p) if !p.is_dir() => bail!("ESP directory {} does not exist", p.display()),
        _ => {}
    }
    if !vars.is_file() {
        bail!("OVMF variable store {} does not exist", vars.display());
    }
    if config.cores == 0 {
        bail!("the VM needs at least one core");
    }
    if config.memory.trim().is_empty() {
        bail!("no VM memory size given");
    }

    let mut cmd = Command::new(qemu);
    match config.arch {
        Arch::X86_64 => {
            let accel = if kvm_usable() { "kvm" } else { "tcg" };
            cmd.args(["-machine", "q35", "-accel", accel, "-cpu", "max"]);
        }
        Arch::Aarch64 => {
            // KVM only on an aarch64 host that asks for it; TCG otherwise,
            // with the implementation-defined pointer authentication (the
            // architected one costs TCG a lot) and every extension of `max`
            // (NEON, dotprod, i8mm).
            if cfg!(target_arch = "aarch64") && std::env::var("LBM_ACCEL").as_deref() == Ok("kvm") {
                cmd.args(["-machine", "virt", "-accel", "kvm", "-cpu", "host"]);
            } else {
                cmd.args(["-machine", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"]);
            }
        }
    }
    cmd.arg("-m").arg(&config.memory);
    cmd.arg("-smp").arg(config.cores.to_string());
    cmd.arg("-nodefaults");
    if ovmf.is_unified() {
        // Unified image: the whole (fresh) copy is the flash.
        cmd.arg("-drive").arg(drive_arg("if=pflash,format=raw,unit=0,file=", vars, ""));
    } else {
        cmd.arg("-drive").arg(drive_arg("if=pflash,format=raw,unit=0,file=", &ovmf.code, ",readonly=on"));
        cmd.arg("-drive").arg(drive_arg("if=pflash,format=raw,unit=1,file=", vars, ""));
    }
    match disk {
        Disk::Image(p) => {
            let ro = if config.readonly { ",readonly=on" } else { "" };
            cmd.arg("-drive").arg(drive_arg("if=none,id=disk0,format=raw,file=", p, ro));
        }
        Disk::FatDir(p) => {
            cmd.arg("-drive").arg(drive_arg("if=none,id=disk0,format=raw,file=fat:rw:", p, ""));
        }
    }
    cmd.args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
    cmd.args(["-display", "none", "-no-reboot"]);
    if config.arch == Arch::X86_64 {
        cmd.args(["-vga", "none"]);
        cmd.args(["-device", &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04")]);
    }
    match serial {
        Serial::Terminal => {
            cmd.args(["-chardev", "stdio,id=con0,mux=on,signal=off"]);
            cmd.args(["-serial", "chardev:con0", "-mon", "chardev=con0,mode=readline"]);
        }
        Serial::Pipe => {
            cmd.args(["-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0"]);
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    cmd.args(&config.extra_args);
    Ok(cmd)
}

/// Parses `HOST:GUEST` TCP port pairs (`8080:80`; `8080` alone forwards the
/// same port).
pub fn parse_forwards(specs: &[String]) -> Result<Vec<(u16, u16)>> {
    specs
        .iter()
        .map(|spec| {
            let (h, g) = spec.split_once(':').unwrap_or((spec, spec));
            let port = |p: &str| -> Result<u16> {
                match p.trim().parse::<u16>() {
                    Ok(v) if v > 0 => Ok(v),
                    _ => bail!("bad port forward '{spec}': use HOSTPORT:GUESTPORT with ports 1-65535"),
                }
            };
            Ok((port(h)?, port(g)?))
        })
        .collect()
}

/// QEMU arguments for a user-mode (slirp) network with a virtio NIC, where
/// each `(host, guest)` forwards TCP `127.0.0.1:host` to the guest's port
/// `guest`. The forwards are bound to the loopback address only: nothing
/// outside this machine reaches the guest.
pub fn user_net_args(_arch: Arch, forwards: &[(u16, u16)]) -> Vec<String> {
    let mut netdev = String::from("user,id=net0");
    for (h, g) in forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
    }
    // No option ROM: the firmware's own virtio-net driver is enough, and
    // iPXE would only add a network boot attempt.
    vec!["-netdev".into(), netdev, "-device".into(), "virtio-net-pci,netdev=net0,romfile=".into()]
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

/// Boots `disk` with the serial console on this terminal (Ctrl-A X quits)
/// and waits for QEMU to end ([`VmConfig::deadline`] and
/// [`VmConfig::exclusive`] do not apply).
pub fn run_on_terminal(disk: &Disk, config: &VmConfig) -> Result<Exit> {
    let dir = tempfile::Builder::new()
        .prefix("lbm-qemu-")
        .tempdir()
        .context("cannot create a temporary directory for the OVMF variables")?;
    let vars = Ovmf::find_for(config.arch)?.fresh_vars(dir.path())?;
    let mut cmd = command(disk, config, Serial::Terminal, &vars)?;
    eprintln!("[lbm qemu] serial console on this terminal; Ctrl-A X quits QEMU");
    let status = cmd.status().map_err(|e| anyhow!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    Ok(Exit::from_code(status.code()))
}

/// Whether QEMU and OVMF are here, for tests that need them. When they are
/// not: with `CI` set, panics with a message saying what is missing (a QEMU
/// test must not pass silently in CI); otherwise prints a skip notice naming
/// `test` and returns `false`.
pub fn available(test: &str) -> bool {
    available_for(test, Arch::X86_64)
}

/// [`available`] for `arch` guests (QEMU and its firmware for that architecture).
pub fn available_for(test: &str, arch: Arch) -> bool {
    let missing = match (find_qemu_for(arch), Ovmf::find_for(arch)) {
        (Ok(_), Ok(_)) => return true,
        (Err(e), _) | (_, Err(e)) => format!("{e:#}"),
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test}: QEMU tests need QEMU and OVMF, and CI is set: {missing}");
    }
    eprintln!("SKIPPING {test}: {missing}");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_say_how_to_install_them() {
        let err = find_qemu_in(Arch::X86_64, std::ffi::OsStr::new("/nonexistent-dir")).unwrap_err().to_string();
        assert!(err.contains("sudo apt-get install qemu-system-x86"), "{err}");
        assert!(err.contains("cargo xtask setup"), "{err}");
        let err = find_qemu_in(Arch::Aarch64, std::ffi::OsStr::new("/nonexistent-dir")).unwrap_err().to_string();
        assert!(err.contains("qemu-system-aarch64") && err.contains("apt-get install qemu-system-arm"), "{err}");
        let err = Ovmf::find_in(&[("/nonexistent/OVMF_CODE.fd", "/nonexistent/OVMF_VARS.fd")], "OVMF", "ovmf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sudo apt-get install ovmf"), "{err}");
        assert!(err.contains("/nonexistent/OVMF_CODE.fd"), "{err}");
    }

    #[test]
    fn forwards_bind_loopback() {
        let f = parse_forwards(&["8080:80".into(), "9000".into()]).unwrap();
        assert_eq!(f, [(8080, 80), (9000, 9000)]);
        for bad in ["0:80", "x:80", "70000:1", "1:"] {
            assert!(parse_forwards(&[bad.into()]).is_err(), "{bad}");
        }
        let args = user_net_args(Arch::X86_64, &f);
        assert_eq!(args[1], "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:9000-:9000");
        assert_eq!(args[3], "virtio-net-pci,netdev=net0,romfile=");
    }

    #[test]
    fn arch_names() {
        for (s, a) in
            [("x86_64", Arch::X86_64), ("amd64", Arch::X86_64), ("aarch64", Arch::Aarch64), ("ARM64", Arch::Aarch64)]
        {
            assert_eq!(Arch::parse(s).unwrap(), a);
        }
        assert!(Arch::parse("riscv64").unwrap_err().to_string().contains("x86_64 or aarch64"));
        assert_eq!(Arch::Aarch64.boot_file(), "BOOTAA64.EFI");
        assert_eq!(Arch::parse(Arch::Aarch64.name()).unwrap(), Arch::Aarch64);
    }

    #[test]
    fn exit_codes_map() {
        assert_eq!(Exit::from_code(Some(0)), Exit::PoweredOff);
        assert_eq!(Exit::from_code(Some((0x21 << 1) | 1)), Exit::DebugExit(0x21));
        assert_eq!(Exit::from_code(Some(1)), Exit::Failed(1));
        assert_eq!(Exit::from_code(Some(2)), Exit::Failed(2));
        assert_eq!(Exit::from_code(None), Exit::Killed);
        for e in [Exit::PoweredOff, Exit::DebugExit(1), Exit::DebugExit(255), Exit::Failed(2), Exit::Killed] {
            assert_eq!(Exit::from_code(e.code()), e);
        }
    }

    #[test]
    fn drive_paths_escape_commas() {
        let arg = drive_arg("file=", Path::new("/tmp/a,b.img"), ",readonly=on");
        assert_eq!(arg, "file=/tmp/a,,b.img,readonly=on");
    }
}
