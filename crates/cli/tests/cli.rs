//! The `lbm` binary end to end on the shared stories260K files.

use std::io::Write;
use std::process::{Command, Stdio};

fn lbm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbm")).args(args).output().expect("run lbm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn expected_run(prompt: &str) -> serde_json::Value {
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata::path("testdata/expected/llama2c-generation.json")).unwrap())
            .unwrap();
    e["stories260K"]["runs"].as_array().unwrap().iter().find(|r| r["prompt"] == prompt).unwrap().clone()
}

#[test]
fn generate_json_matches_the_reference() {
    let model = testdata::path("testdata/stories260K/stories260K.bin");
    let run = expected_run("Tom and Sue");
    let (code, out, err) =
        lbm(&["generate", "-m", model.to_str().unwrap(), "-p", "Tom and Sue", "--temp", "0", "-n", "20", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["prompt_ids"], run["prompt_ids"]);
    let sampled: Vec<u64> = run["sampled_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    let got: Vec<u64> = v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(got, sampled[..20]);
    assert_eq!(v["stop"], "limit");
    let text = run["text"].as_str().unwrap();
    assert!(text.starts_with(&format!("Tom and Sue{}", v["text"].as_str().unwrap())), "{v}");
    assert!(err.contains("tok/s"), "{err}");
}

#[test]
fn generate_streams_text_and_stops_at_the_context_end() {
    let model = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    let (code, out, err) = lbm(&[
        "generate",
        "-m",
        model.to_str().unwrap(),
        "--ids",
        "1,403",
        "--temp",
        "0",
        "-n",
        "100",
        "-c",
        "16",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["stop"], "context");
    assert_eq!(v["ids"].as_array().unwrap().len(), 15);
    let (code, out, _) = lbm(&["generate", "-m", model.to_str().unwrap(), "-p", "Lily", "--temp", "0", "-n", "12"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Lily and Tom were playing"), "{out}");
}

#[test]
fn logits_file_has_the_reference_values() {
    let model = testdata::path("testdata/stories260K/stories260K.bin");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("l.f32");
    let (code, _, err) =
        lbm(&["logits", "-m", model.to_str().unwrap(), "--ids", "1,403,407", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let raw = std::fs::read(&out).unwrap();
    assert_eq!(raw.len(), 3 * 512 * 4);
    let l: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let run = expected_run("");
    for p in 0..3 {
        let want = &run["full_logits_at_pos"][p.to_string()];
        for (i, w) in want.as_array().unwrap().iter().enumerate() {
            assert!((l[p * 512 + i] as f64 - w.as_f64().unwrap()).abs() < 1e-4);
        }
    }
}

#[test]
fn tokenize_detokenize_and_info() {
    let tokbin = testdata::path("testdata/llama2c-tokenizer/tokenizer.bin");
    let (code, out, _) = lbm(&["tokenize", "-m", tokbin.to_str().unwrap(), "--json", "Hello world"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ids"], serde_json::json!([1, 15043, 3186]));
    let gpt2 = testdata::path("testdata/gpt2-bpe");
    let (_, out, _) = lbm(&["tokenize", "-m", gpt2.to_str().unwrap(), "Hello world"]);
    assert_eq!(out.trim(), "15496 995");
    let (_, out, _) = lbm(&["detokenize", "-m", gpt2.to_str().unwrap(), "15496", "995"]);
    assert_eq!(out.trim_end_matches('\n'), "Hello world");
    let (code, _, err) = lbm(&["detokenize", "-m", gpt2.to_str().unwrap(), "99999"]);
    assert_ne!(code, 0);
    assert!(err.contains("outside the vocabulary"), "{err}");
    let f16 = testdata::path("testdata/stories260K-gguf/stories260K-F16.gguf");
    let (code, out, _) = lbm(&["info", "--json", f16.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["arch"].as_str(), v["dim"].as_u64(), v["n_layers"].as_u64(), v["tensor_type"].as_str()),
        (Some("llama"), Some(64), Some(5), Some("F16"))
    );
    assert_eq!(v["tensor_types"]["F16"], 37);
}

#[test]
fn bad_files_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let (code, _, err) = lbm(&["generate", "-m", bad.to_str().unwrap(), "-p", "x"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
    let (code, _, err) = lbm(&["info", dir.path().join("missing.bin").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.bin"), "{err}");
}

#[test]
fn chat_repl_over_a_pipe() {
    let model = testdata::path("testdata/stories260K/stories260K.bin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbm"))
        .args(["chat", "-m", model.to_str().unwrap(), "-t", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/temp 0\r\n/tokens 12\nOnce upon a time\n/stats\n/history\n/temp 0.5\n/temp 3\n/clear\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let o = String::from_utf8_lossy(&out.stdout);
    let text = expected_run("Once upon a time")["text"].as_str().unwrap().to_string();
    let reply = &o[o.find("AI: ").unwrap() + 4..];
    let reply = &reply[..reply.find("\n[").unwrap()];
    assert!(text.starts_with(&format!("Once upon a time{reply}")) && reply.len() > 10, "{reply:?}");
    for needle in [
        "[12 tokens, token limit;",
        "turns:       1/10",
        "1. You: Once upon a time",
        "temperature = 0.50",
        "error: invalid temperature: must be in [0, 2] (got 3)",
        "Conversation cleared.",
        "Bye.",
    ] {
        assert!(o.contains(needle), "missing {needle:?} in\n{o}");
    }
}

#[test]
fn simd_cap_from_the_flag_or_lbm_simd_is_the_level_bench_reports() {
    let model = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    let m = model.to_str().unwrap();
    let level_of = |args: &[&str], env: Option<&str>| -> String {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lbm"));
        c.args(args).args(["bench", "-m", m, "-p", "8", "-n", "2", "-r", "1", "-t", "1", "--json"]);
        match env {
            Some(v) => c.env("LBM_SIMD", v),
            None => c.env_remove("LBM_SIMD"),
        };
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["simd"].as_str().unwrap().to_string()
    };
    // Scalar is every CPU's level, and the cap wins over detection.
    assert_eq!(level_of(&["--simd", "scalar"], None), "scalar");
    assert_eq!(level_of(&[], Some("scalar")), "scalar");
    // The flag wins over the environment.
    let best = level_of(&[], None);
    let top = if cfg!(target_arch = "aarch64") { "neon-i8mm" } else { "avx512vnni" };
    assert_eq!(level_of(&["--simd", top], Some("scalar")), best);
    // A level of the other architecture caps to scalar.
    let foreign = if cfg!(target_arch = "aarch64") { "avx2" } else { "neon" };
    assert_eq!(level_of(&["--simd", foreign], None), "scalar");
    if kernels::cpu::detect().best_level() >= kernels::cpu::SimdLevel::Avx2 {
        assert_eq!(level_of(&[], Some("avx2")), "avx2");
    } else {
        eprintln!("SKIPPED: the avx2 cap: this CPU has no AVX2");
    }
    let (code, _, err) = lbm(&["--simd", "sse9", "info", m]);
    assert_ne!(code, 0);
    assert!(err.contains("avx2"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_lbm")).args(["info", m]).env("LBM_SIMD", "sse9").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LBM_SIMD"));
}

#[test]
fn a_huge_thread_count_is_clamped_with_a_note() {
    let model = testdata::path("testdata/stories260K-gguf/stories260K.gguf");
    let m = model.to_str().unwrap();
    let (code, out, err) =
        lbm(&["generate", "-m", m, "--ids", "1,403", "--temp", "0", "-n", "4", "--json", "-t", "18446744073709551615"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("note: -t 18446744073709551615 is outside 1..="), "{err}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(err.contains(&format!("{} threads,", cores * 4)), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 4);
    // The same clamp for every command that takes -t.
    let (code, _, err) = lbm(&["bench", "-m", m, "-p", "8", "-n", "4", "-r", "1", "-t", "18446744073709551615"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("note: -t 18446744073709551615"), "{err}");
}

#[test]
fn chat_input_that_is_not_utf8_becomes_replacement_characters_and_keeps_its_lines() {
    let model = testdata::path("testdata/stories260K/stories260K.bin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbm"))
        .args(["chat", "-m", model.to_str().unwrap(), "-t", "1", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"/tokens 2\nab\xffcd\n/system \xc3\nBe brief.\n/history\n/exit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("the chat writes UTF-8");
    // The turn keeps the bytes after the invalid one, and the next lines stay lines.
    assert!(text.contains("1. You: ab\u{fffd}cd"), "{text}");
    assert!(!text.contains('\u{ff}'), "{text}");
    assert!(text.contains("Be brief."), "{text}");
}

#[test]
fn sampling_settings_have_one_validation_everywhere() {
    let model = testdata::path("testdata/stories260K/stories260K.bin");
    let m = model.to_str().unwrap();
    // generate and chat refuse the same values with the same message.
    for (flag, value) in [("--temp", "nan"), ("--temp", "inf"), ("--temp", "-1"), ("--temp", "50"), ("--top-p", "5")] {
        let arg = format!("{flag}={value}");
        let (code, _, err) = lbm(&["generate", "-m", m, "-p", "Hi", "-n", "2", &arg]);
        assert_ne!(code, 0, "generate {flag} {value}");
        let (code2, _, err2) = lbm(&["chat", "-m", m, &arg]);
        assert_ne!(code2, 0, "chat {flag} {value}");
        let name = if flag == "--temp" { "temperature" } else { "top_p" };
        assert!(err.contains(name) && err2.contains(name), "{err} / {err2}");
        let line = |e: &str| e.lines().find(|l| l.contains(name)).unwrap_or_default().to_string();
        assert_eq!(line(&err), line(&err2));
    }
    // The chat's command gives the same range.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbm"))
        .args(["chat", "-m", m, "-t", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"/temp 50\n/exit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("temperature: must be in [0, 2] (got 50)"), "{all}");
    // lbm image refuses a settings file the app would reject, before doing anything.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lbm.cfg");
    std::fs::write(&cfg, "temperature = 9\n").unwrap();
    let img = dir.path().join("x.img");
    let (code, _, err) = lbm(&["image", "-o", img.to_str().unwrap(), "--config", cfg.to_str().unwrap(), "--model", m]);
    assert_ne!(code, 0);
    assert!(err.contains("not a valid lbm.cfg") && err.contains("temperature"), "{err}");
    assert!(!img.exists());
}

#[test]
fn unclear_messages_are_clear() {
    let model = testdata::path("testdata/stories260K/stories260K.bin");
    let m = model.to_str().unwrap();
    // A context of 0 tokens is a usage error, not "context full".
    let (code, _, err) = lbm(&["generate", "-m", m, "-p", "hi", "-n", "3", "-c", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("at least 1 token") && !err.contains("context full"), "{err}");
    // A file of two bytes is too short to be a model, whatever its name.
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.bin");
    std::fs::write(&short, b"ab").unwrap();
    for cmd in ["info", "generate"] {
        let mut args = vec![cmd, "-m", short.to_str().unwrap()];
        if cmd == "info" {
            args = vec![cmd, short.to_str().unwrap()];
        } else {
            args.extend(["-p", "hi"]);
        }
        let (code, _, err) = lbm(&args);
        assert_ne!(code, 0);
        assert!(err.contains("too short to be a model"), "{cmd}: {err}");
        assert!(!err.contains("tokenizer"), "{cmd}: {err}");
    }
    // A GGUF with a vocabulary and no tensors says so.
    let vocab = testdata::path("testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
    for cmd in ["info", "generate"] {
        let v = vocab.to_str().unwrap();
        let args: Vec<&str> = if cmd == "info" { vec![cmd, v] } else { vec![cmd, "-m", v, "-p", "hi"] };
        let (code, _, err) = lbm(&args);
        assert_ne!(code, 0);
        assert!(err.contains("no tensors") && err.contains("vocabulary"), "{cmd}: {err}");
    }
}

#[test]
fn text_inputs_refuse_devices_and_oversized_files() {
    let model = testdata::path("testdata/stories260K/stories260K.bin");
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.cfg");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 1]).unwrap();
    let t0 = std::time::Instant::now();
    for args in [
        vec!["perplexity", "-m", m, "-f", "/dev/zero"],
        vec!["chat", "-m", m, "--config", "/dev/zero"],
        vec!["image", "-o", "/nonexistent/x.img", "--config", "/dev/zero", "--model", m],
        vec!["template", "-m", m, "--messages", "/dev/zero"],
    ] {
        let (code, _, err) = lbm(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("/dev/zero") && err.contains("not a regular file"), "{args:?}: {err}");
    }
    assert!(t0.elapsed().as_secs() < 30, "devices must be refused, not read");
    let (code, _, err) = lbm(&["chat", "-m", m, "--config", big.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("more than the 1048576"), "{err}");
}

#[test]
fn error_messages_cannot_drive_the_terminal() {
    // A Hugging Face folder whose config.json names an architecture with an escape sequence.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{\"architectures\": [\"Evil\\u001b[2JModel\"]}").unwrap();
    let out = dir.path().join("o.gguf");
    let (code, _, err) = lbm(&["convert", dir.path().to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains("Evil\\u{1b}[2JModel"), "{err}");
}
