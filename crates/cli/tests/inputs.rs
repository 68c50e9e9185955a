//! Model inputs: what is not a regular file is refused at once (a device
//! would be read until memory runs out, a FIFO would block), and `info`,
//! `tokenize` and `template` read only a model's header, yet print what
//! reading the whole file gives.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs lbm, killing it after `limit` (then the code is None).
fn lbm_within(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lbm");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        if t0.elapsed() > limit { None } else { out.status.code() },
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn lbm(args: &[&str]) -> (Option<i32>, String, String) {
    lbm_within(args, Duration::from_secs(120))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn devices_and_fifos_are_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("model.gguf");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let msgs = d.path().join("m.json");
    std::fs::write(&msgs, r#"[{"role": "user", "content": "hi"}]"#).unwrap();
    let q = d.path().join("q.gguf");
    for input in [Path::new("/dev/zero"), fifo.as_path()] {
        let i = s(input);
        let runs: [&[&str]; 8] = [
            &["info", i],
            &["info", "--json", i],
            &["tokenize", "-m", i, "hello"],
            &["detokenize", "-m", i, "1"],
            &["template", "-m", i, "--messages", s(&msgs)],
            &["generate", "-m", i, "--ids", "1"],
            &["bench", "-m", i, "-p", "1", "-n", "1", "-r", "1"],
            &["quantize", i, "-o", s(&q), "--type", "f16"],
        ];
        for args in runs {
            let t0 = Instant::now();
            let (code, _, err) = lbm_within(args, Duration::from_secs(20));
            assert_eq!(code, Some(1), "{args:?} did not fail in time: {err}");
            assert!(t0.elapsed() < Duration::from_secs(10), "{args:?} took {:?}", t0.elapsed());
            assert!(err.contains(&format!("{i} is not a regular file")), "{args:?}: {err}");
        }
    }
    // A folder given as a model file.
    let (code, _, err) = lbm(&["info", s(d.path())]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is a folder, not a model file"), "{err}");
    // -z with a device.
    let model = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    let (code, _, err) = lbm(&["generate", "-m", s(&model), "-z", "/dev/zero", "--ids", "1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/dev/zero is not a regular file"), "{err}");
}

/// `lbm info --json` agrees with the engine's probe and parse of the whole file.
fn info_matches_the_whole_file(model: &Path) {
    let bytes = std::fs::read(model).unwrap();
    let len = bytes.len() as u64;
    let p = engine::load::probe(&bytes, len).unwrap();
    let g = engine::gguf::Gguf::parse(&bytes, len).unwrap();
    let (code, out, err) = lbm(&["info", "--json", s(model)]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["format"], p.format);
    assert_eq!(v["arch"], p.arch);
    assert_eq!(v["n_params"], p.n_params);
    assert_eq!(v["tensor_type"], p.tensor_type);
    assert_eq!(v["file_size"], len);
    assert_eq!(v["mem_needed"], p.mem_needed);
    assert_eq!(
        (&v["dim"], &v["n_layers"], &v["vocab_size"], &v["n_ctx"]),
        (
            &serde_json::json!(p.dim),
            &serde_json::json!(p.n_layers),
            &serde_json::json!(p.vocab_size),
            &serde_json::json!(p.n_ctx)
        )
    );
    let mut types = std::collections::BTreeMap::<String, usize>::new();
    for t in &g.tensors {
        *types.entry(t.ty.name().to_string()).or_default() += 1;
    }
    assert_eq!(v["tensor_types"], serde_json::json!(types));
    let n_tokens = g.get_array("tokenizer.ggml.tokens").map_or(0, |a| a.len());
    let tok = format!("{}, {n_tokens} tokens", g.get_str("tokenizer.ggml.model").unwrap());
    assert_eq!(v["tokenizer"], tok);
    // The text form shows the same.
    let (code, out, _) = lbm(&["info", s(model)]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("tokenizer:    {tok}\n")), "{out}");
    assert!(out.contains(&format!("architecture: {}\n", p.arch)), "{out}");
    assert!(out.contains(&format!("parameters:   {} (", p.n_params)), "{out}");
}

#[test]
fn info_from_the_header_is_what_the_whole_file_gives() {
    let st = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    info_matches_the_whole_file(&st);
    let (_, out, _) = lbm(&["info", s(&st)]);
    assert!(out.contains("dimensions:   dim 64, 5 layers, 8 heads, 4 kv heads, vocab 512"), "{out}");
    // SmolLM2's metadata (49152 tokens and their merges) is larger than the
    // first read, so it takes more.
    if let Some(smol) = testdata::optional("info_from_the_header", "testdata/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") {
        let bytes = std::fs::read(&smol).unwrap();
        let g = engine::gguf::Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        assert!(g.data_offset > 1 << 20, "the header is only {} bytes", g.data_offset);
        info_matches_the_whole_file(&smol);
        // tokenize reads the header too, and gives the ids of the whole file's tokenizer.
        let tok = engine::gguf_model::tokenizer(&bytes).unwrap();
        let text = "Hello world, this is lbm.";
        let want: Vec<String> = tok.encode(text, tok.add_bos()).iter().map(u32::to_string).collect();
        let (code, out, err) = lbm(&["tokenize", "-m", s(&smol), text]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out.trim(), want.join(" "));
    }
}

#[test]
fn a_sparse_file_with_only_the_header_is_described_like_the_model() {
    // The header of stories260K.gguf and a hole where the weights were:
    // info and tokenize need only the header.
    let st: PathBuf = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    let bytes = std::fs::read(&st).unwrap();
    let g = engine::gguf::Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    let d = tempfile::tempdir().unwrap();
    let hollow = d.path().join("hollow.gguf");
    std::fs::write(&hollow, &bytes[..g.data_offset as usize]).unwrap();
    std::fs::OpenOptions::new().write(true).open(&hollow).unwrap().set_len(bytes.len() as u64).unwrap();
    let (_, want, _) = lbm(&["info", "--json", s(&st)]);
    let (code, got, err) = lbm(&["info", "--json", s(&hollow)]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(got, want);
    let (_, want, _) = lbm(&["tokenize", "-m", s(&st), "Once upon a time"]);
    let (code, got, err) = lbm(&["tokenize", "-m", s(&hollow), "Once upon a time"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(got, want);
}
