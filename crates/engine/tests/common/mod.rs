//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use engine::load::Blob;

/// Reference data, found by the `testdata` crate.
pub fn shared(rel: &str) -> PathBuf {
    testdata::path(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = shared(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(rel)).expect("valid JSON")
}

pub fn blob(bytes: Vec<u8>) -> Blob {
    Box::new(bytes)
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// A random-weight Llama GGUF with the vocabulary (and any other metadata)
/// of `vocab_gguf`, for tests that need a real tokenizer but no real weights.
pub fn random_llama_gguf(
    vocab_gguf: &str,
    dim: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    extra: &[(&str, engine::gguf::Value)],
) -> Vec<u8> {
    use engine::gguf::{GgmlType, Gguf, GgufWriter, Value};
    let v = read(vocab_gguf);
    let g = Gguf::parse(&v, v.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (k, val) in &g.metadata {
        if k.starts_with("tokenizer.") {
            w.add_kv(k, val.clone());
        }
    }
    let vocab = g.get_array("tokenizer.ggml.tokens").unwrap().len();
    let hd = dim / heads;
    for (k, val) in [
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("random".into())),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.feed_forward_length", Value::U32(hidden as u32)),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("llama.rope.dimension_count", Value::U32(hd as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
    ] {
        w.add_kv(k, val);
    }
    for (k, val) in extra {
        w.add_kv(k, val.clone());
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = |n: usize, scale: f32| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let x = ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale;
                x.to_le_bytes()
            })
            .collect()
    };
    let ones = |n: usize| -> Vec<u8> { (0..n).flat_map(|_| 1.0f32.to_le_bytes()).collect() };
    let kv = kv_heads * hd;
    let s = 1.0 / (dim as f32).sqrt();
    w.add_tensor("token_embd.weight", &[dim as u64, vocab as u64], GgmlType::F32, rand(vocab * dim, 1.0)).unwrap();
    w.add_tensor("output_norm.weight", &[dim as u64], GgmlType::F32, ones(dim)).unwrap();
    for l in 0..layers {
        let p = |n: &str| format!("blk.{l}.{n}");
        w.add_tensor(&p("attn_norm.weight"), &[dim as u64], GgmlType::F32, ones(dim)).unwrap();
        w.add_tensor(&p("ffn_norm.weight"), &[dim as u64], GgmlType::F32, ones(dim)).unwrap();
        w.add_tensor(&p("attn_q.weight"), &[dim as u64, dim as u64], GgmlType::F32, rand(dim * dim, s)).unwrap();
        w.add_tensor(&p("attn_k.weight"), &[dim as u64, kv as u64], GgmlType::F32, rand(dim * kv, s)).unwrap();
        w.add_tensor(&p("attn_v.weight"), &[dim as u64, kv as u64], GgmlType::F32, rand(dim * kv, s)).unwrap();
        w.add_tensor(&p("attn_output.weight"), &[dim as u64, dim as u64], GgmlType::F32, rand(dim * dim, s)).unwrap();
        w.add_tensor(&p("ffn_gate.weight"), &[dim as u64, hidden as u64], GgmlType::F32, rand(dim * hidden, s))
            .unwrap();
        w.add_tensor(&p("ffn_up.weight"), &[dim as u64, hidden as u64], GgmlType::F32, rand(dim * hidden, s)).unwrap();
        w.add_tensor(&p("ffn_down.weight"), &[hidden as u64, dim as u64], GgmlType::F32, rand(dim * hidden, s))
            .unwrap();
    }
    w.to_bytes().unwrap()
}

/// The largest absolute difference; NaN if either side has one.
pub fn max_err(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0f32, |m, e| if e.is_nan() || m.is_nan() { f32::NAN } else { m.max(e) })
}

/// The logits of `toks` on the model in `bytes`: after every token fed one
/// at a time, or (`batched`) after all but the last as one prompt batch and
/// then the last.
pub fn logits(bytes: Vec<u8>, toks: &[u32], batched: bool) -> Vec<Vec<f32>> {
    use engine::model::Session;
    use kernels::exec::Serial;
    let m = engine::load::load_model(blob(bytes)).unwrap();
    let mut s = Session::new(&m, toks.len()).unwrap();
    if batched {
        s.eval(&m, &toks[..toks.len() - 1], &Serial).unwrap();
        return vec![s.eval(&m, &toks[toks.len() - 1..], &Serial).unwrap().to_vec()];
    }
    toks.iter().map(|&t| s.eval(&m, &[t], &Serial).unwrap().to_vec()).collect()
}
