//! Random-weight GGUFs of each family's full real shape (written by
//! `lbm bench --gen-model`) load, run a token, and `lbm info` reports their
//! dimensions and memory.

use std::path::PathBuf;
use std::process::Command;

use ::host::pool::ThreadPool;
use engine::load::load_model;
use lbm::bench::Shape;

fn lbm(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lbm")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn check(shape: &str, ty: &str, vocab: Option<&str>) {
    let s = Shape::find(shape).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join(format!("{shape}.gguf"));
    let out_s = out.to_str().unwrap();
    let mut args = vec!["bench", "--gen-model", shape, "--type", ty, "-o", out_s];
    let vocab_path = vocab.map(testdata::path);
    if let Some(v) = &vocab_path {
        args.extend(["--vocab", v.to_str().unwrap()]);
    }
    let (ok, _, err) = lbm(&args);
    assert!(ok, "{shape}: {err}");
    let (ok, info, err) = lbm(&["info", "--json", out_s]);
    assert!(ok, "{shape}: {err}");
    let v: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    assert_eq!(v["arch"], s.arch, "{shape}");
    assert_eq!(v["dim"].as_u64(), Some(s.dim), "{shape}");
    assert_eq!(v["n_layers"].as_u64(), Some(s.layers), "{shape}");
    assert_eq!(v["n_heads"].as_u64(), Some(s.heads), "{shape}");
    assert_eq!(v["n_kv_heads"].as_u64(), Some(s.kv_heads), "{shape}");
    assert_eq!(v["vocab_size"].as_u64(), Some(s.vocab), "{shape}");
    let file_size = std::fs::metadata(&out).unwrap().len();
    assert_eq!(v["file_size"].as_u64(), Some(file_size));
    let mem = v["mem_needed"].as_u64().unwrap();
    assert!(mem > file_size && mem < file_size + (8u64 << 30), "{shape}: memory {mem} for a {file_size}-byte file");
    let bytes = std::fs::read(&out).unwrap();
    drop(dir);
    let m = load_model(Box::new(bytes)).unwrap_or_else(|e| panic!("{shape}: {e}"));
    let mut sess = engine::model::Session::new(&m, 64).unwrap();
    assert_eq!((m.config.dim as u64, m.config.hidden_dim as u64), (s.dim, s.hidden));
    let pool = ThreadPool::new(2);
    let l = sess.eval(&m, &[1, 2, 3], &pool).unwrap();
    assert!(l.iter().all(|x| x.is_finite()), "{shape}");
}

#[test]
fn qwen2_0_5b() {
    check("qwen2-0.5B", "q8_0", None);
}

#[test]
fn gemma_2b() {
    check("gemma-2b", "q4_0", None);
}

#[test]
fn phi_2() {
    check("phi-2", "q4_0", None);
}

#[test]
fn mistral_7b() {
    check("mistral-7b", "q4_0", Some("testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf"));
}

#[test]
fn tinyllama_1_1b_with_the_llama2_vocabulary() {
    // TinyLlama-1.1B-Chat in every type it is published in.
    for ty in ["q8_0", "q4_k_m", "f16", "f32"] {
        check("tinyllama-1.1B", ty, Some("testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf"));
    }
}
