//! Hostile model and tokenizer files: every one is a typed error naming the
//! problem, never a panic.

mod common;
use common::*;

use engine::gguf::{GgmlType, GgufWriter, Value};
use engine::load::{load, load_model, probe};
use engine::Error;
use kernels::exec::Serial;

fn model_err(bytes: Vec<u8>) -> Error {
    match load_model(blob(bytes)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn v0() -> Vec<u8> {
    read("testdata/stories260K/stories260K.bin")
}

fn gguf() -> Vec<u8> {
    read("testdata/stories260K-gguf/stories260K.gguf")
}

#[test]
fn empty_file() {
    assert!(matches!(model_err(Vec::new()), Error::Truncated { .. }));
    assert!(probe(&[], 0).is_err());
}

#[test]
fn truncated_headers() {
    for n in [1, 4, 27] {
        assert!(matches!(model_err(v0()[..n].to_vec()), Error::Truncated { .. }), "v0 prefix {n}");
    }
    for n in [3, 8, 24, 100, 5000] {
        let e = model_err(gguf()[..n].to_vec());
        assert!(matches!(e, Error::Truncated { .. } | Error::BadMagic { .. }), "gguf prefix {n}: {e:?}");
    }
}

#[test]
fn truncated_tensor_data_names_the_tensor() {
    let b = v0();
    match model_err(b[..b.len() - 1000].to_vec()) {
        Error::TensorOutOfBounds { name, .. } => assert!(!name.is_empty()),
        e => panic!("{e:?}"),
    }
    let g = gguf();
    match model_err(g[..g.len() - 100].to_vec()) {
        Error::TensorOutOfBounds { name, .. } | Error::Truncated { what: name, .. } => assert!(!name.is_empty()),
        e => panic!("{e:?}"),
    }
    // probe on a cut file says so too.
    assert!(probe(&b[..b.len() - 1000], (b.len() - 1000) as u64).is_err());
}

#[test]
fn wrong_magic_and_version() {
    let mut g = gguf();
    g[3] = b'X';
    // Not GGUF any more: tried as llama2.c, whose header is now absurd.
    assert!(load_model(blob(g)).is_err());
    let mut v1 = Vec::new();
    v1.extend_from_slice(&engine::llama2c::MAGIC.to_le_bytes());
    v1.extend_from_slice(&7i32.to_le_bytes());
    v1.resize(256, 0);
    assert!(matches!(model_err(v1), Error::UnsupportedVersion { version: 7, .. }));
}

#[test]
fn absurd_dimensions() {
    let mut b = v0();
    b[0..4].copy_from_slice(&i32::MAX.to_le_bytes()); // dim
    assert!(matches!(model_err(b), Error::Invalid { .. } | Error::Overflow { .. }));
    let mut b = v0();
    b[8..12].copy_from_slice(&(-3i32).to_le_bytes()); // n_layers
    assert!(matches!(model_err(b), Error::Invalid { .. }));
    // n_kv_heads that does not divide n_heads
    let mut b = v0();
    b[16..20].copy_from_slice(&3i32.to_le_bytes());
    assert!(model_err(b).to_string().contains("n_kv_heads"));
}

/// A copy of stories260K.gguf with one change to metadata or tensors.
fn rewrite(edit: impl FnOnce(&mut GgufWriter)) -> Vec<u8> {
    let g = gguf();
    let parsed = engine::gguf::Gguf::parse(&g, g.len() as u64).unwrap();
    let mut w = GgufWriter::from_gguf(&parsed, &g).unwrap();
    edit(&mut w);
    w.to_bytes().unwrap()
}

#[test]
fn dims_that_overflow_and_missing_tensors() {
    let b = rewrite(|w| w.add_kv("llama.embedding_length", Value::U64(u64::MAX / 2)));
    assert!(matches!(model_err(b), Error::Invalid { .. } | Error::Overflow { .. }));
    // Drop one tensor by rebuilding without it.
    let g = gguf();
    let parsed = engine::gguf::Gguf::parse(&g, g.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &parsed.metadata {
        w.add_kv(k, v.clone());
    }
    for t in parsed.tensors.iter().filter(|t| t.name != "blk.3.ffn_up.weight") {
        w.add_tensor(&t.name, &t.dims, t.ty, parsed.tensor_data(&g, &t.name).unwrap().to_vec()).unwrap();
    }
    match model_err(w.to_bytes().unwrap()) {
        Error::MissingTensor(n) => assert_eq!(n, "blk.3.ffn_up.weight"),
        e => panic!("{e:?}"),
    }
    // A tensor with the wrong shape.
    let mut w = GgufWriter::new();
    for (k, v) in &parsed.metadata {
        w.add_kv(k, v.clone());
    }
    for t in &parsed.tensors {
        if t.name == "blk.1.attn_k.weight" {
            w.add_tensor(&t.name, &[32, 64], GgmlType::F32, vec![0; 32 * 64 * 4]).unwrap();
        } else {
            w.add_tensor(&t.name, &t.dims, t.ty, parsed.tensor_data(&g, &t.name).unwrap().to_vec()).unwrap();
        }
    }
    match model_err(w.to_bytes().unwrap()) {
        Error::TensorShape { name, .. } => assert_eq!(name, "blk.1.attn_k.weight"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn tensor_offset_past_the_end() {
    let mut g = gguf();
    // The first tensor info's offset field: find it by parsing, then patch it.
    let parsed = engine::gguf::Gguf::parse(&g, g.len() as u64).unwrap();
    let rel = parsed.tensors[0].offset - parsed.data_offset;
    let pat = rel.to_le_bytes();
    let name = parsed.tensors[0].name.as_bytes();
    let at = g.windows(name.len()).position(|w| w == name).unwrap();
    let off_pos = g[at..].windows(8).position(|w| w == pat).unwrap() + at;
    g[off_pos..off_pos + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    match model_err(g) {
        Error::TensorOutOfBounds { name, .. } => assert_eq!(name, parsed.tensors[0].name),
        e => panic!("{e:?}"),
    }
}

#[test]
fn unsupported_architecture_is_named() {
    let b = rewrite(|w| w.add_kv("general.architecture", Value::String("mamba".into())));
    assert_eq!(model_err(b), Error::UnsupportedArchitecture("mamba".into()));
}

#[test]
fn tokenizer_that_does_not_match_the_model() {
    let big = read("testdata/llama2c-tokenizer/tokenizer.bin");
    let e = load(blob(v0()), Some(&big)).err().expect("error");
    assert!(matches!(e, Error::VocabMismatch { .. }), "{e:?}");
    let e = load(blob(v0()), None).err().expect("error");
    assert!(e.to_string().contains("tokenizer"), "{e}");
}

#[test]
fn ids_beyond_the_vocabulary_and_a_full_context() {
    let m = load_model(blob(v0())).unwrap();
    let mut s = engine::model::Session::new(&m, 4).unwrap();
    assert_eq!(s.eval(&m, &[512], &Serial).unwrap_err(), Error::TokenOutOfRange { id: 512, vocab: 512 });
    for _ in 0..4 {
        s.eval(&m, &[1], &Serial).unwrap();
    }
    assert_eq!(s.eval(&m, &[1], &Serial).unwrap_err(), Error::ContextFull { n_ctx: 4 });
    // A session made for another model is refused, not run.
    let other = load_model(blob(gguf())).unwrap();
    assert!(s.eval(&other, &[1], &Serial).is_err());
}

#[test]
fn random_corruption_never_panics() {
    let base = v0();
    let mut s = 0x1234_5678_9abc_def0u64;
    for _ in 0..300 {
        let mut b = base.clone();
        for _ in 0..4 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let i = (s % 64) as usize; // the header and the first weights
            b[i] = (s >> 32) as u8;
        }
        let _ = probe(&b, b.len() as u64);
        if let Ok(m) = load_model(blob(b)) {
            if let Ok(mut s) = engine::model::Session::new(&m, 8) {
                let _ = s.eval(&m, &[1], &Serial);
            }
        }
    }
    let g = gguf();
    for _ in 0..300 {
        let mut b = g.clone();
        for _ in 0..4 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let i = (s % 14176) as usize; // header, metadata and tensor infos
            b[i] = (s >> 32) as u8;
        }
        let _ = probe(&b, b.len() as u64);
        if let Ok(m) = load_model(blob(b.clone())) {
            if let Ok(mut s) = engine::model::Session::new(&m, 8) {
                let _ = s.eval(&m, &[1], &Serial);
            }
        }
        let _ = engine::gguf_model::tokenizer(&b);
    }
}
