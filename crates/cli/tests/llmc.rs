//! An llm.c GPT-2 checkpoint, written here from the golden transformers GPT-2
//! (f32 and bf16), runs with the reference logits.

use std::path::PathBuf;

use engine::load::{load_model, probe};
use kernels::exec::Serial;
use safetensors::SafeTensors;

fn golden(rel: &str) -> PathBuf {
    testdata::path("golden/gpt2").join(rel)
}

/// Writes llm.c's layout. HF Conv1D weights are [in, out]: transpose to [out, in].
fn write_llmc(bf16: bool, pad_vocab_to: usize) -> Vec<u8> {
    let st = std::fs::read(golden("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&st).unwrap();
    let get = |n: &str| -> (Vec<f32>, Vec<usize>) {
        let t = st.tensor(n).unwrap();
        (t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), t.shape().to_vec())
    };
    let t = |n: &str| -> Vec<f32> {
        let (v, s) = get(n);
        let (r, c) = (s[0], s[1]);
        let mut o = vec![0.0; v.len()];
        for i in 0..r {
            for j in 0..c {
                o[j * r + i] = v[i * c + j];
            }
        }
        o
    };
    let (l, c, v, maxt, nh) = (2usize, 64usize, 512usize, 128usize, 4usize);
    let mut header = [0i32; 256];
    header[..8].copy_from_slice(&[
        20240326,
        if bf16 { 5 } else { 3 },
        maxt as i32,
        v as i32,
        l as i32,
        nh as i32,
        c as i32,
        pad_vocab_to as i32,
    ]);
    let mut params: Vec<Vec<f32>> = Vec::new();
    let mut wte = get("transformer.wte.weight").0;
    wte.resize(pad_vocab_to * c, 0.25); // padding rows are never used
    params.push(wte);
    params.push(get("transformer.wpe.weight").0);
    let layers = |f: &dyn Fn(usize) -> Vec<f32>| -> Vec<f32> { (0..l).flat_map(f).collect() };
    params.push(layers(&|i| get(&format!("transformer.h.{i}.ln_1.weight")).0));
    params.push(layers(&|i| get(&format!("transformer.h.{i}.ln_1.bias")).0));
    params.push(layers(&|i| t(&format!("transformer.h.{i}.attn.c_attn.weight"))));
    params.push(layers(&|i| get(&format!("transformer.h.{i}.attn.c_attn.bias")).0));
    params.push(layers(&|i| t(&format!("transformer.h.{i}.attn.c_proj.weight"))));
    params.push(layers(&|i| get(&format!("transformer.h.{i}.attn.c_proj.bias")).0));
    params.push(layers(&|i| get(&format!("transformer.h.{i}.ln_2.weight")).0));
    params.push(layers(&|i| get(&format!("transformer.h.{i}.ln_2.bias")).0));
    params.push(layers(&|i| t(&format!("transformer.h.{i}.mlp.c_fc.weight"))));
    params.push(layers(&|i| get(&format!("transformer.h.{i}.mlp.c_fc.bias")).0));
    params.push(layers(&|i| t(&format!("transformer.h.{i}.mlp.c_proj.weight"))));
    params.push(layers(&|i| get(&format!("transformer.h.{i}.mlp.c_proj.bias")).0));
    params.push(get("transformer.ln_f.weight").0);
    params.push(get("transformer.ln_f.bias").0);
    let mut out: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
    for p in params {
        for x in p {
            if bf16 {
                out.extend_from_slice(&kernels::half::f32_to_bf16(x).to_le_bytes());
            } else {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    out
}

fn reference() -> (Vec<u32>, Vec<f32>) {
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(golden("tokens.json")).unwrap()).unwrap();
    let ids = t["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let raw = std::fs::read(golden("logits.f32")).unwrap();
    (ids, raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
}

fn max_err(bytes: Vec<u8>) -> f32 {
    let (ids, want) = reference();
    let s = probe(&bytes, bytes.len() as u64).unwrap();
    assert_eq!((s.format, s.arch.as_str(), s.vocab_size, s.n_layers), ("llm.c", "gpt2", 512, 2));
    let m = load_model(Box::new(bytes)).unwrap();
    let mut sess = engine::model::Session::new(&m, 4096).unwrap();
    let mut max = 0.0f32;
    for (p, &id) in ids.iter().enumerate() {
        let got = sess.eval(&m, &[id], &Serial).unwrap();
        let w = &want[p * 512..(p + 1) * 512];
        max = got.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(max, f32::max);
    }
    max
}

#[test]
fn llmc_f32_matches_transformers() {
    let e = max_err(write_llmc(false, 512 + 64));
    assert!(e < 1e-4, "{e}");
}

#[test]
fn llmc_bf16_is_close() {
    let e = max_err(write_llmc(true, 512));
    assert!(e < 0.05, "{e}");
}

#[test]
fn llmc_bad_headers() {
    let good = write_llmc(false, 512);
    let mut cut = good.clone();
    cut.truncate(good.len() - 4);
    assert!(load_model(Box::new(cut)).is_err());
    // Bytes past the weights the header describes: dimensions that do not match the file.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 8]);
    let e = load_model(Box::new(long.clone())).err().unwrap().to_string();
    assert!(e.contains("8 bytes after the weights"), "{e}");
    let e = engine::load::probe(&long, long.len() as u64).err().unwrap().to_string();
    assert!(e.contains("8 bytes after the weights"), "{e}");
    let mut v = good.clone();
    v[4] = 9;
    let e = load_model(Box::new(v)).err().unwrap();
    assert!(e.to_string().contains("llm.c version 9"), "{e}");
    let mut p = good;
    p[28..32].copy_from_slice(&100i32.to_le_bytes()); // padded vocab < vocab
    let e = load_model(Box::new(p)).err().unwrap().to_string();
    assert!(e.contains("padded_vocab_size 100 is smaller than vocab_size"), "{e}");
    assert!(!e.contains("Header {"), "{e}");
}
