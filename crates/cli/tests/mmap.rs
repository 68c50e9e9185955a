//! Loading a model by mapping its file (the default) against reading it
//! into huge pages (`--no-mmap`): the same logits to the bit, the file
//! untouched by the in-place repacking (the mapping is copy-on-write), and
//! bad files still ordinary errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use lbm::host::LoadMode;

fn lbm(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbm")).args(args).output().expect("run lbm");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// stories260K in F32 (as shared; its 172-wide FFN rows have no Q4_0
/// blocks) and a random-weight stories15M (dim 288, hidden 768) quantized
/// to Q4_0 by `lbm quantize`: its matrices are repacked into row octets at
/// load on x86-64, in the mapping.
fn models(dir: &Path) -> Vec<PathBuf> {
    let f32 = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    let s15 = dir.join("stories15M-f32.gguf");
    let (code, err) = lbm(&["bench", "--gen-model", "stories15M", "--type", "f32", "-o", s(&s15)]);
    assert_eq!(code, Some(0), "{err}");
    let q4 = dir.join("stories15M-q4_0.gguf");
    let (code, err) = lbm(&["quantize", s(&s15), "-o", s(&q4), "--type", "q4_0"]);
    assert_eq!(code, Some(0), "{err}");
    vec![f32, q4]
}

fn logits(model: &Path, out: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["logits", "-m", s(model), "--ids", "1,403,407,300,29,5", "-o", s(out), "-t", "1"];
    args.extend_from_slice(extra);
    let (code, err) = lbm(&args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    std::fs::read(out).unwrap()
}

#[test]
fn mapped_and_read_models_give_the_same_logits_and_leave_the_file_alone() {
    let d = tempfile::tempdir().unwrap();
    for model in models(d.path()) {
        let before = std::fs::read(&model).unwrap();
        let mapped = logits(&model, &d.path().join("mapped.f32"), &[]);
        let read = logits(&model, &d.path().join("read.f32"), &["--no-mmap"]);
        let vocab = if model.ends_with("stories260K.gguf") { 512 } else { 32000 };
        assert_eq!(mapped.len(), 6 * vocab * 4, "{}", model.display());
        assert!(mapped.chunks(4).any(|c| c != [0; 4]));
        assert_eq!(mapped, read, "{}: mapped and read logits differ", model.display());
        assert!(std::fs::read(&model).unwrap() == before, "{} changed on disk", model.display());
    }
}

/// The private dirty memory (kB) of this process's mappings of `path`,
/// from /proc/self/smaps: pages copied on write.
#[cfg(target_os = "linux")]
fn private_dirty_kb(path: &Path) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let want = std::fs::canonicalize(path).unwrap();
    let mut inside = false;
    let mut found = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.split_whitespace().nth(5).map(Path::new) == Some(want.as_path());
        } else if inside {
            if let Some(kb) = line.strip_prefix("Private_Dirty:") {
                let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap();
                *found.get_or_insert(0) += kb;
            }
        }
    }
    found
}

#[test]
#[cfg(target_os = "linux")]
fn repacking_copies_pages_of_the_mapping_and_never_writes_the_file() {
    let d = tempfile::tempdir().unwrap();
    let models = models(d.path());
    for (model, repacks) in [(&models[0], false), (&models[1], kernels::types::REPACK_OCTETS)] {
        let before = std::fs::read(model).unwrap();
        let (blob, got) = lbm::host::read_model_as(model, LoadMode::Map).unwrap();
        assert_eq!(got, LoadMode::Map);
        assert_eq!(private_dirty_kb(model), Some(0), "{}: pages dirty before loading", model.display());
        let m = engine::load::load_model(blob).unwrap();
        let dirty = private_dirty_kb(model).expect("the model is still mapped");
        // Only the repacked matrices' pages are copied (4 KiB each), never the whole file.
        if repacks {
            assert!(dirty > 0, "{}: nothing was repacked in the mapping", model.display());
            assert!(dirty * 1024 < before.len() as u64, "{}: {dirty} kB copied", model.display());
        } else {
            assert_eq!(dirty, 0, "{}: an F32 model wrote to its mapping", model.display());
        }
        assert!(std::fs::read(model).unwrap() == before, "{}: the repack wrote through to the file", model.display());
        drop(m);
        assert_eq!(private_dirty_kb(model), None, "{}: still mapped after the model was dropped", model.display());
        // Read, not mapped: no mapping of the file at all.
        let (blob, got) = lbm::host::read_model_as(model, LoadMode::Read).unwrap();
        assert_eq!(got, LoadMode::Read);
        assert_eq!(private_dirty_kb(model), None);
        drop(blob);
    }
}

#[test]
fn bad_files_are_errors_mapped_or_read() {
    let d = tempfile::tempdir().unwrap();
    let f32 = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    let bytes = std::fs::read(&f32).unwrap();
    // Cut inside the tensor data, in the header, and empty.
    let cuts = [("data", bytes.len() - 1000), ("header", 200), ("empty", 0)];
    let fifo = d.path().join("fifo.gguf");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = d.path().join("out.f32");
    for extra in [&[][..], &["--no-mmap"][..]] {
        for (what, len) in cuts {
            let p = d.path().join(format!("cut-{what}.gguf"));
            std::fs::write(&p, &bytes[..len]).unwrap();
            let mut args = vec!["logits", "-m", s(&p), "--ids", "1", "-o", s(&out)];
            args.extend_from_slice(extra);
            let (code, err) = lbm(&args);
            // Exit code 1 (an error message), not a signal (SIGBUS gives no code).
            assert_eq!(code, Some(1), "{args:?}: {err}");
            assert!(err.contains("error") || err.contains("Error"), "{args:?}: {err}");
        }
        for (input, msg) in [(d.path(), "is a folder"), (fifo.as_path(), "is not a regular file")] {
            let mut args = vec!["bench", "-m", s(input), "-p", "1", "-n", "1", "-r", "1"];
            args.extend_from_slice(extra);
            let (code, err) = lbm(&args);
            assert_eq!(code, Some(1), "{args:?}: {err}");
            assert!(err.contains(msg), "{args:?}: {err}");
        }
    }
    assert!(!out.exists());
    for (what, _) in cuts {
        for mode in [LoadMode::Map, LoadMode::Read] {
            let p = d.path().join(format!("cut-{what}.gguf"));
            // The header check or the loader refuses it, never a crash.
            let loaded = lbm::host::read_model(&p, mode).and_then(|b| Ok(engine::load::load_model(b)?));
            assert!(loaded.is_err(), "{what} {mode:?} loaded");
        }
    }
}

#[test]
fn bench_reports_the_load_time_and_how_the_model_was_loaded() {
    let f32 = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    for (extra, mmap) in [(&[][..], true), (&["--no-mmap"][..], false)] {
        let mut args = vec!["bench", "-m", s(&f32), "-p", "8", "-n", "4", "-r", "1", "-t", "1", "--json"];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_lbm")).args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["mmap"], mmap, "{v}");
        let ms = v["load_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && ms < 60_000.0, "{v}");
        assert!(v["tg_tok_s"].as_f64().unwrap() > 0.0);
    }
}
