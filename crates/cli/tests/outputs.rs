//! Output files (`-o`) of quantize, convert, bench --gen-model and logits:
//! written through a temporary file with a random name beside the target,
//! renamed into place; devices and FIFOs refused, symbolic links followed,
//! permissions kept, nothing left behind by a failed or interrupted run.
#![cfg(unix)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn lbm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbm")).args(args).output().expect("run lbm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stories() -> PathBuf {
    testdata::path("testdata/stories260K-gguf/stories260K.gguf")
}

fn golden() -> PathBuf {
    testdata::path("golden/llama-mha-tied")
}

/// The commands under test, each writing `out`.
fn commands(out: &Path) -> Vec<Vec<String>> {
    let st = s(&stories()).to_string();
    let o = s(out).to_string();
    let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        v(&["quantize", &st, "-o", &o, "--type", "f16"]),
        v(&["convert", s(&golden()), "-o", &o, "--type", "f32"]),
        v(&["convert", s(&golden()), "-o", &o, "--type", "q8_0"]),
        v(&["logits", "-m", &st, "--ids", "1,403", "-o", &o]),
        v(&["bench", "--gen-model", "stories15M", "--type", "q8_0", "-o", &o]),
    ]
}

fn run(cmd: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    lbm(&args)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("run mkfifo");
    assert!(st.success());
}

#[test]
fn a_fifo_or_device_output_is_refused_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pipe");
    mkfifo(&fifo);
    for cmd in commands(&fifo) {
        let (code, _, err) = run(&cmd);
        assert_ne!(code, 0, "{cmd:?} wrote to a FIFO");
        assert!(err.contains("is not a regular file"), "{cmd:?}: {err}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "{cmd:?} replaced the FIFO");
        assert_eq!(names(d.path()), ["pipe"], "{cmd:?} left files behind");
    }
    // A character device, through a link to it as well.
    std::os::unix::fs::symlink("/dev/null", d.path().join("null")).unwrap();
    for cmd in commands(&d.path().join("null")) {
        let (code, _, err) = run(&cmd);
        assert_ne!(code, 0, "{cmd:?} wrote to /dev/null");
        assert!(err.contains("is not a regular file"), "{cmd:?}: {err}");
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    }
}

#[test]
fn a_symlink_output_writes_its_target_and_stays_a_link() {
    let d = tempfile::tempdir().unwrap();
    let real = d.path().join("real.out");
    let link = d.path().join("link.out");
    std::os::unix::fs::symlink("real.out", &link).unwrap();
    for cmd in commands(&link) {
        std::fs::write(&real, b"old").unwrap();
        let (code, _, err) = run(&cmd);
        assert_eq!(code, 0, "{cmd:?}: {err}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{cmd:?} replaced the link");
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real.out"));
        let got = std::fs::read(&real).unwrap();
        assert!(got.len() > 1000, "{cmd:?} did not write the link's target");
        assert_eq!(names(d.path()), ["link.out", "real.out"], "{cmd:?}");
    }
}

#[test]
fn a_replaced_file_keeps_its_mode() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.bin");
    for (cmd, mode) in commands(&out).into_iter().zip([0o600, 0o640, 0o600, 0o604, 0o600]) {
        std::fs::write(&out, b"old").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, _, err) = run(&cmd);
        assert_eq!(code, 0, "{cmd:?}: {err}");
        assert!(std::fs::metadata(&out).unwrap().len() > 1000, "{cmd:?}");
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777, mode, "{cmd:?}");
        assert_eq!(names(d.path()), ["out.bin"], "{cmd:?}");
    }
}

#[test]
fn a_failed_run_leaves_no_temporary_file_and_the_old_output() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.gguf");
    std::fs::write(&out, b"old").unwrap();
    // stories260K's 172 columns are not whole Q4_0 blocks.
    let (code, _, err) = lbm(&["quantize", s(&stories()), "-o", s(&out), "--type", "q4_0"]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(names(d.path()), ["out.gguf"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    // A folder whose config.json is not JSON: convert fails after creating its output.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("config.json"), b"{ not json").unwrap();
    for ty in ["f32", "q8_0"] {
        let (code, _, err) = lbm(&["convert", s(bad.path()), "-o", s(&out), "--type", ty]);
        assert_ne!(code, 0, "{err}");
        assert_eq!(names(d.path()), ["out.gguf"], "{ty}");
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
    }
    // logits: an id outside the vocabulary fails after the output is created.
    let (code, _, err) = lbm(&["logits", "-m", s(&stories()), "--ids", "1,999999", "-o", s(&out)]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(names(d.path()), ["out.gguf"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
}

#[test]
fn links_planted_at_the_old_temporary_names_are_not_followed() {
    let d = tempfile::tempdir().unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = d.path().join("out.gguf");
    // convert wrote OUT.partial, convert --type q8_0 also OUT.f32.partial.gguf.
    for planted in ["out.gguf.partial", "out.f32.partial.gguf"] {
        std::os::unix::fs::symlink(&victim, d.path().join(planted)).unwrap();
    }
    for ty in ["f32", "q8_0"] {
        let (code, _, err) = lbm(&["convert", s(&golden()), "-o", s(&out), "--type", ty]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{ty}");
        assert!(std::fs::read(&out).unwrap().starts_with(b"GGUF"));
        assert_eq!(names(d.path()), ["out.f32.partial.gguf", "out.gguf", "out.gguf.partial", "victim"], "{ty}");
    }
}

/// Interrupts a `--gen-model` run with `signal` once its temporary file
/// exists, and checks it exits with `code` and leaves nothing.
fn interrupted_run_removes_the_temporary_file(signal: &str, code: i32) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("big.gguf");
    // Gigabytes of f32 weights: still being written when interrupted.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbm"))
        .args(["bench", "--gen-model", "tinyllama-1.1B", "--type", "f32", "-o", s(&out)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while names(d.path()).is_empty() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let during = names(d.path());
    let st = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed().as_secs() > 60 {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(during.len(), 1, "{during:?}");
    assert!(during[0].starts_with(".big.gguf.") && during[0].ends_with(".partial"), "{during:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(code), "the run stopped by {signal} did not exit with {code}");
    assert!(names(d.path()).is_empty(), "{:?}", names(d.path()));
}

#[test]
fn ctrl_c_removes_the_temporary_file() {
    interrupted_run_removes_the_temporary_file("-INT", 130);
}

#[test]
fn sigterm_and_sighup_remove_the_temporary_file() {
    interrupted_run_removes_the_temporary_file("-TERM", 143);
    interrupted_run_removes_the_temporary_file("-HUP", 129);
}
