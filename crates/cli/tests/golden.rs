//! Every model in ../shared/golden, converted by `lbm convert` and run by the
//! engine, against the logits and greedy continuations transformers computed.

use std::path::PathBuf;

use engine::load::load_model;
use engine::sampler::argmax;
use kernels::exec::Serial;
use lbm::convert::{convert, ConvertOptions, OutType};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/golden")).join(name)
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
    Reference { input_ids: ids("input_ids"), logits, greedy_prompt: ids("greedy_prompt"), greedy_output: ids("greedy_output"), vocab }
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
