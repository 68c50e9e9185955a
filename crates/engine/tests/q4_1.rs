//! Q4_1 and Q5_1 weights (GGUF types 3 and 7): a Q4_1 or Q5_1 model
//! computes what its weights dequantized to F32 compute, and a real Q4_1 file (SmolLM2-135M-Instruct,
//! as published) loads, runs and continues a prompt as llama.cpp does.

mod common;
use common::{logits, max_err};

use engine::gguf::{GgmlType, Gguf, GgufWriter};
use engine::load::load_model;
use engine::model::Session;
use engine::quantize::{quantize_gguf, QuantType};
use kernels::exec::Serial;
use kernels::ops::{dequantize_row, Weights};

const SMOLLM2: &str = "testdata/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The file with every quantized tensor dequantized to F32, and the
/// number of tensors of type `main`.
fn dequantized(file: &[u8], main: GgmlType) -> (Vec<u8>, usize) {
    let g = Gguf::parse(file, file.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        w.add_kv(k, v.clone());
    }
    let mut n_main = 0;
    for t in &g.tensors {
        let data = g.tensor_data(file, &t.name).unwrap();
        let cols = t.dims[0] as usize;
        let rows = t.dims.iter().skip(1).product::<u64>() as usize;
        if t.ty == GgmlType::F32 {
            w.add_tensor(&t.name, &t.dims, t.ty, data.to_vec()).unwrap();
            continue;
        }
        n_main += usize::from(t.ty == main);
        let wts = Weights::from_bytes(t.ty.weight_type().unwrap(), data, false).unwrap();
        let mut out = vec![0.0f32; rows * cols];
        for r in 0..rows {
            dequantize_row(wts, r, cols, &mut out[r * cols..(r + 1) * cols]);
        }
        w.add_tensor(&t.name, &t.dims, GgmlType::F32, out.iter().flat_map(|v| v.to_le_bytes()).collect()).unwrap();
    }
    (w.to_bytes().unwrap(), n_main)
}

#[test]
fn q4_1_and_q5_1_models_equal_their_dequantized_weights() {
    for (ty, main, dim, hidden, heads, kv_heads) in [
        (QuantType::Q4_1, GgmlType::Q4_1, 64usize, 96usize, 4usize, 2usize),
        (QuantType::Q4_1, GgmlType::Q4_1, 96, 160, 6, 3),
        (QuantType::Q5_1, GgmlType::Q5_1, 64, 96, 4, 2),
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
        let q = quantize_gguf(&f32_file, ty).unwrap().to_bytes().unwrap();
        let (deq, n_main) = dequantized(&q, main);
        // Every matrix but the output (Q8_0: its 32000 rows of `dim` are not
        // whole Q6_K super-blocks) has the file's type.
        assert_eq!(n_main, 2 * 7, "{ty:?} dim {dim}");
        let toks: Vec<u32> = (0..24).map(|i| (i * 977 + 13) % 32000).collect();
        let (a, b) = (logits(q.clone(), &toks, false), logits(deq.clone(), &toks, false));
        for (p, (x, y)) in a.iter().zip(&b).enumerate() {
            let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = max_err(x, y);
            // The same weights: only the rounding of the activations to Q8_1
            // (and Q8_0 for the output), at most half a step of 1/127 of each
            // block's largest value, separates the two.
            assert!(err <= 0.01 * scale.max(1.0), "{ty:?} dim {dim} pos {p}: max error {err} (scale {scale})");
            assert!(err > 0.0 || p > 0, "{ty:?} dim {dim}: the quantized activations changed nothing");
        }
        // A prompt batch gives the bits of token-by-token decoding.
        let c = logits(q, &toks, true);
        assert_eq!(
            c[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            a.last().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{ty:?} dim {dim}: prompt batch against token by token"
        );
    }
}

/// The id of each token string in the file's vocabulary.
fn token_ids(file: &[u8], pieces: &[&str]) -> Vec<u32> {
    let g = Gguf::parse(file, file.len() as u64).unwrap();
    let toks = g.get_array("tokenizer.ggml.tokens").unwrap();
    pieces
        .iter()
        .map(|p| toks.iter().position(|t| t.as_str() == Some(p)).unwrap_or_else(|| panic!("no token {p:?}")) as u32)
        .collect()
}

/// Byte-level BPE pieces back to text (the GPT-2 byte alphabet, for the
/// few characters these tests meet).
fn detok(file: &[u8], ids: &[u32]) -> String {
    let g = Gguf::parse(file, file.len() as u64).unwrap();
    let toks = g.get_array("tokenizer.ggml.tokens").unwrap();
    ids.iter().map(|&i| toks[i as usize].as_str().unwrap().replace('\u{120}', " ").replace('\u{10a}', "\n")).collect()
}

#[test]
fn smollm2_q4_1_file_loads_runs_and_continues_like_llama_cpp() {
    if testdata::optional("smollm2_q4_1_file_loads_runs_and_continues_like_llama_cpp", SMOLLM2).is_none() {
        return;
    }
    let file = common::read(SMOLLM2);
    {
        let g = Gguf::parse(&file, file.len() as u64).unwrap();
        let n = |ty| g.tensors.iter().filter(|t| t.ty == ty).count();
        assert_eq!((n(GgmlType::Q4_1), n(GgmlType::F32), n(GgmlType::Q8_0)), (210, 61, 1));
    }
    // The first two prompts of the reference, as llama.cpp's tokenizer splits
    // them (one token per word and comma; no BOS: add_bos_token is false).
    let want = common::json("testdata/smollm2/llama-cpp-reference.json");
    let prompts: [&[&str]; 2] = [
        &["The", "\u{120}capital", "\u{120}of", "\u{120}France", "\u{120}is"],
        &[
            "Once",
            "\u{120}upon",
            "\u{120}a",
            "\u{120}time",
            ",",
            "\u{120}in",
            "\u{120}a",
            "\u{120}small",
            "\u{120}village",
            ",",
        ],
    ];
    let m = load_model(common::blob(file.clone())).unwrap();
    let mut s = Session::new(&m, 64).unwrap();
    for (k, pieces) in prompts.iter().enumerate() {
        let prompt = token_ids(&file, pieces);
        assert_eq!(detok(&file, &prompt), want["greedy"][k]["prompt"].as_str().unwrap());
        s.clear();
        let logits = s.eval(&m, &prompt, &Serial).unwrap().to_vec();
        assert_eq!(logits.len(), 49152);
        assert!(logits.iter().all(|v| v.is_finite()), "non-finite logits");
        let hi = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lo = logits.iter().fold(f32::INFINITY, |a, &b| a.min(b));
        assert!(hi - lo > 5.0, "flat logits: {lo}..{hi}");
        // llama.cpp's greedy tokens (temperature 0). Its other kernels (an
        // F16 KV cache among them) differ from ours in the last bits, so a
        // long run can part ways late (the first prompt agrees for all 32
        // tokens, the second for 12); the first 10 must agree.
        let mut out = Vec::new();
        let mut next = common::argmax(&logits);
        for _ in 0..10 {
            out.push(next);
            next = common::argmax(s.eval(&m, &[next], &Serial).unwrap());
        }
        let text = detok(&file, &out);
        let reference = want["greedy"][k]["text"].as_str().unwrap();
        assert!(
            text.len() > 30 && reference.starts_with(&text),
            "prompt {k}: greedy text {text:?}, llama.cpp {reference:?}"
        );
    }
}
