//! Every weight type of the kernels' table runs in a model: a model whose
//! matrices have that type computes what the same weights dequantized to
//! F32 compute, token by token and in a prompt batch; and a type the
//! kernels lack is refused with the tensor's name.

mod common;
use common::max_err;

use engine::gguf::{GgmlType, Gguf, GgufWriter};
use engine::load::load_model;
use engine::model::Session;
use engine::quantize::encode;
use kernels::exec::Serial;
use kernels::ops::{dequantize_row, Weights};
use kernels::types::WType;

/// `f32_file` with every matrix (2-D tensor) encoded as `ty`, and the same
/// values back in F32.
fn encoded_and_dequantized(f32_file: &[u8], ty: GgmlType) -> (Vec<u8>, Vec<u8>) {
    let g = Gguf::parse(f32_file, f32_file.len() as u64).unwrap();
    let (mut q, mut d) = (GgufWriter::new(), GgufWriter::new());
    for (k, v) in &g.metadata {
        q.add_kv(k, v.clone());
        d.add_kv(k, v.clone());
    }
    for t in &g.tensors {
        let data = g.tensor_data(f32_file, &t.name).unwrap();
        if t.dims.len() < 2 {
            q.add_tensor(&t.name, &t.dims, t.ty, data.to_vec()).unwrap();
            d.add_tensor(&t.name, &t.dims, t.ty, data.to_vec()).unwrap();
            continue;
        }
        let x: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let bytes = encode(&Serial, &x, ty).unwrap();
        let cols = t.dims[0] as usize;
        let w = Weights::from_bytes(ty.weight_type().unwrap(), &bytes, false).unwrap();
        let mut back = vec![0.0f32; x.len()];
        for (r, row) in back.chunks_exact_mut(cols).enumerate() {
            dequantize_row(w, r, cols, row);
        }
        d.add_tensor(&t.name, &t.dims, GgmlType::F32, back.iter().flat_map(|v| v.to_le_bytes()).collect()).unwrap();
        q.add_tensor(&t.name, &t.dims, ty, bytes).unwrap();
    }
    (q.to_bytes().unwrap(), d.to_bytes().unwrap())
}

#[test]
fn every_table_type_runs_like_its_dequantized_weights() {
    // Rows of 256: whole blocks of every type.
    let f32_file =
        common::random_llama_gguf("testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf", 256, 512, 2, 8, 2, &[]);
    let toks: Vec<u32> = (0..12).map(|i| (i * 977 + 13) % 32000).collect();
    for wt in WType::all() {
        let ty = GgmlType::from_u32(wt.info().gguf_id).unwrap();
        if ty == GgmlType::F32 {
            continue;
        }
        let (q, d) = encoded_and_dequantized(&f32_file, ty);
        let mq = load_model(common::blob(q)).unwrap();
        let md = load_model(common::blob(d)).unwrap();
        let (mut sq, mut sd) = (Session::new(&mq, 64).unwrap(), Session::new(&md, 64).unwrap());
        let mut last = Vec::new();
        for (p, &t) in toks.iter().enumerate() {
            let a = sq.eval(&mq, &[t], &Serial).unwrap().to_vec();
            let b = sd.eval(&md, &[t], &Serial).unwrap();
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = max_err(&a, b);
            // The same weights: only the rounding of the activations (to Q8_0,
            // Q8_1 or Q8_K: at most half a step of 1/127 of a block's largest
            // value) separates the two; F16 and BF16 take f32 activations.
            assert!(err <= 0.01 * scale.max(1.0), "{} pos {p}: max error {err} (scale {scale})", wt.name());
            last = a;
        }
        // A prompt batch gives the bits of token-by-token decoding.
        let mb = load_model(common::blob(encoded_and_dequantized(&f32_file, ty).0)).unwrap();
        let mut sb = Session::new(&mb, 64).unwrap();
        sb.eval(&mb, &toks[..toks.len() - 1], &Serial).unwrap();
        let c = sb.eval(&mb, &toks[toks.len() - 1..], &Serial).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        if wt.info().octets.is_none() {
            assert_eq!(bits(c), bits(&last), "{}: prompt batch against token by token", wt.name());
        } else {
            // Repacked types: the batch may take the row-octet kernels, equal to rounding.
            assert!(max_err(c, &last) <= 1e-4 * last.iter().fold(1.0f32, |m, v| m.max(v.abs())), "{}", wt.name());
        }
    }
}

#[test]
fn a_type_the_kernels_lack_is_refused_by_name() {
    let f32_file =
        common::random_llama_gguf("testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf", 256, 512, 1, 8, 2, &[]);
    let g = Gguf::parse(&f32_file, f32_file.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        w.add_kv(k, v.clone());
    }
    for t in &g.tensors {
        let data = g.tensor_data(&f32_file, &t.name).unwrap();
        if t.name == "blk.0.attn_q.weight" {
            // IQ2_XXS: 66 bytes per 256 values (256 x 256 = 256 super-blocks).
            w.add_tensor(&t.name, &t.dims, GgmlType::IQ2_XXS, vec![0u8; 256 * 66]).unwrap();
        } else {
            w.add_tensor(&t.name, &t.dims, t.ty, data.to_vec()).unwrap();
        }
    }
    let err = load_model(common::blob(w.to_bytes().unwrap())).err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("blk.0.attn_q.weight") && msg.contains("IQ2_XXS"), "{msg}");
}
