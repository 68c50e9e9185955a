//! `lbm::bench`: random-weight models in real shapes, and the measurement
//! itself (its numbers are not asserted: speed is for `lbm bench` to report,
//! not for tests).

use engine::gguf::{GgmlType, Gguf, Value};
use engine::load::load_model;
use engine::quantize::{plan, quantize_gguf, QuantType};
use kernels::exec::Serial;
use lbm::bench::{bench, gen_model, BenchOptions, Shape, Stats, SHAPES};

fn gen(shape: &str, ty: QuantType, dir: &std::path::Path, vocab: bool, seed: u64) -> Vec<u8> {
    let out = dir.join(format!("{shape}-{}-{seed}.gguf", ty.name()));
    let v = testdata::path("testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
    gen_model(Shape::find(shape).unwrap(), ty, &out, vocab.then_some(v.as_path()), seed, 2, &mut |_| {}).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn shapes_have_their_published_sizes() {
    // Parameter counts of the real models (embeddings included, tied ones once).
    let count = |name: &str| -> u64 {
        Shape::find(name).unwrap().tensors().iter().map(|(_, d)| d.iter().product::<u64>()).sum()
    };
    for (name, millions) in [
        ("stories15M", 24.4), // 15M + the 32000 x 288 untied output
        ("stories110M", 134.1),
        ("tinyllama-1.1B", 1100.0),
        ("llama-7B", 6738.0),
        ("mistral-7b", 7241.0),
        ("qwen2-0.5B", 494.0),
        ("gemma-2b", 2506.0),
        ("phi-2", 2780.0),
        ("gpt2-124M", 163.0), // 124M + the written copy of the output head
    ] {
        let got = count(name) as f64 / 1e6;
        assert!((got - millions).abs() / millions < 0.01, "{name}: {got:.1}M parameters, expected about {millions}M");
    }
    assert!(Shape::find("nope").is_err());
    assert_eq!(SHAPES.len(), 9);
}

#[test]
fn generated_models_load_and_match_their_shape() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = gen("stories15M", QuantType::Q4_0, dir.path(), true, 1);
    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(g.get("general.file_type").and_then(Value::as_u64), Some(2));
    assert_eq!(g.get("llama.embedding_length").and_then(Value::as_u64), Some(288));
    // The real Llama 2 vocabulary came along.
    let tok = engine::gguf_model::tokenizer(&bytes).unwrap();
    assert_eq!(tok.vocab_size(), 32000);
    assert_eq!(tok.encode("Hello world", false), [15043, 3186]);
    // llama.cpp's types: Q4_0 matrices, a Q8_0 output (288 is not a multiple of 256), F32 norms.
    for t in &g.tensors {
        let want = if t.name.ends_with("norm.weight") {
            GgmlType::F32
        } else if t.name == "output.weight" {
            GgmlType::Q8_0
        } else {
            GgmlType::Q4_0
        };
        assert_eq!(t.ty, want, "{}", t.name);
    }
    let m = load_model(Box::new(bytes)).unwrap();
    assert_eq!((m.config.dim, m.config.n_layers, m.config.vocab_size), (288, 6, 32000));
    let mut s = engine::model::Session::new(&m, 16).unwrap();
    let logits = s.eval(&m, &[1], &Serial).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
    // Without a vocabulary file: a placeholder of the right size that loads.
    let bytes = gen("stories15M", QuantType::Q8_0, dir.path(), false, 1);
    assert_eq!(engine::gguf_model::tokenizer(&bytes).unwrap().vocab_size(), 32000);
}

#[test]
fn generated_quantized_files_equal_quantizing_the_generated_f32_file() {
    // The same seed gives the same values, so a Q4_K_M file must be exactly
    // what quantizing the F32 file gives (as llama-quantize also does: checked
    // by hand for stories110M, see docs/PERFORMANCE.md).
    let dir = tempfile::tempdir().unwrap();
    let f32_file = gen("stories15M", QuantType::F32, dir.path(), true, 7);
    for ty in [QuantType::Q4_K_M, QuantType::Q8_0, QuantType::F16] {
        let direct = gen("stories15M", ty, dir.path(), true, 7);
        let via = quantize_gguf(&f32_file, ty).unwrap().to_bytes().unwrap();
        assert!(direct == via, "{}: generated file differs from the quantized F32 file", ty.name());
    }
    // Another seed, other weights.
    let other = gen("stories15M", QuantType::F32, dir.path(), true, 8);
    assert_eq!(other.len(), f32_file.len());
    assert!(other != f32_file);
    // And the plan of the F32 file is llama.cpp's for Q4_K_M: 288 columns fall
    // back to Q5_0, ffn_down (768 columns) gets Q4_K / Q6_K, the output Q8_0.
    let g = Gguf::parse(&f32_file, f32_file.len() as u64).unwrap();
    let p = plan(&g, QuantType::Q4_K_M).unwrap();
    let ty = |n: &str| p.iter().find(|t| t.name == n).unwrap().to;
    assert_eq!(ty("output.weight"), GgmlType::Q8_0);
    assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::Q5_0);
    // use_more_bits for 6 layers: 6/8 = 0, 7*6/8 = 5, so layers 2 and 5.
    for (layer, want) in [(0, GgmlType::Q4_K), (1, GgmlType::Q4_K), (2, GgmlType::Q6_K), (5, GgmlType::Q6_K)] {
        assert_eq!(ty(&format!("blk.{layer}.ffn_down.weight")), want, "layer {layer}");
    }
}

#[test]
fn every_architecture_shape_builds_a_runnable_model() {
    // The real shapes are large; check the tensor lists against the loader on
    // a scaled-down copy of each architecture's layout.
    let dir = tempfile::tempdir().unwrap();
    for s in SHAPES.iter().filter(|s| ["gpt2-124M", "qwen2-0.5B", "gemma-2b", "phi-2", "mistral-7b"].contains(&s.name))
    {
        let small = Shape {
            dim: 64,
            hidden: 128,
            layers: 2,
            heads: 4,
            kv_heads: if s.kv_heads == s.heads { 4 } else { 2 },
            head_dim: s.head_dim.map(|_| 32),
            vocab: 300,
            ctx: 64,
            n_rot: s.n_rot.map(|_| 8),
            ..*s
        };
        let out = dir.path().join(format!("{}.gguf", s.name));
        gen_model(&small, QuantType::F32, &out, None, 3, 1, &mut |_| {}).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let m = load_model(Box::new(bytes)).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert_eq!(m.config.arch.name(), if s.arch == "phi2" { "phi2" } else { s.arch }, "{}", s.name);
        let mut session = engine::model::Session::new(&m, 8).unwrap();
        for _ in 0..3 {
            assert!(session.eval(&m, &[5], &Serial).unwrap().iter().all(|v| v.is_finite()), "{}", s.name);
        }
    }
}

#[test]
fn bench_reports_both_tests_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, gen("stories15M", QuantType::Q8_0, dir.path(), false, 2)).unwrap();
    let r = bench(&BenchOptions { model: path.clone(), n_prompt: 40, n_gen: 6, threads: 2, reps: 3 }).unwrap();
    let (pp, tg) = (r.pp.as_ref().unwrap(), r.tg.as_ref().unwrap());
    assert_eq!((pp.samples.len(), tg.samples.len()), (3, 3));
    assert!(pp.min > 0.0 && pp.min <= pp.median && pp.median <= pp.max && tg.min > 0.0);
    assert_eq!(r.ty, "Q8_0");
    let j = r.to_json();
    for k in ["model", "type", "threads", "pp_tok_s", "tg_tok_s", "n_prompt", "n_gen", "reps", "simd"] {
        assert!(j.get(k).is_some(), "missing {k}: {j}");
    }
    assert_eq!(j["threads"], 2);
    assert_eq!(j["pp_tok_s"].as_f64(), Some(pp.median));
    assert!(r.to_table().contains("pp40") && r.to_table().contains("tg6"));
    // Only one of the tests.
    let r = bench(&BenchOptions { model: path.clone(), n_prompt: 0, n_gen: 3, threads: 1, reps: 1 }).unwrap();
    assert!(r.pp.is_none() && r.tg.is_some() && r.to_json()["pp_tok_s"].is_null());
    assert!(bench(&BenchOptions { model: path.clone(), n_prompt: 0, n_gen: 0, threads: 1, reps: 1 }).is_err());
    // A prompt longer than the model's context is refused.
    assert!(bench(&BenchOptions { model: path, n_prompt: 300, n_gen: 0, threads: 1, reps: 1 }).is_err());
}

#[test]
fn stats_are_median_and_sample_spread() {
    let s = Stats::of(&[3.0, 1.0, 2.0, 10.0]);
    assert_eq!((s.median, s.min, s.max, s.mean), (2.5, 1.0, 10.0, 4.0));
    assert!((s.std - (((1.0f64 + 4.0 + 9.0 + 36.0) / 3.0).sqrt())).abs() < 1e-12);
    assert_eq!(Stats::of(&[5.0]).std, 0.0);
}
