//! `lbm quantize --type q4_1` and `lbm convert --type q4_1`: llama.cpp's
//! types per tensor for a Q4_1 file, the same bytes both ways, and a model
//! that runs close to transformers' logits.

use convert::{convert, ConvertOptions, OutType};
use engine::gguf::{GgmlType, Gguf, Value};
use engine::load::load_model;
use engine::quantize::{quantize_gguf, QuantType};
use engine::sampler::argmax;
use kernels::exec::Serial;

fn lbm(args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbm")).args(args).output().unwrap();
    assert!(out.status.success(), "lbm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn q4_1_files_from_quantize_and_convert() {
    let dir = tempfile::tempdir().unwrap();
    let golden = testdata::path("golden/llama-mha-tied");
    let f32_path = dir.path().join("f32.gguf");
    convert(&ConvertOptions { input: golden.clone(), output: f32_path.clone(), ty: OutType::F32 }, &mut |_| {})
        .unwrap();
    let f32_bytes = std::fs::read(&f32_path).unwrap();

    let q = dir.path().join("q4_1.gguf");
    lbm(&["quantize", f32_path.to_str().unwrap(), "-o", q.to_str().unwrap(), "--type", "q4_1"]);
    let bytes = std::fs::read(&q).unwrap();
    // The library gives the same file, and so does `convert --type q4_1`.
    assert!(bytes == quantize_gguf(&f32_bytes, QuantType::Q4_1).unwrap().to_bytes().unwrap());
    let direct = dir.path().join("direct.gguf");
    lbm(&["convert", golden.to_str().unwrap(), "-o", direct.to_str().unwrap(), "--type", "q4_1"]);
    assert!(std::fs::read(&direct).unwrap() == bytes);

    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    // llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_1.
    assert_eq!(g.get("general.file_type").and_then(Value::as_u64), Some(3));
    for t in &g.tensors {
        // Tied embeddings take the output's type: Q6_K, or Q8_0 for rows of 96.
        let want = if t.name.ends_with("norm.weight") {
            GgmlType::F32
        } else if t.name == "token_embd.weight" {
            GgmlType::Q8_0
        } else {
            GgmlType::Q4_1
        };
        assert_eq!(t.ty, want, "{}", t.name);
    }

    // Against transformers' logits: Q4_1 (a scale and a min per 32) is finer
    // than Q4_0, whose bounds in tests/quantize.rs are a max error of 1.2
    // and 40% argmax agreement on this noise-amplifying random model.
    let dir_g = testdata::path("golden/llama-mha-tied");
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(dir_g.join("tokens.json")).unwrap()).unwrap();
    let ids: Vec<u32> = t["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let vocab = t["logits_shape"][1].as_u64().unwrap() as usize;
    let raw = std::fs::read(dir_g.join("logits.f32")).unwrap();
    let want: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let m = load_model(Box::new(bytes)).unwrap();
    let mut s = engine::model::Session::new(&m, 4096).unwrap();
    let (mut err, mut agree) = (0.0f32, 0);
    for (&id, w) in ids.iter().zip(want.chunks_exact(vocab)) {
        let got = s.eval(&m, &[id], &Serial).unwrap();
        err = got.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(err, f32::max);
        agree += usize::from(argmax(got) == argmax(w));
    }
    let agree = agree as f32 / ids.len() as f32;
    eprintln!("Q4_1: max logit error {err}, argmax agreement {agree}");
    assert!(err <= 1.2 && agree >= 0.4, "Q4_1: max logit error {err}, argmax agreement {agree}");
}
