//! End-to-end checks of the `qemu` crate: images built by the `image` crate
//! boot in QEMU + OVMF (TCG here), the console is
//! captured and driven, and QEMU never outlives a test.
//!
//! Needs `qemu-system-x86_64` and OVMF: without them these tests print a skip
//! notice, or fail when `CI` is set.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qemu::tiny_efi::{tiny_efi_app, Finish};
use qemu::{Disk, Ovmf, Serial, Vm, VmConfig};

const BOOT: Duration = Duration::from_secs(90);

/// `dir/name`, an image holding `efi` and `files`.
fn make_image(dir: &Path, name: &str, efi: &[u8], files: &[(&str, &[u8])], size: Option<u64>) -> PathBuf {
    let output = dir.join(name);
    image::build_image_from_bytes(&output, efi, files, size).expect("build test image");
    output
}

fn process_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn console_text_is_cleaned() {
    let raw = b"\x1b[1;33mHi\x1b[0m\r\n\x1b(Bok\x1b]0;title\x07!\x1b[2J\x1b[01;01H\0end";
    assert_eq!(qemu::strip_ansi(raw), "Hi\nok!end");
    // A sequence split across reads is still removed.
    let mut s = qemu::AnsiStripper::default();
    let mut out = Vec::new();
    s.feed(b"a\x1b[3", &mut out);
    s.feed(b"1mb", &mut out);
    assert_eq!(out, b"ab");
}

/// `qemu::command` builds the documented command line.
#[test]
fn qemu_command_line() {
    if !qemu::available("qemu_command_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, [0u8; 512]).unwrap();
    let vars = Ovmf::find().unwrap().fresh_vars(dir.path()).unwrap();
    let config = VmConfig {
        memory: "3G".into(),
        cores: 2,
        readonly: true,
        extra_args: vec!["-S".into()],
        ..VmConfig::default()
    };
    let cmd = qemu::command(&Disk::Image(image.clone()), &config, Serial::Pipe, &vars).unwrap();
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let line = args.join(" ");
    for want in [
        "-machine q35",
        "-cpu max",
        "-m 3G",
        "-smp 2",
        "-vga none",
        "-display none",
        "-no-reboot",
        "-device isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-device virtio-blk-pci,drive=disk0,bootindex=0",
        "-serial chardev:con0",
    ] {
        assert!(line.contains(want), "{want:?} missing from {line}");
    }
    assert!(line.contains(&format!("file={},readonly=on", image.display())), "{line}");
    assert!(line.contains(&format!("unit=1,file={}", vars.display())), "{line}");
    assert!(line.contains("-accel tcg") || line.contains("-accel kvm"), "{line}");
    assert_eq!(args.last().map(String::as_str), Some("-S"), "extra args come last");
    assert!(qemu::command(&Disk::Image(dir.path().join("none.img")), &VmConfig::default(), Serial::Pipe, &vars)
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
    // A directory served as a FAT disk.
    let esp = dir.path().join("esp");
    std::fs::create_dir(&esp).unwrap();
    let cmd = qemu::command(&Disk::FatDir(esp.clone()), &config, Serial::Pipe, &vars).unwrap();
    let line: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    assert!(line.join(" ").contains(&format!("file=fat:rw:{}", esp.display())), "{line:?}");
}

/// OVMF loads `EFI/BOOT/BOOTX64.EFI` from the FAT32 ESP on virtio-blk, runs
/// it, its ConOut text reaches the serial pipe, and the isa-debug-exit code
/// comes back as QEMU's exit status.
#[test]
fn boots_fat32_image_and_reports_exit_code() {
    if !qemu::available("boots_fat32_image_and_reports_exit_code") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = tiny_efi_app("LBM-TINY-EFI: hello from FAT32\r\n", Finish::DebugExit(0x21));
    let image = make_image(dir.path(), "fat32.img", &app, &[], None);
    let mut vm = Vm::boot(&image).unwrap();
    vm.expect("LBM-TINY-EFI: hello from FAT32", BOOT).unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(20)), Some((0x21 << 1) | 1));
    eprintln!("FAT32 boot to exit: {:.1} s", vm.elapsed().as_secs_f64());
}

/// A 600 MiB image (FAT32 with 8 KiB clusters; sparse on the host) boots
/// too; the fitted image above has 512-byte clusters, the shell test's 32 KiB.
#[test]
fn boots_8k_cluster_image() {
    if !qemu::available("boots_8k_cluster_image") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = tiny_efi_app("LBM-TINY-EFI: hello from a 600 MiB image\r\n", Finish::DebugExit(0x05));
    let image = make_image(dir.path(), "min.img", &app, &[], Some(image::FAT32_MIN_IMAGE));
    let mut vm = Vm::boot(&image).unwrap();
    vm.expect("LBM-TINY-EFI: hello from a 600 MiB image", BOOT).unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(20)), Some(0x0b));
}

/// When the app returns, OVMF (with a fresh variable store) shows its setup
/// menu; the harness walks it to the built-in UEFI shell (arrow keys as ANSI
/// sequences, slow typing for ConIn), and the shell reads our files back
/// through OVMF's own FAT driver. The image is 3 GiB (sparse on the host) so
/// that its FAT32 has 32 KiB clusters, the size big models get.
#[test]
fn ovmf_shell_reads_the_image() {
    if !qemu::available("ovmf_shell_reads_the_image") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = tiny_efi_app("LBM-TINY-EFI: returning to the firmware\r\n", Finish::Return);
    let files: &[(&str, &[u8])] = &[
        ("lbm.cfg", b"model=models/tiny.gguf\r\nthreads=2\r\n"),
        ("models/tiny.gguf", b"GGUF\x03\x00\x00\x00not really a model"),
        ("models/tokenizer.json", b"{}"),
    ];
    let image = make_image(dir.path(), "shell.img", &app, files, Some(3 << 30));
    let mut vm = Vm::boot(&image).unwrap();
    vm.expect("LBM-TINY-EFI: returning to the firmware", BOOT).unwrap();
    let key = |vm: &mut Vm, k: &[u8]| {
        vm.send_raw(k).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    };
    // Front page: Select Language, Device Manager, Boot Manager, ...
    vm.expect("Select Entry", BOOT).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    key(&mut vm, b"\x1b[B");
    key(&mut vm, b"\x1b[B");
    key(&mut vm, b"\r");
    // Boot Manager: UEFI Misc Device (our disk), EFI Internal Shell.
    vm.expect("EFI Internal Shell", Duration::from_secs(30)).unwrap();
    vm.expect("Select Entry", Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    key(&mut vm, b"\x1b[B");
    key(&mut vm, b"\r");
    // The shell maps our partition: GPT partition 1 at LBA 0x800.
    let mapping = vm.expect("any other key to continue", BOOT).unwrap();
    assert!(mapping.contains("HD(1,GPT,"), "{mapping}");
    assert!(mapping.contains(",0x800,0x5FF000)"), "{mapping}");
    key(&mut vm, b" ");
    vm.expect("Shell>", Duration::from_secs(30)).unwrap();
    vm.send_line("type fs0:\\lbm.cfg").unwrap();
    let typed = vm.expect("Shell>", Duration::from_secs(30)).unwrap();
    assert!(typed.contains("model=models/tiny.gguf\nthreads=2"), "{typed}");
    vm.send_line("ls fs0:\\models").unwrap();
    let listing = vm.expect("Shell>", Duration::from_secs(30)).unwrap();
    assert!(listing.contains(" 26  tiny.gguf"), "{listing}");
    assert!(listing.contains(" 2  tokenizer.json"), "{listing}");
    vm.send_line("reset -s").unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(30)), Some(0), "reset -s powers off: QEMU exits 0");
    eprintln!("shell session: {:.1} s", vm.elapsed().as_secs_f64());
}

/// A needle that never comes: a short `expect` timeout returns Err with the
/// output tail and leaves the VM running; the global deadline kills QEMU even
/// while the test waits for more; dropping a `Vm` kills its QEMU.
#[test]
fn timeouts_deadline_and_drop_kill_qemu() {
    if !qemu::available("timeouts_deadline_and_drop_kill_qemu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = tiny_efi_app("LBM-TINY-EFI: hanging now\r\n", Finish::Hang);
    let image = make_image(dir.path(), "hang.img", &app, &[], None);

    let config = VmConfig { deadline: Duration::from_secs(25), ..VmConfig::default() };
    let mut vm = Vm::boot_with(&image, config).unwrap();
    vm.expect("LBM-TINY-EFI: hanging now", BOOT).unwrap();
    let started = Instant::now();
    let err = vm.expect("this text never appears", Duration::from_secs(2)).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("timed out"), "{err}");
    assert!(err.contains("hanging now"), "the error carries the output tail: {err}");
    assert!(vm.is_running(), "a plain timeout leaves the VM running");

    let err = vm.expect("this text never appears", Duration::from_secs(600)).unwrap_err().to_string();
    assert!(err.contains("deadline"), "{err}");
    assert!(vm.elapsed() < Duration::from_secs(40), "killed at the deadline, not at the timeout");
    assert!(!vm.is_running());
    assert!(process_gone(vm.pid()), "QEMU {} still exists", vm.pid());
    assert_eq!(vm.wait_exit(Duration::from_secs(1)), None, "killed by a signal: no exit code");
    assert!(vm.send_line("x").is_err());
    drop(vm);

    let mut vm = Vm::boot(&image).unwrap();
    vm.expect("LBM-TINY-EFI: hanging now", BOOT).unwrap();
    let pid = vm.pid();
    assert!(vm.is_running());
    drop(vm);
    assert!(process_gone(pid), "dropping the Vm must kill QEMU {pid}");
}

/// The real app, when it has been built (`cargo xtask build-efi` makes
/// target/efi/BOOTX64.EFI): OVMF starts it and it prints something of its
/// own without faulting.
#[test]
fn real_app_starts() {
    let Some(app) = testdata::efi_app() else {
        eprintln!("SKIPPING real_app_starts: target/efi/BOOTX64.EFI not built (cargo xtask build-efi)");
        return;
    };
    if !qemu::available("real_app_starts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("real.img");
    let opts = image::ImageOptions { output: image.clone(), efi: vec![app], ..Default::default() };
    image::build_image(&opts, &mut |_, _, _| {}).unwrap();
    let mut vm = Vm::boot_with(&image, VmConfig { memory: "2G".into(), ..VmConfig::default() }).unwrap();
    vm.expect("BdsDxe: starting", BOOT).unwrap();
    vm.expect("\n", BOOT).unwrap();
    // Whatever the app prints first (any visible character), or a fault.
    let text = vm
        .wait_for("the app's first output", Duration::from_secs(60), |out| {
            out.find("X64 Exception").or_else(|| out.find(|c: char| !c.is_whitespace()).map(|i| i + 1))
        })
        .unwrap();
    assert!(!text.contains("X64 Exception"), "the app faulted:\n{}", vm.output());
    std::thread::sleep(Duration::from_secs(2));
    assert!(!vm.output().contains("X64 Exception"), "the app faulted:\n{}", vm.output());
}
