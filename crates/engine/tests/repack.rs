//! Q4_0, Q4_K and Q6_K matrices are repacked into row octets at load: a model must
//! compute what the same weights compute unpacked (dequantized to F32),
//! token by token and in prompt batches, for matrices with and without
//! whole row octets.

mod common;
use common::{logits, max_err};

use engine::gguf::{GgmlType, Gguf, GgufWriter};
use engine::quantize::{quantize_gguf, QuantType};
use kernels::cast::view;
use kernels::ops::{dequantize_row, Weights};

/// The file with every quantized tensor dequantized to F32 (the same values).
fn dequantized(file: &[u8]) -> Vec<u8> {
    let g = Gguf::parse(file, file.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        w.add_kv(k, v.clone());
    }
    for t in &g.tensors {
        let data = g.tensor_data(file, &t.name).unwrap();
        let cols = t.dims[0] as usize;
        let rows = t.dims.iter().skip(1).product::<u64>() as usize;
        let wts = match t.ty {
            GgmlType::F32 => {
                w.add_tensor(&t.name, &t.dims, t.ty, data.to_vec()).unwrap();
                continue;
            }
            GgmlType::Q4_0 => Weights::Q4_0(view(data).unwrap()),
            GgmlType::Q8_0 => Weights::Q8_0(view(data).unwrap()),
            GgmlType::Q4_K => Weights::Q4_K(view(data).unwrap()),
            GgmlType::Q5_0 => Weights::Q5_0(view(data).unwrap()),
            GgmlType::Q5_K => Weights::Q5_K(view(data).unwrap()),
            GgmlType::Q6_K => Weights::Q6_K(view(data).unwrap()),
            other => panic!("{}: unexpected type {other:?}", t.name),
        };
        let mut out = vec![0.0f32; rows * cols];
        for r in 0..rows {
            dequantize_row(wts, r, cols, &mut out[r * cols..(r + 1) * cols]);
        }
        let bytes = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.add_tensor(&t.name, &t.dims, GgmlType::F32, bytes).unwrap();
    }
    w.to_bytes().unwrap()
}

/// Largest |a - b|; NaN if either holds a NaN.

#[test]
fn repacked_q4_0_and_q4_k_models_equal_their_dequantized_weights() {
    // The first model has whole row octets in every matrix; in the second,
    // wk and wv have 4 rows (one KV head of 4), so they stay in the file
    // layout while the other matrices are repacked. The third is Q4_K_M:
    // Q4_K and Q6_K matrices repacked.
    for (ty, dim, hidden, heads, kv_heads) in [
        (QuantType::Q4_0, 64usize, 96usize, 4usize, 2usize),
        (QuantType::Q4_0, 96, 128, 24, 1),
        (QuantType::Q4_K_M, 256, 512, 8, 2),
    ] {
        let f32_file = common::random_llama_gguf(
            "testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf",
            dim,
            hidden,
            2,
            heads,
            kv_heads,
            &[],
        );
        let q4 = quantize_gguf(&f32_file, ty).unwrap().to_bytes().unwrap();
        // The same values in F32 (and F32 activations).
        let deq = dequantized(&q4);
        let toks: Vec<u32> = (0..40).map(|i| (i * 977 + 13) % 32000).collect();
        let (a, b) = (logits(q4.clone(), &toks, false), logits(deq.clone(), &toks, false));
        for (p, (x, y)) in a.iter().zip(&b).enumerate() {
            let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = max_err(x, y);
            // Only the activations' Q8_0 rounding separates the two.
            assert!(err <= 0.01 * scale.max(1.0), "{ty:?} dim {dim} pos {p}: max error {err} (scale {scale})");
        }
        let (c, d) = (logits(q4, &toks, true), logits(deq, &toks, true));
        let scale = d[0].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = max_err(&c[0], &d[0]);
        assert!(err <= 0.01 * scale.max(1.0), "{ty:?} dim {dim} batched: max error {err}");
        let err = max_err(&c[0], a.last().unwrap());
        assert!(err <= 1e-4 * scale.max(1.0), "{ty:?} dim {dim}: prompt batch against token by token {err}");
    }
}
