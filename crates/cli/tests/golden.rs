//! Every model in ../shared/golden, converted by `lbm convert` and run by the
//! engine, against the logits and greedy continuations transformers computed.

use std::path::PathBuf;

use convert::{convert, ConvertOptions, OutType};
use engine::load::load_model;
use engine::sampler::argmax;
use kernels::exec::Serial;

fn golden(name: &str) -> PathBuf {
    testdata::path("golden").join(name)
}

struct Reference {
    input_ids: Vec<u32>,
    logits: Vec<f32>,
    greedy_prompt: Vec<u32>,
    greedy_output: Vec<u32>,
    vocab: usize,
}

fn reference(name: &str) -> Reference {
    let dir = golden(name);
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("tokens.json")).unwrap()).unwrap();
    let ids = |k: &str| -> Vec<u32> { t[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
    let raw = std::fs::read(dir.join("logits.f32")).unwrap();
    let logits: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let shape = t["logits_shape"].as_array().unwrap();
    let (n, vocab) = (shape[0].as_u64().unwrap() as usize, shape[1].as_u64().unwrap() as usize);
    assert_eq!(logits.len(), n * vocab);
    Reference {
        input_ids: ids("input_ids"),
        logits,
        greedy_prompt: ids("greedy_prompt"),
        greedy_output: ids("greedy_output"),
        vocab,
    }
}

/// Converts, runs every position, and returns the largest logit error.
fn check(name: &str, ty: OutType, tol: f32) {
    let r = reference(name);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{name}.gguf"));
    convert(&ConvertOptions { input: golden(name), output: out.clone(), ty }, &mut |_| {}).expect("convert");
    let bytes = std::fs::read(&out).unwrap();
    let m = load_model(Box::new(bytes.clone())).expect("load");
    let mut sess = engine::model::Session::new(&m, 4096).unwrap();
    assert_eq!(m.config.vocab_size, r.vocab);
    let mut max = 0.0f32;
    for (pos, &id) in r.input_ids.iter().enumerate() {
        let got = sess.eval(&m, &[id], &Serial).unwrap();
        let want = &r.logits[pos * r.vocab..(pos + 1) * r.vocab];
        let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        max = max.max(err);
    }
    assert!(max <= tol, "{name}: max logit error {max} > {tol}");
    // Greedy continuation with a fresh cache.
    let m = load_model(Box::new(bytes)).unwrap();
    let mut sess = engine::model::Session::new(&m, 4096).unwrap();
    let mut logits = Vec::new();
    for &id in &r.greedy_prompt {
        logits = sess.eval(&m, &[id], &Serial).unwrap().to_vec();
    }
    let mut out_ids = Vec::new();
    while out_ids.len() < r.greedy_output.len() {
        let next = argmax(&logits);
        out_ids.push(next);
        logits = sess.eval(&m, &[next], &Serial).unwrap().to_vec();
    }
    assert_eq!(out_ids, r.greedy_output, "{name}: greedy continuation");
}

#[test]
fn llama_gqa() {
    check("llama-gqa", OutType::F32, 1e-4);
}

#[test]
fn llama_mha_tied() {
    check("llama-mha-tied", OutType::F32, 1e-4);
}

#[test]
fn mistral() {
    check("mistral", OutType::F32, 1e-4);
}

#[test]
fn gpt2() {
    check("gpt2", OutType::F32, 1e-4);
}

#[test]
fn qwen2() {
    check("qwen2", OutType::F32, 1e-4);
}

#[test]
fn gemma() {
    check("gemma", OutType::F32, 1e-4);
}

#[test]
fn phi() {
    check("phi", OutType::F32, 1e-4);
}

#[test]
fn llama_gqa_f16_is_close() {
    // F16 weights: not exact, but close, and the argmax path the same.
    check("llama-gqa", OutType::F16, 2e-2);
}

fn lbm(args: &[&str]) -> (bool, String, String) {
    let out = testdata::bin_command(env!("CARGO_BIN_EXE_lbm")).args(args).output().expect("run lbm");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Every golden folder through the `lbm` binary itself: convert (these
/// folders have no tokenizer files, so the GGUF has no tokenizer), then
/// `logits --ids` against transformers and `generate --ids --json` against
/// its greedy continuation; a command that needs text says why it cannot.
#[test]
fn every_golden_model_through_the_lbm_binary_without_a_tokenizer() {
    let mut names: Vec<String> = std::fs::read_dir(golden(""))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 7, "{names:?}");
    let dir = tempfile::tempdir().unwrap();
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    for name in &names {
        let r = reference(name);
        let gguf = dir.path().join(format!("{name}.gguf"));
        let (g, src) = (gguf.to_str().unwrap(), golden(name));
        let (ok, _, err) = lbm(&["convert", src.to_str().unwrap(), "-o", g, "--type", "f32"]);
        assert!(ok, "{name}: convert: {err}");

        let lg = dir.path().join(format!("{name}.logits"));
        let (ok, _, err) =
            lbm(&["logits", "-m", g, "-t", "1", "--ids", &join(&r.input_ids), "-o", lg.to_str().unwrap()]);
        assert!(ok, "{name}: logits: {err}");
        let raw = std::fs::read(&lg).unwrap();
        let got: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(got.len(), r.logits.len(), "{name}: [n_ids, vocab] floats");
        let max = got.iter().zip(&r.logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max <= 1e-4, "{name}: max logit error {max}");

        let n = r.greedy_output.len().to_string();
        let (ok, out, err) =
            lbm(&["generate", "-m", g, "-t", "1", "--temp", "0", "--ids", &join(&r.greedy_prompt), "-n", &n, "--json"]);
        assert!(ok, "{name}: generate: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let ids: Vec<u32> = v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(ids, r.greedy_output, "{name}: greedy ids");
        assert_eq!(v["text"], "", "{name}: no tokenizer, no text");

        // Text needs a tokenizer: a clear message, not a missing-key error.
        let (ok, _, err) = lbm(&["generate", "-m", g, "-p", "hello", "-n", "2"]);
        assert!(!ok);
        assert!(err.contains("has no tokenizer") && err.contains("-z"), "{name}: {err}");
    }
}
