//! `lbm generate/logits/tokenize/info/bench` on a GPT-2 model: the full
//! GPT-2 124M shape with random weights (Q8_0) and the real 50257-token
//! vocabulary from ../shared.

use std::process::Command;

fn lbm(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lbm")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn gpt2_through_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("gpt2.gguf");
    let ms = m.to_str().unwrap();
    let vocab = testdata::path("testdata/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    let (ok, _, err) =
        lbm(&["bench", "--gen-model", "gpt2-124M", "--type", "q8_0", "-o", ms, "--vocab", vocab.to_str().unwrap()]);
    assert!(ok, "{err}");

    let (ok, out, err) = lbm(&["info", "--json", ms]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["arch"].as_str(), v["dim"].as_u64(), v["n_layers"].as_u64(), v["vocab_size"].as_u64()),
        (Some("gpt2"), Some(768), Some(12), Some(50257))
    );
    assert!(v["tokenizer"].as_str().unwrap().starts_with("gpt2"), "{v}");

    // The tokenizer in the model is GPT-2's: the tiktoken reference ids.
    let (ok, out, _) = lbm(&["tokenize", "-m", ms, "Hello world"]);
    assert!(ok);
    assert_eq!(out.trim(), "15496 995");
    let (ok, out, _) = lbm(&["detokenize", "-m", ms, "15496", "995"]);
    assert!(ok);
    assert_eq!(out.trim_end_matches('\n'), "Hello world");

    let (ok, out, err) =
        lbm(&["generate", "-m", ms, "-p", "Hello world", "-n", "4", "--temp", "0", "--json", "-t", "2"]);
    assert!(ok, "{err}");
    let g: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(g["prompt_ids"], serde_json::json!([15496, 995]), "GPT-2 adds no BOS");
    assert_eq!(g["ids"].as_array().unwrap().len(), 4);
    // Greedy is deterministic and independent of the thread count.
    let (_, out1, _) = lbm(&["generate", "-m", ms, "-p", "Hello world", "-n", "4", "--temp", "0", "--json", "-t", "1"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(out1.trim()).unwrap()["ids"], g["ids"]);

    let lf = dir.path().join("l.f32");
    let (ok, _, err) = lbm(&["logits", "-m", ms, "--ids", "15496,995", "-o", lf.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::metadata(&lf).unwrap().len(), 2 * 50257 * 4);

    let (ok, out, err) = lbm(&["bench", "-m", ms, "-p", "8", "-n", "4", "-r", "1", "--json"]);
    assert!(ok, "{err}");
    let b: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(b["pp_tok_s"].as_f64().unwrap() > 0.0 && b["tg_tok_s"].as_f64().unwrap() > 0.0, "{b}");

    // Positions past the context: GPT-2's learned positions end at n_ctx.
    let (ok, out, err) =
        lbm(&["generate", "-m", ms, "--ids", "15496,995", "-n", "50", "-c", "8", "--temp", "0", "--json"]);
    assert!(ok, "{err}");
    let g: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(g["stop"], "context");
    let (ok, _, err) = lbm(&["logits", "-m", ms, "-c", "2", "--ids", "1,2,3", "-o", lf.to_str().unwrap()]);
    assert!(!ok && err.contains("context full"), "{err}");
}
