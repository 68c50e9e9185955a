//! Format variants with no file in ../shared, written here from the reference
//! stories260K checkpoint: llama2.c v1, GGUF v2, and BF16 GGUF tensors.

mod common;
use common::*;

use engine::gguf::{GgmlType, Gguf, GgufWriter};
use engine::load::{load_model, probe};
use kernels::exec::Serial;

/// Logits of the prompt-less reference run at position 0..3.
fn reference_logits() -> Vec<Vec<f64>> {
    let e = json("testdata/expected/llama2c-generation.json");
    let run = &e["stories260K"]["runs"][0];
    (0..3).map(|p| serde_json::from_value(run["full_logits_at_pos"][p.to_string()].clone()).unwrap()).collect()
}

fn max_err(bytes: Vec<u8>) -> f64 {
    let want = reference_logits();
    let ids = [1u32, 403, 407];
    let m = load_model(blob(bytes)).unwrap();
    let mut s = engine::model::Session::new(&m, 8).unwrap();
    let mut max = 0.0f64;
    for (p, &id) in ids.iter().enumerate() {
        let got = s.eval(&m, &[id], &Serial).unwrap();
        for (a, b) in got.iter().zip(&want[p]) {
            max = max.max((f64::from(*a) - b).abs());
        }
    }
    max
}

#[test]
fn llama2c_v1_from_v0() {
    // v0: header(7 i32) emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis
    // v1: 256-byte header (magic, version, 7 i32, shared flag), rms_att, rms_ffn, rms_final, emb, wq..w3
    let v0 = read("testdata/stories260K/stories260K.bin");
    let f = |i: usize| -> &[u8] { &v0[28 + i * 4..] };
    let (d, h, l, v, kv) = (64usize, 172usize, 5usize, 512usize, 32usize);
    let sizes = [v * d, l * d, l * d * d, l * d * kv, l * d * kv, l * d * d, l * d, l * h * d, l * d * h, l * h * d, d];
    let mut parts = Vec::new();
    let mut off = 0;
    for s in sizes {
        parts.push(&f(off)[..s * 4]);
        off += s;
    }
    let [emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final] = parts[..] else { panic!() };
    let mut out = Vec::new();
    out.extend_from_slice(&0x616b_3432u32.to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    for x in [64i32, 172, 5, 8, 4, 512, 512] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.push(1);
    out.resize(256, 0);
    for p in [rms_att, rms_ffn, rms_final, emb, wq, wk, wv, wo, w1, w2, w3] {
        out.extend_from_slice(p);
    }
    let s = probe(&out, out.len() as u64).unwrap();
    assert_eq!(s.format, "llama2c-v1");
    let e = max_err(out);
    assert!(e < 1e-4, "{e}");
}

fn rewrite(version: u32, to_bf16: bool) -> Vec<u8> {
    let g = read("testdata/stories260K-gguf/stories260K.gguf");
    let parsed = Gguf::parse(&g, g.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &parsed.metadata {
        w.add_kv(k, v.clone());
    }
    for t in &parsed.tensors {
        let data = parsed.tensor_data(&g, &t.name).unwrap();
        if to_bf16 && t.dims.len() == 2 {
            let b: Vec<u8> = data
                .chunks_exact(4)
                .flat_map(|c| kernels::half::f32_to_bf16(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes())
                .collect();
            w.add_tensor(&t.name, &t.dims, GgmlType::BF16, b).unwrap();
        } else {
            w.add_tensor(&t.name, &t.dims, t.ty, data.to_vec()).unwrap();
        }
    }
    let mut bytes = w.to_bytes().unwrap();
    bytes[4..8].copy_from_slice(&version.to_le_bytes());
    bytes
}

#[test]
fn gguf_v2_file() {
    let b = rewrite(2, false);
    assert_eq!(Gguf::parse(&b, b.len() as u64).unwrap().version, 2);
    assert!(max_err(b) < 1e-4);
}

#[test]
fn gguf_bf16_tensors() {
    let b = rewrite(3, true);
    let s = probe(&b, b.len() as u64).unwrap();
    assert_eq!(s.tensor_type, "BF16");
    let e = max_err(b);
    // bf16 keeps 8 bits of mantissa: close, not exact.
    assert!(e < 0.5 && e > 1e-6, "{e}");
}
