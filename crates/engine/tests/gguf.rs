//! GGUF reader and writer against the real reference files (see the testdata crate),
//! independent references (llama2.c checkpoint and tokenizer, GPT-2 BPE files),
//! hand-encoded bytes, and hostile input.

use engine::gguf::{GgmlType, Gguf, GgufWriter, Value};
use engine::Error;

macro_rules! testdata {
    ($p:literal) => {
        &testdata::path(concat!("testdata/", $p)).display().to_string()
    };
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(b: &[u8]) -> engine::Result<Gguf> {
    Gguf::parse(b, b.len() as u64)
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

// ---------------------------------------------------------------------------
// Real files

#[test]
fn stories260k_header_and_metadata() {
    let file = read(testdata!("stories260K-gguf/stories260K.gguf"));
    let g = parse(&file).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.metadata.len(), 19);
    assert_eq!(g.tensors.len(), 48);
    assert_eq!(g.alignment, 32);
    assert_eq!(g.data_offset, 14176);
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.get_u32("llama.embedding_length").unwrap(), 64);
    assert_eq!(g.get_u32("llama.feed_forward_length").unwrap(), 172);
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 5);
    assert_eq!(g.get_u32("llama.attention.head_count").unwrap(), 8);
    assert_eq!(g.get_u32("llama.attention.head_count_kv").unwrap(), 4);
    assert_eq!(g.get_u32("llama.rope.dimension_count").unwrap(), 8);
    assert_eq!(g.get_u64("llama.context_length").unwrap(), 2048);
    assert_eq!(g.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(), 1e-5);
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(g.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 1);
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 2);
    assert_eq!(g.get_u32("tokenizer.ggml.unknown_token_id").unwrap(), 0);
    assert_eq!(g.get_u32("tokenizer.ggml.seperator_token_id").unwrap(), u32::MAX);
    assert_eq!(g.get_u32("tokenizer.ggml.padding_token_id").unwrap(), u32::MAX);

    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    let scores = g.get_f32_array("tokenizer.ggml.scores").unwrap();
    let types = g.get_i32_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!((tokens.len(), scores.len(), types.len()), (512, 512, 512));
    assert_eq!(&tokens[..3], ["<unk>", "<s>", "</s>"]);
    assert_eq!(tokens[3], "<0x00>");
    assert_eq!(tokens[258], "<0xFF>");
    assert_eq!(&types[..3], [2, 3, 3]);
    assert!(types[3..259].iter().all(|&t| t == 6));
    assert!(types[259..].iter().all(|&t| t == 1));

    // Independent reference: llama2.c's tok512.bin has the same strings and
    // scores (spaces as U+2581 in GGUF, and <s>/</s> without the newlines).
    let tok = read(testdata!("stories260K/tok512.bin"));
    let reference = llama2c_vocab(&tok, 512);
    for (id, (s, score)) in reference.iter().enumerate() {
        let expect = match id {
            1 => "<s>".to_string(),
            2 => "</s>".to_string(),
            _ => s.replace(' ', "\u{2581}"),
        };
        assert_eq!(tokens[id], expect, "token {id}");
        assert_eq!(scores[id], *score, "score {id}");
    }
}

/// Parses a llama2.c tokenizer file: max_len i32, then (score f32, len i32, bytes).
fn llama2c_vocab(b: &[u8], n: usize) -> Vec<(String, f32)> {
    let mut p = 4;
    let mut out = Vec::new();
    for _ in 0..n {
        let score = f32::from_le_bytes(b[p..p + 4].try_into().unwrap());
        let len = i32::from_le_bytes(b[p + 4..p + 8].try_into().unwrap()) as usize;
        p += 8;
        out.push((String::from_utf8_lossy(&b[p..p + len]).into_owned(), score));
        p += len;
    }
    assert_eq!(p, b.len());
    out
}

#[test]
fn stories260k_tensors_match_llama2c_checkpoint() {
    let file = read(testdata!("stories260K-gguf/stories260K.gguf"));
    let g = parse(&file).unwrap();
    let t = g.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!((t.dims.as_slice(), t.ty, t.size), (&[64u64, 32][..], GgmlType::F32, 64 * 32 * 4));
    assert_eq!(t.n_elements(), 2048);
    let shapes: &[(&str, &[u64])] = &[
        ("token_embd.weight", &[64, 512]),
        ("output_norm.weight", &[64]),
        ("output.weight", &[64, 512]),
        ("blk.4.attn_q.weight", &[64, 64]),
        ("blk.4.attn_v.weight", &[64, 32]),
        ("blk.2.attn_output.weight", &[64, 64]),
        ("blk.1.ffn_gate.weight", &[64, 172]),
        ("blk.1.ffn_down.weight", &[172, 64]),
        ("blk.1.ffn_up.weight", &[64, 172]),
        ("blk.3.ffn_norm.weight", &[64]),
    ];
    for (name, dims) in shapes {
        let t = g.tensor(name).unwrap();
        assert_eq!(t.dims, *dims, "{name}");
        assert_eq!(t.ty, GgmlType::F32);
        assert_eq!(t.offset % 32, 0);
        assert!(t.offset >= g.data_offset);
    }
    assert!(g.tensors.iter().all(|t| t.ty == GgmlType::F32));
    assert_eq!(g.tensors[0].name, "token_embd.weight");
    assert_eq!(g.tensors[0].offset, g.data_offset);

    // The llama2.c v0 checkpoint: 7 x i32 header, then the f32 weights.
    let bin = read(testdata!("stories260K/stories260K.bin"));
    let w = f32s(&bin[28..]);
    let (dim, hidden, layers, kv_dim, vocab) = (64, 172, 5, 32, 512);
    let mut off = 0;
    let mut take = |n: usize| {
        let s = &w[off..off + n];
        off += n;
        s
    };
    let emb = take(vocab * dim);
    let rms_att = take(layers * dim);
    let wq = take(layers * dim * dim);
    let wk = take(layers * kv_dim * dim);
    let wv = take(layers * kv_dim * dim);
    let wo = take(layers * dim * dim);
    let rms_ffn = take(layers * dim);
    let w1 = take(layers * hidden * dim);
    let w2 = take(layers * dim * hidden);
    let w3 = take(layers * hidden * dim);
    let rms_final = take(dim);

    let data = |name: &str| f32s(g.tensor_data(&file, name).unwrap());
    // token_embd.weight is byte for byte the floats right after the header.
    assert_eq!(g.tensor_data(&file, "token_embd.weight").unwrap(), &bin[28..28 + 512 * 64 * 4]);
    assert_eq!(data("output.weight"), emb);
    assert_eq!(data("output_norm.weight"), rms_final);
    for l in 0..layers {
        let layer = |a: &[f32], n: usize| a[l * n..(l + 1) * n].to_vec();
        assert_eq!(data(&format!("blk.{l}.attn_norm.weight")), layer(rms_att, dim));
        assert_eq!(data(&format!("blk.{l}.attn_q.weight")), layer(wq, dim * dim));
        assert_eq!(data(&format!("blk.{l}.attn_k.weight")), layer(wk, kv_dim * dim));
        assert_eq!(data(&format!("blk.{l}.attn_v.weight")), layer(wv, kv_dim * dim));
        assert_eq!(data(&format!("blk.{l}.attn_output.weight")), layer(wo, dim * dim));
        assert_eq!(data(&format!("blk.{l}.ffn_norm.weight")), layer(rms_ffn, dim));
        assert_eq!(data(&format!("blk.{l}.ffn_gate.weight")), layer(w1, hidden * dim));
        assert_eq!(data(&format!("blk.{l}.ffn_down.weight")), layer(w2, dim * hidden));
        assert_eq!(data(&format!("blk.{l}.ffn_up.weight")), layer(w3, hidden * dim));
    }
}

/// IEEE half to f32 (test-only reference decoder).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = (h >> 10) & 0x1f;
    let man = f32::from(h & 0x3ff);
    sign * match exp {
        0 => man * 2f32.powi(-24),
        31 => f32::NAN,
        e => (1.0 + man / 1024.0) * 2f32.powi(i32::from(e) - 15),
    }
}

#[test]
fn stories260k_f16_found_by_name() {
    let file = read(testdata!("stories260K-gguf/stories260K-F16.gguf"));
    let f32_file = read(testdata!("stories260K-gguf/stories260K.gguf"));
    let g = parse(&file).unwrap();
    let r = parse(&f32_file).unwrap();
    assert_eq!((g.version, g.metadata.len(), g.tensors.len()), (3, 21, 48));
    assert_eq!(g.data_offset, 14240);
    assert_eq!(g.get_u32("general.file_type").unwrap(), 1);
    assert_eq!(g.tensors[0].name, "output.weight");
    for t in &g.tensors {
        let rt = r.tensor(&t.name).unwrap();
        assert_eq!(t.dims, rt.dims, "{}", t.name);
        let want = if t.dims.len() == 2 { GgmlType::F16 } else { GgmlType::F32 };
        assert_eq!(t.ty, want, "{}", t.name);
        let reference = f32s(r.tensor_data(&f32_file, &t.name).unwrap());
        let raw = g.tensor_data(&file, &t.name).unwrap();
        let got: Vec<f32> = match t.ty {
            GgmlType::F16 => raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            _ => f32s(raw),
        };
        assert_eq!(got.len(), reference.len());
        for (a, b) in got.iter().zip(&reference) {
            assert!((a - b).abs() <= b.abs() * 2f32.powi(-11) + 2f32.powi(-25), "{}: {a} vs {b}", t.name);
        }
    }
}

#[test]
fn llama_spm_vocab() {
    let file = read(testdata!("llamacpp-vocab/ggml-vocab-llama-spm.gguf"));
    let g = parse(&file).unwrap();
    assert_eq!((g.version, g.tensors.len(), g.metadata.len()), (3, 0, 22));
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "default");
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 32);
    assert_eq!(g.get_u32("llama.embedding_length").unwrap(), 4096);
    assert_eq!(g.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 1);
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 2);
    assert_eq!(g.get_u32("tokenizer.ggml.unknown_token_id").unwrap(), 0);
    assert!(g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(!g.get_bool("tokenizer.ggml.add_eos_token").unwrap());
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    let scores = g.get_f32_array("tokenizer.ggml.scores").unwrap();
    let types = g.get_i32_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!((tokens.len(), scores.len(), types.len()), (32000, 32000, 32000));
    assert_eq!(&types[..4], [2, 3, 3, 6]);

    // llama2.c's tokenizer.bin: same vocabulary (ids 1 and 2 differ by newlines).
    let reference = llama2c_vocab(&read(testdata!("llama2c-tokenizer/tokenizer.bin")), 32000);
    for (id, (s, score)) in reference.iter().enumerate() {
        if id != 1 && id != 2 {
            assert_eq!(tokens[id], s.replace(' ', "\u{2581}"), "token {id}");
        }
        assert_eq!(scores[id], *score, "score {id}");
    }
}

#[test]
fn gpt2_vocab_is_fast_and_matches_openai_files() {
    let file = read(testdata!("llamacpp-vocab/ggml-vocab-gpt-2.gguf"));
    let t0 = std::time::Instant::now();
    let g = parse(&file).unwrap();
    let elapsed = t0.elapsed();
    assert!(elapsed.as_secs_f64() < 5.0, "parsing took {elapsed:?}");
    assert_eq!((g.version, g.tensors.len(), g.metadata.len()), (3, 0, 16));
    assert_eq!(g.architecture().unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");
    assert_eq!(g.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 50256);
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 50256);
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    let merges = g.get_str_array("tokenizer.ggml.merges").unwrap();
    let types = g.get_i32_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!((tokens.len(), merges.len(), types.len()), (50257, 50000, 50257));
    assert_eq!(merges[0], "\u{120} t");

    let bpe = String::from_utf8(read(testdata!("gpt2-bpe/vocab.bpe"))).unwrap();
    let reference: Vec<&str> = bpe.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(merges, reference);
    let enc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&read(testdata!("gpt2-bpe/encoder.json"))).unwrap();
    assert_eq!(enc.len(), 50257);
    for (s, id) in &enc {
        assert_eq!(tokens[id.as_u64().unwrap() as usize], s.as_str());
    }
}

#[test]
fn getters_report_missing_and_wrong_types() {
    let file = read(testdata!("stories260K-gguf/stories260K.gguf"));
    let g = parse(&file).unwrap();
    assert_eq!(g.get_u32("nope"), Err(Error::MissingKey("nope".into())));
    assert!(g.get("nope").is_none());
    assert!(matches!(g.get_u64("general.architecture"), Err(Error::WrongKeyType { expected: "u64", .. })));
    assert!(matches!(g.get_f32("llama.block_count"), Err(Error::WrongKeyType { .. })));
    assert!(matches!(g.get_bool("llama.block_count"), Err(Error::WrongKeyType { .. })));
    assert!(matches!(g.get_str("llama.block_count"), Err(Error::WrongKeyType { .. })));
    assert!(matches!(g.get_array("llama.block_count"), Err(Error::WrongKeyType { .. })));
    assert!(matches!(
        g.get_str_array("tokenizer.ggml.scores"),
        Err(Error::WrongKeyType { found, .. }) if found == "array of f32"
    ));
    assert!(matches!(g.get_f32_array("tokenizer.ggml.tokens"), Err(Error::WrongKeyType { .. })));
    assert!(matches!(g.get_i32_array("tokenizer.ggml.scores"), Err(Error::WrongKeyType { .. })));
    assert_eq!(g.tensor("x.weight"), Err(Error::MissingTensor("x.weight".into())));
    // tensor_data is bounds-checked against the slice it is given.
    let t = g.tensor("output.weight").unwrap();
    assert!(matches!(
        g.tensor_data(&file[..t.offset as usize + 10], "output.weight"),
        Err(Error::TensorOutOfBounds { name, .. }) if name == "output.weight"
    ));

    let mut w = GgufWriter::new();
    w.add_kv("big", Value::U64(1 << 40));
    w.add_kv("neg", Value::I32(-1));
    w.add_kv("ok", Value::I8(7));
    w.add_kv("f", Value::F64(0.25));
    w.add_kv("ints", Value::Array(vec![Value::U32(1), Value::U32(u32::MAX)]));
    w.add_kv("i64s", Value::Array(vec![Value::I64(-5), Value::I64(6)]));
    let g = parse(&w.to_bytes().unwrap()).unwrap();
    assert_eq!(g.get_u64("big").unwrap(), 1 << 40);
    assert!(matches!(g.get_u32("big"), Err(Error::Invalid { .. })));
    assert!(matches!(g.get_u64("neg"), Err(Error::Invalid { .. })));
    assert_eq!(g.get_u32("ok").unwrap(), 7);
    assert_eq!(g.get_f32("f").unwrap(), 0.25);
    assert!(matches!(g.get_i32_array("ints"), Err(Error::Invalid { .. })));
    assert_eq!(g.get_i32_array("i64s").unwrap(), [-5, 6]);
    assert!(matches!(g.architecture(), Err(Error::MissingKey(k)) if k == "general.architecture"));
}

// ---------------------------------------------------------------------------
// Writer

fn sample_values() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(60000)),
        ("i16", Value::I16(-30000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(-1.5e-7)),
        ("t", Value::Bool(true)),
        ("f", Value::Bool(false)),
        ("empty", Value::String(String::new())),
        ("unicode", Value::String("héllo ▁世界 🦀".into())),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(std::f64::consts::PI)),
        ("strs", Value::Array(vec![Value::String("a".into()), Value::String("".into())])),
        ("bools", Value::Array(vec![Value::Bool(true), Value::Bool(false)])),
        ("empty_u8s", Value::Array(vec![])),
        (
            "nested",
            Value::Array(vec![
                Value::Array(vec![Value::I16(1), Value::I16(-2)]),
                Value::Array(vec![Value::String("x".into())]),
            ]),
        ),
    ]
}

#[test]
fn writer_round_trip() {
    let mut w = GgufWriter::new();
    for (k, v) in sample_values() {
        w.add_kv(k, v);
    }
    let f32_data: Vec<u8> = (0..24).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    let tensors: Vec<(&str, Vec<u64>, GgmlType, Vec<u8>)> = vec![
        ("a", vec![4, 3, 2], GgmlType::F32, f32_data),
        ("b", vec![64, 2], GgmlType::Q8_0, (0..136).map(|i| i as u8).collect()),
        ("c", vec![256], GgmlType::Q4_K, vec![7; 144]),
        ("d", vec![3], GgmlType::F16, vec![1, 2, 3, 4, 5, 6]),
        ("e", vec![1, 1, 1, 5], GgmlType::I32, vec![9; 20]),
        ("z", vec![0], GgmlType::F32, vec![]),
    ];
    for (n, d, t, data) in &tensors {
        w.add_tensor(n, d, *t, data.clone()).unwrap();
    }
    let bytes = w.to_bytes().unwrap();
    let g = parse(&bytes).unwrap();
    assert_eq!(g.version, 3);
    let expect: Vec<(String, Value)> = sample_values().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(g.metadata, expect);
    assert_eq!(g.tensors.len(), tensors.len());
    for ((n, d, t, data), info) in tensors.iter().zip(&g.tensors) {
        assert_eq!((info.name.as_str(), &info.dims, info.ty), (*n, d, *t));
        assert_eq!(info.offset % 32, 0);
        assert_eq!(g.tensor_data(&bytes, n).unwrap(), &data[..]);
    }
    assert_eq!(bytes.len() % 32, 0);

    // Streaming gives the same bytes, and sink errors propagate.
    let mut streamed = Vec::new();
    let mut calls = 0;
    w.write(&mut |b: &[u8]| {
        calls += 1;
        streamed.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(streamed, bytes);
    assert!(calls >= 1);
    let err = w.write(&mut |_: &[u8]| Err(Error::Io("disk full".into())));
    assert_eq!(err, Err(Error::Io("disk full".into())));
}

#[test]
fn writer_matches_hand_encoded_layout() {
    let mut w = GgufWriter::new();
    w.add_kv("k", Value::U32(5));
    w.add_kv("s", Value::Array(vec![Value::String("ab".into())]));
    w.add_kv("k", Value::U16(9)); // replaces in place
    w.add_tensor("t", &[2], GgmlType::F32, vec![1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let mut r = Raw::header(3, 1, 2);
    r.str("k").u32(2).bytes(&9u16.to_le_bytes());
    r.str("s").u32(9).u32(8).u64(1).str("ab");
    r.str("t").u32(1).u64(2).u32(0).u64(0);
    r.pad(32).bytes(&[1, 2, 3, 4, 5, 6, 7, 8]).pad(32);
    assert_eq!(w.to_bytes().unwrap(), r.0);
}

#[test]
fn writer_alignment() {
    let mut w = GgufWriter::new();
    w.add_kv("a", Value::U8(1));
    w.set_alignment(64);
    w.add_tensor("x", &[3], GgmlType::F32, vec![1; 12]).unwrap();
    w.add_tensor("y", &[5], GgmlType::I8, vec![2; 5]).unwrap();
    let b = w.to_bytes().unwrap();
    let g = parse(&b).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.get_u32("general.alignment").unwrap(), 64);
    assert_eq!(g.metadata[1].0, "general.alignment");
    assert_eq!(g.data_offset % 64, 0);
    assert_eq!(g.tensor("y").unwrap().offset, g.data_offset + 64);
    assert_eq!(g.tensor_data(&b, "y").unwrap(), [2; 5]);
    assert_eq!(b.len() % 64, 0);

    // The default alignment writes no key.
    let mut w = GgufWriter::new();
    w.set_alignment(32);
    assert!(parse(&w.to_bytes().unwrap()).unwrap().get("general.alignment").is_none());

    for bad in [0, 48, 1 << 33] {
        let mut w = GgufWriter::new();
        w.set_alignment(bad);
        assert!(matches!(w.to_bytes(), Err(Error::Invalid { .. })), "{bad}");
    }
    let mut w = GgufWriter::new();
    w.add_kv("general.alignment", Value::U64(64));
    assert!(matches!(w.to_bytes(), Err(Error::WrongKeyType { .. })));
}

#[test]
fn writer_rejects_bad_tensors_and_values() {
    let mut w = GgufWriter::new();
    w.add_tensor("x", &[4], GgmlType::F32, vec![0; 16]).unwrap();
    assert!(matches!(w.add_tensor("x", &[4], GgmlType::F32, vec![0; 16]), Err(Error::Invalid { .. })));
    assert!(matches!(w.add_tensor("y", &[4], GgmlType::F32, vec![0; 15]), Err(Error::Invalid { .. })));
    assert!(matches!(w.add_tensor("y", &[], GgmlType::F32, vec![0; 4]), Err(Error::Invalid { .. })));
    assert!(matches!(w.add_tensor("y", &[1; 5], GgmlType::F32, vec![0; 4]), Err(Error::Invalid { .. })));
    assert!(matches!(w.add_tensor("y", &[31], GgmlType::Q8_0, vec![0; 34]), Err(Error::Invalid { .. })));
    assert!(matches!(w.add_tensor("y", &[u64::MAX, 2], GgmlType::F32, vec![]), Err(Error::Overflow { .. })));
    w.add_tensor("y", &[64], GgmlType::Q8_0, vec![0; 68]).unwrap();

    let mut w = GgufWriter::new();
    w.add_kv("mixed", Value::Array(vec![Value::U8(1), Value::I8(1)]));
    assert!(matches!(w.to_bytes(), Err(Error::Invalid { .. })));
    let mut w = GgufWriter::new();
    w.add_kv("", Value::U8(1));
    assert!(matches!(w.to_bytes(), Err(Error::Invalid { .. })));
    let mut w = GgufWriter::new();
    w.add_kv("deep", nested(9));
    assert!(matches!(w.to_bytes(), Err(Error::Invalid { .. })));
    let mut w = GgufWriter::new();
    w.add_kv("deep", nested(8));
    assert_eq!(parse(&w.to_bytes().unwrap()).unwrap().get("deep"), Some(&nested(8)));
}

fn nested(levels: usize) -> Value {
    (0..levels).fold(Value::U8(1), |v, _| Value::Array(vec![v]))
}

/// Re-writing the real files through the writer: llama.cpp uses the same layout.
#[test]
fn rewrite_real_files() {
    for path in [testdata!("stories260K-gguf/stories260K.gguf"), testdata!("stories260K-gguf/stories260K-F16.gguf")] {
        let file = read(path);
        let g = parse(&file).unwrap();
        let out = GgufWriter::from_gguf(&g, &file).unwrap().to_bytes().unwrap();
        let g2 = parse(&out).unwrap();
        assert_eq!(g2.metadata, g.metadata);
        assert_eq!(g2.tensors, g.tensors);
        assert_eq!(g2.data_offset, g.data_offset);
        assert!(out == file, "{path}: not byte-identical");
    }
    // The vocab-only files were written by gguf-py, which does not pad the
    // end of a file without tensors; otherwise the bytes are identical.
    for path in
        [testdata!("llamacpp-vocab/ggml-vocab-llama-spm.gguf"), testdata!("llamacpp-vocab/ggml-vocab-gpt-2.gguf")]
    {
        let file = read(path);
        let g = parse(&file).unwrap();
        let out = GgufWriter::from_gguf(&g, &file).unwrap().to_bytes().unwrap();
        assert_eq!(out.len(), file.len().next_multiple_of(32));
        assert!(out[..file.len()] == file[..], "{path}");
        assert!(out[file.len()..].iter().all(|&b| b == 0));
        assert_eq!(parse(&out).unwrap().metadata, g.metadata);
    }
}

// ---------------------------------------------------------------------------
// Hostile input

/// Hand-encodes GGUF bytes, independently of the writer.
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    fn pad(&mut self, a: usize) -> &mut Self {
        self.0.resize(self.0.len().next_multiple_of(a), 0);
        self
    }
    /// A tensor info: name, dims, type, relative offset.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, off: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        dims.iter().for_each(|&d| {
            self.u64(d);
        });
        self.u32(ty).u64(off)
    }
}

/// A small valid file with one kv of each kind and two tensors; returns the
/// bytes and the length of the header (up to the end of the tensor infos).
fn small_file() -> (Vec<u8>, usize) {
    let mut r = Raw::header(3, 2, 4);
    r.str("general.architecture").u32(8).str("llama");
    r.str("n").u32(4).u32(7);
    r.str("b").u32(7).bytes(&[1]);
    r.str("arr").u32(9).u32(8).u64(2).str("x").str("yz");
    r.tensor("w", &[4, 2], 0, 0);
    r.tensor("q", &[32], 8, 32);
    let header = r.0.len();
    r.pad(32).bytes(&[0x11; 32]).bytes(&[0x22; 34]).pad(32);
    (r.0, header)
}

#[test]
fn small_file_parses() {
    let (b, header) = small_file();
    let g = parse(&b).unwrap();
    assert_eq!(g.data_offset as usize, header.next_multiple_of(32));
    assert_eq!(g.get_u32("n").unwrap(), 7);
    assert!(g.get_bool("b").unwrap());
    assert_eq!(g.get_str_array("arr").unwrap(), ["x", "yz"]);
    assert_eq!(g.tensor_data(&b, "w").unwrap(), [0x11; 32]);
    assert_eq!(g.tensor_data(&b, "q").unwrap(), [0x22; 34]);
    assert_eq!(g.tensor("q").unwrap().ty, GgmlType::Q8_0);
    // Version 2 has the same layout.
    let mut v2 = b.clone();
    v2[4] = 2;
    assert_eq!(parse(&v2).unwrap().version, 2);
}

#[test]
fn empty_and_truncated() {
    assert_eq!(parse(&[]).err(), Some(Error::truncated("GGUF magic", 0, 4, 0)));
    let (b, header) = small_file();
    // The last tensor ends at 256 + 34 bytes; only the final padding may be cut.
    let data_end = 256 + 34;
    assert_eq!(parse(&b).unwrap().tensor("q").unwrap().offset + 34, data_end as u64);
    for n in 0..b.len() {
        match parse(&b[..n]) {
            Err(Error::Truncated { offset, need, .. }) => {
                assert!(n < header, "prefix {n}");
                assert!(offset.saturating_add(need) > n as u64, "prefix {n}");
            }
            Err(Error::TensorOutOfBounds { .. }) => {
                assert!((header..data_end).contains(&n), "prefix {n}")
            }
            Ok(_) => assert!(n >= data_end, "prefix {n}"),
            other => panic!("prefix {n}: {other:?}"),
        }
    }
}

#[test]
fn prefix_protocol_rereads_until_ok() {
    let (b, header) = small_file();
    let file_len = b.len() as u64;
    for n in 0..b.len() {
        match Gguf::parse(&b[..n], file_len) {
            Ok(g) => {
                assert!(n >= header);
                assert_eq!(g.tensors.len(), 2);
            }
            Err(Error::Truncated { offset, need, .. }) => {
                assert!(n < header);
                let want = offset + need;
                assert!(want > n as u64 && want <= file_len, "prefix {n}: {want}");
            }
            Err(e) => panic!("prefix {n}: {e:?}"),
        }
    }
    // A caller loop: start with nothing and read what is asked for.
    let real = read(testdata!("stories260K-gguf/stories260K.gguf"));
    let (mut have, mut rounds) = (0usize, 0);
    let g = loop {
        rounds += 1;
        match Gguf::parse(&real[..have], real.len() as u64) {
            Ok(g) => break g,
            Err(Error::Truncated { offset, need, .. }) => have = (offset + need).max(have as u64 * 2) as usize,
            Err(e) => panic!("{e:?}"),
        }
        have = have.min(real.len());
    };
    assert!(have < real.len(), "needed only the header, read {have}");
    assert_eq!(g.tensors.len(), 48);
    assert!(rounds < 40);
}

#[test]
fn bad_magic_and_versions() {
    let (mut b, _) = small_file();
    b[0] = b'X';
    assert_eq!(parse(&b).err(), Some(Error::BadMagic { format: "GGUF", found: u32::from_le_bytes(*b"XGUF") }));
    for v in [0, 1, 4, 99] {
        let (mut b, _) = small_file();
        b[4..8].copy_from_slice(&u32::to_le_bytes(v));
        assert_eq!(parse(&b).err(), Some(Error::UnsupportedVersion { format: "GGUF", version: v }));
    }
}

fn assert_absurd(b: &[u8]) {
    match parse(b) {
        Err(Error::Truncated { offset, need, .. }) => {
            assert!(offset.saturating_add(need) > b.len() as u64, "re-reading must not help")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn absurd_counts_and_lengths() {
    for count in [u64::MAX, u64::MAX / 13 + 1, 1 << 40] {
        assert_absurd(&Raw::header(3, count, 0).0);
        assert_absurd(&Raw::header(3, 0, count).0);
        // key length
        let mut r = Raw::header(3, 0, 1);
        r.u64(count).bytes(b"abc");
        assert_absurd(&r.0);
        // string value length
        let mut r = Raw::header(3, 0, 1);
        r.str("k").u32(8).u64(count).bytes(b"abc");
        assert_absurd(&r.0);
        // array count, for several element types
        for elem in [0, 8, 9, 12] {
            let mut r = Raw::header(3, 0, 1);
            r.str("k").u32(9).u32(elem).u64(count).bytes(&[0; 16]);
            assert_absurd(&r.0);
        }
        // tensor name length
        let mut r = Raw::header(3, 1, 0);
        r.u64(count).bytes(&[b'a'; 40]);
        assert_absurd(&r.0);
    }
}

fn invalid_mentioning(r: engine::Result<Gguf>, needle: &str) {
    match r {
        Err(e @ Error::Invalid { .. }) => assert!(e.to_string().contains(needle), "{e}"),
        other => panic!("expected Invalid mentioning {needle:?}, got {other:?}"),
    }
}

/// One tensor "t" after a header with no metadata, padded, with 64 data bytes.
fn one_tensor(dims: &[u64], ty: u32, off: u64) -> Vec<u8> {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", dims, ty, off).pad(32).bytes(&[0; 64]);
    r.0
}

#[test]
fn hostile_tensor_infos() {
    assert!(parse(&one_tensor(&[16], 0, 0)).is_ok());
    assert!(parse(&one_tensor(&[16], 0, 32)).is_err());
    match parse(&one_tensor(&[16], 0, 64)) {
        Err(Error::TensorOutOfBounds { name, size: 64, .. }) => assert_eq!(name, "t"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&one_tensor(&[16], 0, u64::MAX - 31)), Err(Error::TensorOutOfBounds { .. })));
    invalid_mentioning(parse(&one_tensor(&[4], 0, 4)), "not a multiple of the alignment");
    for dims in [&[1u64 << 32, 1 << 32, 2][..], &[u64::MAX, 2], &[1 << 62]] {
        match parse(&one_tensor(dims, 0, 0)) {
            Err(e @ Error::Overflow { .. }) => assert!(e.to_string().contains("'t'"), "{e}"),
            other => panic!("{dims:?}: {other:?}"),
        }
    }
    invalid_mentioning(parse(&one_tensor(&[1; 5], 0, 0)), "5 dimensions");
    invalid_mentioning(parse(&one_tensor(&[], 0, 0)), "0 dimensions");
    invalid_mentioning(parse(&one_tensor(&[31], 8, 0)), "not a multiple of the Q8_0 block size");
    for ty in [4, 5, 31, 36, 40, 99, u32::MAX] {
        assert!(
            matches!(parse(&one_tensor(&[4], ty, 0)), Err(Error::UnsupportedTensorType { ref name, .. }) if name == "t"),
            "type {ty}"
        );
    }
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t", &[4], 0, 0).tensor("t", &[4], 0, 32).pad(32).bytes(&[0; 64]);
    invalid_mentioning(parse(&r.0), "twice");
    let mut r = Raw::header(3, 1, 0);
    r.u64(2).bytes(&[0xff, 0xfe]).u32(1).u64(4).u32(0).u64(0).pad(32).bytes(&[0; 16]);
    invalid_mentioning(parse(&r.0), "UTF-8");
}

#[test]
fn hostile_metadata() {
    fn kv(f: impl FnOnce(&mut Raw) -> &mut Raw) -> engine::Result<Gguf> {
        let mut r = Raw::header(3, 0, 1);
        f(&mut r);
        parse(&r.0)
    }
    invalid_mentioning(kv(|r| r.str("k").u32(13).u32(0)), "unknown value type 13");
    invalid_mentioning(kv(|r| r.str("k").u32(9).u32(77).u64(0)), "unknown value type 77");
    invalid_mentioning(kv(|r| r.u64(3).bytes(&[b'a', 0xc3, 0x28]).u32(0).bytes(&[0])), "UTF-8");
    invalid_mentioning(kv(|r| r.str("key").u32(8).u64(1).bytes(&[0x80])), "'key'");
    invalid_mentioning(kv(|r| r.str("k").u32(7).bytes(&[2])), "not 0 or 1");
    invalid_mentioning(kv(|r| r.str("").u32(0).bytes(&[0])), "empty");
    let mut r = Raw::header(3, 0, 2);
    r.str("k").u32(0).bytes(&[1]).str("k").u32(0).bytes(&[2]);
    invalid_mentioning(parse(&r.0), "twice");
    // Alignment must be a u32 power of two.
    for a in [0u32, 48] {
        invalid_mentioning(kv(|r| r.str("general.alignment").u32(4).u32(a)), "power of two");
    }
    assert!(matches!(kv(|r| r.str("general.alignment").u32(10).u64(32)), Err(Error::WrongKeyType { .. })));
    // Nesting depth: 8 levels are accepted, 9 are not (and no stack overflow
    // from a file that nests an array in itself many times).
    let deep = |levels: usize| {
        let mut r = Raw::header(3, 0, 1);
        r.str("d").u32(9);
        for _ in 0..levels - 1 {
            r.u32(9).u64(1);
        }
        r.u32(0).u64(1).bytes(&[5]);
        parse(&r.0)
    };
    assert!(deep(8).is_ok());
    invalid_mentioning(deep(9), "nested");
    invalid_mentioning(deep(10_000), "nested");
    // A prefix longer than the claimed file.
    invalid_mentioning(Gguf::parse(&[0; 8], 4), "file length");
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses a mutated file; whatever comes back, using it must not panic.
fn parse_and_use(b: &[u8], file_len: u64) -> bool {
    let Ok(g) = Gguf::parse(b, file_len) else {
        return false;
    };
    for (k, _) in &g.metadata {
        let _ = (g.get_u64(k), g.get_u32(k), g.get_f32(k), g.get_str(k), g.get_bool(k));
        let _ = (g.get_str_array(k), g.get_f32_array(k), g.get_i32_array(k));
    }
    for t in &g.tensors {
        assert!(t.offset.checked_add(t.size).unwrap() <= file_len);
        if b.len() as u64 == file_len {
            assert_eq!(g.tensor_data(b, &t.name).unwrap().len() as u64, t.size);
        }
    }
    true
}

#[test]
fn fuzz_small_file() {
    let (orig, _) = small_file();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for i in 0..5000 {
        let mut b = orig.clone();
        for _ in 0..1 + rng.below(4) {
            let p = rng.below(b.len());
            match rng.below(4) {
                0 => b[p] ^= 1 << rng.below(8),
                1 => b[p] = rng.next() as u8,
                2 => b[p] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
                _ => {
                    let v = [u64::MAX, 0, 1 << 32, 5, 64].map(u64::to_le_bytes)[rng.below(5)];
                    let end = (p + 8).min(b.len());
                    b[p..end].copy_from_slice(&v[..end - p]);
                }
            }
        }
        if i % 7 == 0 {
            b.truncate(rng.below(b.len() + 1));
        }
        ok += parse_and_use(&b, b.len() as u64) as usize;
    }
    assert!(ok > 0 && ok < 5000, "{ok}");
}

#[test]
fn fuzz_real_header() {
    let file = read(testdata!("stories260K-gguf/stories260K.gguf"));
    let g = parse(&file).unwrap();
    let header = &file[..g.data_offset as usize];
    let mut rng = XorShift(12345);
    let mut ok = 0;
    for _ in 0..2000 {
        let mut b = header.to_vec();
        for _ in 0..1 + rng.below(3) {
            let p = rng.below(b.len());
            b[p] = rng.next() as u8;
        }
        ok += parse_and_use(&b, file.len() as u64) as usize;
    }
    assert!(ok > 0, "{ok}");
}

#[test]
fn a_streamed_header_plus_data_equals_the_writer() {
    use engine::gguf::{write_header, TensorEntry};
    let kvs = vec![
        ("general.architecture".to_string(), Value::String("llama".into())),
        ("a.list".to_string(), Value::Array(vec![Value::U32(1), Value::U32(2)])),
    ];
    let tensors: Vec<(&str, Vec<u64>, GgmlType, Vec<u8>)> = vec![
        ("t0", vec![3, 2], GgmlType::F32, (0..24).collect()),
        ("t1", vec![32], GgmlType::Q8_0, vec![7; 34]),
        ("t2", vec![5], GgmlType::F32, vec![9; 20]),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &kvs {
        w.add_kv(k, v.clone());
    }
    for (n, d, t, data) in &tensors {
        w.add_tensor(n, d, *t, data.clone()).unwrap();
    }
    let whole = w.to_bytes().unwrap();
    let entries: Vec<TensorEntry<'_>> = tensors
        .iter()
        .map(|(n, d, t, data)| TensorEntry { name: n, dims: d, ty: *t, size: data.len() as u64 })
        .collect();
    let mut streamed = Vec::new();
    let n = write_header(&kvs, &entries, 32, &mut |b: &[u8]| {
        streamed.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(n as usize, streamed.len());
    assert_eq!(streamed.len() % 32, 0);
    for (_, _, _, data) in &tensors {
        streamed.extend_from_slice(data);
        streamed.resize(streamed.len().next_multiple_of(32), 0);
    }
    assert_eq!(streamed, whole);
    // Bad alignments and mixed arrays are refused.
    assert!(write_header(&kvs, &entries, 24, &mut |_| Ok(())).is_err());
    let mixed = vec![("k".to_string(), Value::Array(vec![Value::U32(1), Value::F32(2.0)]))];
    assert!(write_header(&mixed, &entries, 32, &mut |_| Ok(())).is_err());
}
