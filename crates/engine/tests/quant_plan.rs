//! `engine::quantize`'s choice of type per tensor against what llama.cpp
//! reports for real models, on tensor lists alone (no weights needed).

use std::collections::BTreeMap;

use engine::gguf::GgmlType;
use engine::quantize::{plan_tensors, use_more_bits, ModelParams, QuantType, TensorSpec};

/// The tensors of a Llama-architecture model as (name, GGUF dims).
fn llama_tensors(dim: u64, hidden: u64, layers: u64, kv: u64, vocab: u64, untied: bool) -> Vec<(String, Vec<u64>)> {
    let mut t =
        vec![("token_embd.weight".to_string(), vec![dim, vocab]), ("output_norm.weight".to_string(), vec![dim])];
    if untied {
        t.push(("output.weight".to_string(), vec![dim, vocab]));
    }
    for i in 0..layers {
        for (n, d) in [
            ("attn_norm.weight", vec![dim]),
            ("attn_q.weight", vec![dim, dim]),
            ("attn_k.weight", vec![dim, kv]),
            ("attn_v.weight", vec![dim, kv]),
            ("attn_output.weight", vec![dim, dim]),
            ("ffn_norm.weight", vec![dim]),
            ("ffn_gate.weight", vec![dim, hidden]),
            ("ffn_up.weight", vec![dim, hidden]),
            ("ffn_down.weight", vec![hidden, dim]),
        ] {
            t.push((format!("blk.{i}.{n}"), d));
        }
    }
    t
}

/// Type counts of a Llama-2-style model (as many KV heads as heads).
fn counts(tensors: &[(String, Vec<u64>)], layers: i64, ty: QuantType) -> BTreeMap<&'static str, usize> {
    counts_for(tensors, &ModelParams::new("llama", layers, 32, 32), ty)
}

#[test]
fn llama_2_7b_gets_llama_cpps_types() {
    // llama.cpp prints these counts when it loads Llama-2-7B as Q4_K_M
    // ("type f32: 65, type q4_K: 193, type q6_K: 33") and as Q4_0
    // ("f32: 65, q4_0: 225, q6_K: 1").
    let t = llama_tensors(4096, 11008, 32, 4096, 32000, true);
    assert_eq!(counts(&t, 32, QuantType::Q4_K_M), BTreeMap::from([("F32", 65), ("Q4_K", 193), ("Q6_K", 33)]));
    assert_eq!(counts(&t, 32, QuantType::Q4_0), BTreeMap::from([("F32", 65), ("Q4_0", 225), ("Q6_K", 1)]));
    assert_eq!(counts(&t, 32, QuantType::Q8_0), BTreeMap::from([("F32", 65), ("Q8_0", 226)]));
    assert_eq!(counts(&t, 32, QuantType::Q6_K), BTreeMap::from([("F32", 65), ("Q6_K", 226)]));
    assert_eq!(counts(&t, 32, QuantType::F16), BTreeMap::from([("F32", 65), ("F16", 226)]));
}

#[test]
fn tinyllama_gets_the_types_llama_quantize_chose() {
    // llama-quantize (c392e50) on our TinyLlama-shaped F32 file: 135 tensors to
    // q4_K, 21 to q6_K, 45 copied (see docs/PERFORMANCE.md).
    let t = llama_tensors(2048, 5632, 22, 256, 32000, true);
    assert_eq!(counts(&t, 22, QuantType::Q4_K_M), BTreeMap::from([("F32", 45), ("Q4_K", 135), ("Q6_K", 21)]));
}

#[test]
fn q4_k_m_more_bits_layers_and_fallbacks() {
    let picked: Vec<i64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
    assert_eq!(picked, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    let t = llama_tensors(4096, 11008, 32, 4096, 32000, true);
    let specs: Vec<TensorSpec<'_>> =
        t.iter().map(|(n, d)| TensorSpec { name: n, dims: d, ty: GgmlType::F32 }).collect();
    let plan = plan_tensors(&specs, &ModelParams::new("llama", 32, 32, 32), QuantType::Q4_K_M).unwrap();
    for p in &plan {
        if let Some(rest) = p.name.strip_prefix("blk.") {
            let layer: i64 = rest.split('.').next().unwrap().parse().unwrap();
            if p.name.ends_with("attn_v.weight") || p.name.ends_with("ffn_down.weight") {
                let want = if picked.contains(&layer) { GgmlType::Q6_K } else { GgmlType::Q4_K };
                assert_eq!(p.to, want, "{}", p.name);
            }
        }
    }
    // Qwen2-0.5B-like: 896 is not a multiple of 256. Matrices with rows of 896
    // fall back to Q5_0, the tied embedding (the output) to Q8_0; ffn_down
    // (rows of 4864 = 19 x 256) keeps the K-quants.
    let t = llama_tensors(896, 4864, 24, 128, 151936, false);
    let specs: Vec<TensorSpec<'_>> =
        t.iter().map(|(n, d)| TensorSpec { name: n, dims: d, ty: GgmlType::F32 }).collect();
    let plan = plan_tensors(&specs, &ModelParams::new("llama", 24, 32, 32), QuantType::Q4_K_M).unwrap();
    let ty = |n: &str| plan.iter().find(|p| p.name == n).unwrap().to;
    assert_eq!(ty("token_embd.weight"), GgmlType::Q8_0);
    assert_eq!(ty("blk.5.attn_q.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.5.ffn_gate.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.4.ffn_down.weight"), GgmlType::Q4_K); // use_more_bits(4, 24) is false
    assert_eq!(ty("blk.5.ffn_down.weight"), GgmlType::Q6_K); // (5 - 3) % 3 == 2
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q8_0); // Q6_K does not fit 896: Q8_0
                                                           // A Q4_0 file of a model whose rows are not whole blocks is refused, as llama-quantize does.
    let t = llama_tensors(64, 172, 2, 32, 512, true);
    let specs: Vec<TensorSpec<'_>> =
        t.iter().map(|(n, d)| TensorSpec { name: n, dims: d, ty: GgmlType::F32 }).collect();
    let err = plan_tensors(&specs, &ModelParams::new("llama", 2, 32, 32), QuantType::Q4_0).unwrap_err();
    assert!(err.to_string().contains("172"), "{err}");
    // ...but Q4_K_M falls back all the way to F16 for such rows.
    let plan = plan_tensors(&specs, &ModelParams::new("llama", 2, 32, 32), QuantType::Q4_K_M).unwrap();
    assert_eq!(plan.iter().find(|p| p.name == "blk.0.ffn_down.weight").unwrap().to, GgmlType::F16);
}

#[test]
fn fused_qkv_gets_q5_k_in_q4_k_m() {
    // Phi-2 / GPT-2 layout: attn_qkv instead of attn_q/k/v.
    let (dim, layers) = (2560u64, 32u64);
    let mut t =
        vec![("token_embd.weight".to_string(), vec![dim, 51200]), ("output.weight".to_string(), vec![dim, 51200])];
    for i in 0..layers {
        t.push((format!("blk.{i}.attn_qkv.weight"), vec![dim, 3 * dim]));
        t.push((format!("blk.{i}.attn_qkv.bias"), vec![3 * dim]));
        t.push((format!("blk.{i}.ffn_down.weight"), vec![4 * dim, dim]));
    }
    let c = counts(&t, layers as i64, QuantType::Q4_K_M);
    assert_eq!(c.get("Q5_K"), Some(&32));
    assert_eq!(c.get("F32"), Some(&32)); // the biases stay as they are
}

#[test]
fn every_file_type_matches_llama_quantize_on_real_shapes() {
    // llama-quantize (c392e50) run on F32 files with these tensor lists (two
    // rows per matrix: the types depend only on names, row lengths and the
    // metadata) chose, tensor for tensor, what plan_tensors chooses; these
    // are its counts. TinyLlama: 22 layers, 32 heads / 4 KV heads (n_gqa 8).
    let t = llama_tensors(2048, 5632, 22, 256, 32000, true);
    let m = ModelParams::new("llama", 22, 32, 4);
    let c = |ty| counts_for(&t, &m, ty);
    assert_eq!(
        c(QuantType::Q2_K),
        BTreeMap::from([("F32", 45), ("Q2_K", 89), ("Q3_K", 44), ("Q4_K", 22), ("Q6_K", 1)])
    );
    assert_eq!(c(QuantType::Q3_K_S), BTreeMap::from([("F32", 45), ("Q3_K", 155), ("Q6_K", 1)]));
    assert_eq!(
        c(QuantType::Q3_K_M),
        BTreeMap::from([("F32", 45), ("Q3_K", 89), ("Q4_K", 63), ("Q5_K", 3), ("Q6_K", 1)])
    );
    assert_eq!(c(QuantType::Q3_K_L), BTreeMap::from([("F32", 45), ("Q3_K", 89), ("Q5_K", 66), ("Q6_K", 1)]));
    assert_eq!(c(QuantType::Q4_K_S), BTreeMap::from([("F32", 45), ("Q4_K", 149), ("Q5_K", 6), ("Q6_K", 1)]));
    assert_eq!(c(QuantType::Q5_K_S), BTreeMap::from([("F32", 45), ("Q5_K", 155), ("Q6_K", 1)]));
    assert_eq!(c(QuantType::Q5_K_M), BTreeMap::from([("F32", 45), ("Q5_K", 135), ("Q6_K", 21)]));
    assert_eq!(c(QuantType::IQ4_NL), BTreeMap::from([("F32", 45), ("IQ4_NL", 131), ("Q5_K", 24), ("Q6_K", 1)]));
    assert_eq!(c(QuantType::IQ4_XS), BTreeMap::from([("F32", 45), ("IQ4_XS", 131), ("Q5_K", 24), ("Q6_K", 1)]));
    assert_eq!(c(QuantType::Q5_0), BTreeMap::from([("F32", 45), ("Q5_0", 155), ("Q6_K", 1)]));

    // Qwen2-0.5B without its biases: rows of 896 take the fallback types,
    // 14 heads / 2 KV heads (n_gqa 7), the output tied to the embedding.
    let t = llama_tensors(896, 4864, 24, 128, 151936, false);
    let m = ModelParams::new("qwen2", 24, 14, 2);
    let c = |ty| counts_for(&t, &m, ty);
    assert_eq!(
        c(QuantType::Q2_K),
        BTreeMap::from([("F32", 49), ("IQ4_NL", 120), ("Q3_K", 24), ("Q5_0", 24), ("Q8_0", 1)])
    );
    assert_eq!(c(QuantType::Q3_K_S), BTreeMap::from([("F32", 49), ("IQ4_NL", 144), ("Q3_K", 24), ("Q8_0", 1)]));
    assert_eq!(
        c(QuantType::Q3_K_M),
        BTreeMap::from([
            ("F32", 49),
            ("IQ4_NL", 96),
            ("Q4_K", 23),
            ("Q5_0", 46),
            ("Q5_1", 2),
            ("Q5_K", 1),
            ("Q8_0", 1)
        ])
    );
    assert_eq!(
        c(QuantType::Q3_K_L),
        BTreeMap::from([("F32", 49), ("IQ4_NL", 96), ("Q5_1", 48), ("Q5_K", 24), ("Q8_0", 1)])
    );
    assert_eq!(
        c(QuantType::Q4_K_S),
        BTreeMap::from([("F32", 49), ("Q4_K", 21), ("Q5_0", 140), ("Q5_1", 4), ("Q5_K", 3), ("Q8_0", 1)])
    );
    assert_eq!(c(QuantType::Q5_K_S), BTreeMap::from([("F32", 49), ("Q5_1", 144), ("Q5_K", 24), ("Q8_0", 1)]));
    assert_eq!(
        c(QuantType::Q5_K_M),
        BTreeMap::from([("F32", 49), ("Q5_1", 132), ("Q5_K", 12), ("Q6_K", 12), ("Q8_0", 13)])
    );
    assert_eq!(
        c(QuantType::IQ4_NL),
        BTreeMap::from([("F32", 49), ("IQ4_NL", 141), ("Q5_1", 24), ("Q5_K", 3), ("Q8_0", 1)])
    );
    assert_eq!(
        c(QuantType::IQ4_XS),
        BTreeMap::from([("F32", 49), ("IQ4_NL", 120), ("IQ4_XS", 21), ("Q5_1", 24), ("Q5_K", 3), ("Q8_0", 1)])
    );
}

fn counts_for(tensors: &[(String, Vec<u64>)], m: &ModelParams<'_>, ty: QuantType) -> BTreeMap<&'static str, usize> {
    let specs: Vec<TensorSpec<'_>> =
        tensors.iter().map(|(n, d)| TensorSpec { name: n, dims: d, ty: GgmlType::F32 }).collect();
    let mut c = BTreeMap::new();
    for p in plan_tensors(&specs, m, ty).unwrap() {
        *c.entry(p.to.name()).or_insert(0) += 1;
    }
    c
}
