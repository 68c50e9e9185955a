//! `lbm convert` against the reference checkpoints in golden/ (testdata crate)
//! (written by Hugging Face transformers) and the reference vocabularies in
//! testdata/ (written by llama.cpp).
//!
//! The expectations here are stated independently of the converter: the
//! safetensors files are read by a small parser in this file, the GGUF
//! output by the engine's reader, the tensor names and transformations are
//! spelled out per architecture below, and F16 rounding is checked with the
//! `half` crate.

use convert::{convert, ConvertOptions, OutType};
use engine::gguf::{GgmlType, Gguf, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- helpers

/// A tensor read from a safetensors file by this file's own parser.
#[derive(Clone)]
struct StTensor {
    dtype: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl StTensor {
    fn f32s(&self) -> Vec<f32> {
        match self.dtype.as_str() {
            "F32" => self.bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            "F16" => self
                .bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            "BF16" => self
                .bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            d => panic!("test parser: dtype {d}"),
        }
    }
}

fn read_st(path: &Path) -> BTreeMap<String, StTensor> {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: Json = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let data = &b[8 + n..];
    let mut out = BTreeMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let off = info["data_offsets"].as_array().unwrap();
        let (s, e) = (off[0].as_u64().unwrap() as usize, off[1].as_u64().unwrap() as usize);
        out.insert(
            name.clone(),
            StTensor {
                dtype: info["dtype"].as_str().unwrap().to_string(),
                shape: info["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect(),
                bytes: data[s..e].to_vec(),
            },
        );
    }
    out
}

/// Writes a safetensors file (header padded to 8 bytes, as the format asks).
fn write_st(path: &Path, tensors: &BTreeMap<String, StTensor>) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, t) in tensors {
        let s = data.len();
        data.extend_from_slice(&t.bytes);
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [s, data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&Json::Object(header)).unwrap();
    while h.len() & 7 != 0 {
        h.push(b' ');
    }
    let mut f = (h.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(&h);
    f.extend_from_slice(&data);
    std::fs::write(path, f).unwrap();
}

fn f32_tensor(shape: &[usize], vals: &[f32]) -> StTensor {
    assert_eq!(shape.iter().product::<usize>(), vals.len());
    StTensor { dtype: "F32".into(), shape: shape.to_vec(), bytes: vals.iter().flat_map(|v| v.to_le_bytes()).collect() }
}

/// Deterministic pseudo-random values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn config(dir: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

/// Copies a golden model folder into a fresh temp dir named `name`.
fn copy_model(src: &Path, name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

fn run(input: &Path, out: &Path, ty: OutType) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    convert(&ConvertOptions { input: input.into(), output: out.into(), ty }, &mut |l| lines.push(l.to_string()))?;
    Ok(lines)
}

fn convert_err(input: &Path) -> String {
    let out = input.parent().unwrap().join("out.gguf");
    let e = run(input, &out, OutType::F32).expect_err("conversion should fail");
    assert!(!out.exists(), "a failed conversion left {} behind", out.display());
    // No temporary file either (they are named .out.gguf.*.partial).
    let left: Vec<String> = std::fs::read_dir(input.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out.gguf"))
        .collect();
    assert!(left.is_empty(), "a failed conversion left {left:?} behind");
    format!("{e:#}")
}

struct Converted {
    bytes: Vec<u8>,
    g: Gguf,
}

impl Converted {
    fn load(path: &Path) -> Converted {
        let bytes = std::fs::read(path).unwrap();
        let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        Converted { bytes, g }
    }

    fn u32(&self, k: &str) -> u32 {
        match self.g.get(k) {
            Some(Value::U32(v)) => *v,
            other => panic!("{k}: expected a u32, found {other:?}"),
        }
    }

    fn f32(&self, k: &str) -> f32 {
        match self.g.get(k) {
            Some(Value::F32(v)) => *v,
            other => panic!("{k}: expected an f32, found {other:?}"),
        }
    }

    fn str(&self, k: &str) -> &str {
        match self.g.get(k) {
            Some(Value::String(v)) => v,
            other => panic!("{k}: expected a string, found {other:?}"),
        }
    }

    /// (dims, type, raw bytes) of a tensor.
    fn tensor(&self, name: &str) -> (Vec<u64>, GgmlType, &[u8]) {
        let t = self.g.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        (t.dims.clone(), t.ty, self.g.tensor_data(&self.bytes, name).unwrap())
    }
}

// ------------------------------------------------------ expected mapping

/// The GGUF name a golden checkpoint tensor must have.
fn expected_name(folder: &str, hf: &str) -> String {
    let (suffix, base) = if let Some(b) = hf.strip_suffix(".weight") {
        ("weight", b)
    } else {
        ("bias", hf.strip_suffix(".bias").unwrap())
    };
    let arch_rows: &[(&str, &str)] = match folder {
        "gpt2" => &[
            ("transformer.wte", "token_embd"),
            ("transformer.wpe", "position_embd"),
            ("transformer.ln_f", "output_norm"),
            ("ln_1", "attn_norm"),
            ("attn.c_attn", "attn_qkv"),
            ("attn.c_proj", "attn_output"),
            ("ln_2", "ffn_norm"),
            ("mlp.c_fc", "ffn_up"),
            ("mlp.c_proj", "ffn_down"),
        ],
        "phi" => &[
            ("model.embed_tokens", "token_embd"),
            ("model.final_layernorm", "output_norm"),
            ("lm_head", "output"),
            ("input_layernorm", "attn_norm"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.dense", "attn_output"),
            ("mlp.fc1", "ffn_up"),
            ("mlp.fc2", "ffn_down"),
        ],
        _ => &[
            ("model.embed_tokens", "token_embd"),
            ("model.norm", "output_norm"),
            ("lm_head", "output"),
            ("input_layernorm", "attn_norm"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("post_attention_layernorm", "ffn_norm"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
        ],
    };
    let block_prefix = if folder == "gpt2" { "transformer.h." } else { "model.layers." };
    if let Some(rest) = base.strip_prefix(block_prefix) {
        let (n, sub) = rest.split_once('.').unwrap();
        let g = arch_rows.iter().find(|r| r.0 == sub).unwrap_or_else(|| panic!("no row for {hf}")).1;
        return format!("blk.{n}.{g}.{suffix}");
    }
    let g = arch_rows.iter().find(|r| r.0 == base).unwrap_or_else(|| panic!("no row for {hf}")).1;
    format!("{g}.{suffix}")
}

/// The GGUF row `r` of a permuted Q/K matrix comes from this Hugging Face row.
fn unpermuted_row(r: usize, head_dim: usize) -> usize {
    let (h, within) = (r / head_dim, r % head_dim);
    let (i, j) = (within / 2, within % 2);
    h * head_dim + j * (head_dim / 2) + i
}

fn gguf_f32s(ty: GgmlType, b: &[u8]) -> Vec<f32> {
    match ty {
        GgmlType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        GgmlType::F16 => {
            b.chunks_exact(2).map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
        }
        t => panic!("unexpected type {t:?}"),
    }
}

fn num(c: &Json, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| {
        let mut v = c;
        for p in k.split('.') {
            v = v.get(p)?;
        }
        v.as_f64()
    })
}

// ------------------------------------------------------ the golden tests

const FOLDERS: &[(&str, &str)] = &[
    ("llama-gqa", "llama"),
    ("llama-mha-tied", "llama"),
    ("mistral", "llama"),
    ("gpt2", "gpt2"),
    ("qwen2", "qwen2"),
    ("gemma", "gemma"),
    ("phi", "phi2"),
];

fn check_golden(folder: &str, arch: &str, ty: OutType) {
    let src = testdata::path("golden").join(folder);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(format!("{folder}.gguf"));
    run(&src, &out, ty).unwrap_or_else(|e| panic!("{folder}: {e:#}"));
    let c = Converted::load(&out);
    let cfg = config(&src);
    let st = read_st(&src.join("model.safetensors"));

    // --- metadata
    assert_eq!(c.str("general.architecture"), arch);
    assert_eq!(c.str("general.name"), folder);
    assert_eq!(c.u32("general.file_type"), if ty == OutType::F16 { 1 } else { 0 });
    let u = |keys: &[&str]| num(&cfg, keys).map(|v| v as u32);
    let n_embd = u(&["hidden_size", "n_embd"]).unwrap();
    let n_head = u(&["num_attention_heads", "n_head"]).unwrap();
    let n_kv = u(&["num_key_value_heads"]).unwrap_or(n_head);
    let head_dim = u(&["head_dim"]).unwrap_or(n_embd / n_head);
    assert_eq!(c.u32(&format!("{arch}.embedding_length")), n_embd);
    assert_eq!(c.u32(&format!("{arch}.block_count")), u(&["num_hidden_layers", "n_layer"]).unwrap());
    assert_eq!(c.u32(&format!("{arch}.context_length")), u(&["max_position_embeddings", "n_positions"]).unwrap());
    assert_eq!(
        c.u32(&format!("{arch}.feed_forward_length")),
        u(&["intermediate_size", "n_inner"]).unwrap_or(4 * n_embd)
    );
    assert_eq!(c.u32(&format!("{arch}.attention.head_count")), n_head);
    assert_eq!(c.u32(&format!("{arch}.attention.head_count_kv")), n_kv);
    assert_eq!(c.u32(&format!("{arch}.vocab_size")), u(&["vocab_size"]).unwrap());
    if let Some(eps) = num(&cfg, &["rms_norm_eps"]) {
        assert_eq!(c.f32(&format!("{arch}.attention.layer_norm_rms_epsilon")), eps as f32);
        assert!(c.g.get(&format!("{arch}.attention.layer_norm_epsilon")).is_none());
    } else {
        let eps = num(&cfg, &["layer_norm_eps", "layer_norm_epsilon"]).unwrap();
        assert_eq!(c.f32(&format!("{arch}.attention.layer_norm_epsilon")), eps as f32);
    }
    if arch == "gpt2" {
        assert!(c.g.get("gpt2.rope.freq_base").is_none());
        assert!(c.g.get("gpt2.rope.dimension_count").is_none());
    } else {
        let theta = num(&cfg, &["rope_theta", "rope_parameters.rope_theta"]).unwrap();
        assert_eq!(c.f32(&format!("{arch}.rope.freq_base")), theta as f32);
        let rot = num(&cfg, &["partial_rotary_factor", "rope_parameters.partial_rotary_factor"]).unwrap_or(1.0);
        assert_eq!(c.u32(&format!("{arch}.rope.dimension_count")), (head_dim as f64 * rot) as u32);
    }
    if cfg.get("head_dim").is_some_and(|h| !h.is_null()) {
        assert_eq!(c.u32(&format!("{arch}.attention.key_length")), head_dim);
        assert_eq!(c.u32(&format!("{arch}.attention.value_length")), head_dim);
    } else {
        assert!(c.g.get(&format!("{arch}.attention.key_length")).is_none());
    }
    match cfg.get("sliding_window").and_then(|s| s.as_u64()) {
        Some(w) if folder == "mistral" => {
            assert_eq!(c.u32("llama.attention.sliding_window") as u64, w)
        }
        _ => assert!(c.g.get(&format!("{arch}.attention.sliding_window")).is_none()),
    }
    // The golden folders ship no tokenizer: no tokenizer keys at all.
    assert!(
        c.g.metadata.iter().all(|(k, _)| !k.starts_with("tokenizer.")),
        "{folder}: tokenizer keys without a tokenizer"
    );

    // --- tensors: every checkpoint tensor is in the output, transformed as
    // the architecture requires, and nothing else is.
    let mut expected_names: Vec<String> = Vec::new();
    for (hf, t) in &st {
        let name = expected_name(folder, hf);
        if folder == "gemma" && name == "output.weight" {
            continue;
        }
        expected_names.push(name.clone());
        let (dims, gty, bytes) = c.tensor(&name);
        let src = t.f32s();
        let conv1d = folder == "gpt2" && t.shape.len() == 2 && name.starts_with("blk.");
        // dims are GGUF ne order: [row length, rows].
        let (rows, cols) = match t.shape.as_slice() {
            [n] => (*n, 1),
            [a, b] if conv1d => (*b, *a),
            [a, b] => (*a, *b),
            s => panic!("{hf}: shape {s:?}"),
        };
        let want_dims: Vec<u64> = if t.shape.len() == 1 { vec![rows as u64] } else { vec![cols as u64, rows as u64] };
        assert_eq!(dims, want_dims, "{name} dims");
        let one_d = t.shape.len() == 1;
        let keep_f32 = one_d || name.ends_with("_norm.weight") || name == "position_embd.weight";
        let want_ty = if ty == OutType::F16 && !keep_f32 { GgmlType::F16 } else { GgmlType::F32 };
        assert_eq!(gty, want_ty, "{name} type");

        let permuted_heads = if arch == "llama" && name.ends_with("attn_q.weight") {
            Some(n_head)
        } else if arch == "llama" && name.ends_with("attn_k.weight") {
            Some(n_kv)
        } else {
            None
        };
        if let Some(h) = permuted_heads {
            assert_eq!(rows as u32, h * head_dim);
        }
        let got = match gty {
            GgmlType::F16 => {
                bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect::<Vec<u32>>()
            }
            _ => bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect(),
        };
        assert_eq!(got.len(), rows * cols);
        for r in 0..rows {
            for k in 0..cols {
                // Where the GGUF element (r, k) comes from in the checkpoint.
                let v = if conv1d {
                    src[k * rows + r] // Conv1D [in, out]: element [o][i] is stored at [i][o]
                } else if permuted_heads.is_some() {
                    src[unpermuted_row(r, head_dim as usize) * cols + k]
                } else {
                    src[r * cols + k]
                };
                // Gemma's RMSNorm scales by (1 + w): stored as 1 + w.
                let v = if folder == "gemma" && name.ends_with("norm.weight") { v + 1.0 } else { v };
                let want = match gty {
                    GgmlType::F16 => half::f16::from_f32(v).to_bits() as u32,
                    _ => v.to_bits(),
                };
                assert_eq!(got[r * cols + k], want, "{folder} {name} [{r}][{k}] (from {hf})");
            }
        }
    }
    // Tied heads: no output.weight, except GPT-2, whose llama.cpp loader
    // requires one (llama.cpp's converter writes a copy of wte).
    let has_output = c.g.tensor("output.weight").is_ok();
    match folder {
        "gpt2" => {
            assert!(has_output);
            let (d1, t1, b1) = c.tensor("output.weight");
            let (d2, t2, b2) = c.tensor("token_embd.weight");
            assert_eq!((d1, t1, b1), (d2, t2, b2));
            expected_names.push("output.weight".into());
        }
        "llama-mha-tied" | "gemma" => {
            assert!(!has_output, "{folder} is tied but has output.weight")
        }
        _ => assert!(has_output, "{folder} has an lm_head but no output.weight"),
    }
    expected_names.sort();
    let mut names: Vec<String> = c.g.tensors.iter().map(|t| t.name.clone()).collect();
    names.sort();
    assert_eq!(names, expected_names, "{folder}: tensor set");
}

#[test]
fn golden_models_convert_to_f32() {
    for (folder, arch) in FOLDERS {
        check_golden(folder, arch, OutType::F32);
    }
}

#[test]
fn golden_models_convert_to_f16() {
    for (folder, arch) in FOLDERS {
        check_golden(folder, arch, OutType::F16);
    }
}

#[test]
fn every_golden_folder_is_covered() {
    let mut on_disk: Vec<String> = std::fs::read_dir(testdata::path("golden"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FOLDERS.iter().map(|f| f.0.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

// ------------------------------------------------------ input dtypes and shards

/// F16 and BF16 checkpoints are decoded exactly and re-encoded.
#[test]
fn f16_and_bf16_checkpoints() {
    let src = testdata::path("golden").join("qwen2");
    let orig = read_st(&src.join("model.safetensors"));
    for dtype in ["F16", "BF16"] {
        let (tmp, dir) = copy_model(&src, "qwen2");
        let conv: BTreeMap<String, StTensor> = orig
            .iter()
            .map(|(k, t)| {
                let bytes = t
                    .f32s()
                    .iter()
                    .flat_map(|&v| match dtype {
                        "F16" => half::f16::from_f32(v).to_bits().to_le_bytes(),
                        _ => half::bf16::from_f32(v).to_bits().to_le_bytes(),
                    })
                    .collect();
                (k.clone(), StTensor { dtype: dtype.into(), shape: t.shape.clone(), bytes })
            })
            .collect();
        write_st(&dir.join("model.safetensors"), &conv);
        let out = tmp.path().join("o.gguf");
        run(&dir, &out, OutType::F32).unwrap();
        let c = Converted::load(&out);
        let (_, ty, b) = c.tensor("blk.1.ffn_down.weight");
        assert_eq!(ty, GgmlType::F32);
        assert_eq!(gguf_f32s(ty, b), conv["model.layers.1.mlp.down_proj.weight"].f32s(), "{dtype}");
        let (_, ty, b) = c.tensor("blk.0.attn_k.bias");
        assert_eq!(gguf_f32s(ty, b), conv["model.layers.0.self_attn.k_proj.bias"].f32s(), "{dtype}");
        // F16 output of an F16 checkpoint is bit-identical to the input.
        if dtype == "F16" {
            let out16 = tmp.path().join("o16.gguf");
            run(&dir, &out16, OutType::F16).unwrap();
            let c = Converted::load(&out16);
            let (_, ty, b) = c.tensor("token_embd.weight");
            assert_eq!(ty, GgmlType::F16);
            assert_eq!(b, conv["model.embed_tokens.weight"].bytes.as_slice());
        }
    }
}

/// A sharded checkpoint gives the same file as the single-file one.
#[test]
fn sharded_checkpoint_matches_single_file() {
    let src = testdata::path("golden").join("llama-gqa");
    let st = read_st(&src.join("model.safetensors"));
    let tmp = tempfile::tempdir().unwrap();
    let single_dir = tmp.path().join("a").join("m");
    let shard_dir = tmp.path().join("b").join("m");
    for d in [&single_dir, &shard_dir] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(src.join("config.json"), d.join("config.json")).unwrap();
    }
    std::fs::copy(src.join("model.safetensors"), single_dir.join("model.safetensors")).unwrap();
    let (mut s1, mut s2) = (BTreeMap::new(), BTreeMap::new());
    let mut wm = serde_json::Map::new();
    for (i, (k, t)) in st.iter().enumerate() {
        let shard = if i % 2 == 0 { "model-00001-of-00002.safetensors" } else { "model-00002-of-00002.safetensors" };
        if i % 2 == 0 { &mut s1 } else { &mut s2 }.insert(k.clone(), t.clone());
        wm.insert(k.clone(), Json::String(shard.into()));
    }
    write_st(&shard_dir.join("model-00001-of-00002.safetensors"), &s1);
    write_st(&shard_dir.join("model-00002-of-00002.safetensors"), &s2);
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": wm});
    std::fs::write(shard_dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let (o1, o2) = (tmp.path().join("1.gguf"), tmp.path().join("2.gguf"));
    run(&single_dir, &o1, OutType::F16).unwrap();
    run(&shard_dir, &o2, OutType::F16).unwrap();
    assert_eq!(std::fs::read(&o1).unwrap(), std::fs::read(&o2).unwrap());

    // An index naming a shard outside the folder is refused.
    let mut bad = index.clone();
    bad["weight_map"]["lm_head.weight"] = Json::String("../1.gguf".into());
    std::fs::write(shard_dir.join("model.safetensors.index.json"), bad.to_string()).unwrap();
    assert!(convert_err(&shard_dir).contains("../1.gguf"));
    // An index listing a tensor that no shard has.
    let mut bad = index.clone();
    bad["weight_map"]["model.layers.9.mlp.up_proj.weight"] = Json::String("model-00001-of-00002.safetensors".into());
    std::fs::write(shard_dir.join("model.safetensors.index.json"), bad.to_string()).unwrap();
    assert!(convert_err(&shard_dir).contains("model.layers.9.mlp.up_proj.weight"));
    // A shard that is missing.
    std::fs::write(shard_dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::remove_file(shard_dir.join("model-00002-of-00002.safetensors")).unwrap();
    assert!(convert_err(&shard_dir).contains("model-00002-of-00002.safetensors"));
}

// ------------------------------------------------------ hostile input

fn edit_config(dir: &Path, f: impl FnOnce(&mut Json)) {
    let mut c = config(dir);
    f(&mut c);
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
}

fn edit_tensors(dir: &Path, f: impl FnOnce(&mut BTreeMap<String, StTensor>)) {
    let mut st = read_st(&dir.join("model.safetensors"));
    f(&mut st);
    write_st(&dir.join("model.safetensors"), &st);
}

fn assert_mentions(err: &str, needles: &[&str]) {
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
}

#[test]
fn missing_config_or_weights() {
    let src = testdata::path("golden").join("llama-gqa");
    let (_t, dir) = copy_model(&src, "m");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert_mentions(&convert_err(&dir), &["config.json"]);

    let (_t, dir) = copy_model(&src, "m");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert_mentions(&convert_err(&dir), &["model.safetensors"]);

    let (_t, dir) = copy_model(&src, "m");
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    assert_mentions(&convert_err(&dir), &["config.json", "JSON"]);
}

#[test]
fn unknown_architecture_is_named() {
    let (_t, dir) = copy_model(&testdata::path("golden").join("llama-gqa"), "m");
    edit_config(&dir, |c| c["architectures"] = serde_json::json!(["FalconMambaForCausalLM"]));
    assert_mentions(&convert_err(&dir), &["unsupported architecture", "FalconMambaForCausalLM"]);
    edit_config(&dir, |c| c["architectures"] = serde_json::json!(42));
    assert_mentions(&convert_err(&dir), &["architectures"]);
}

#[test]
fn absurd_config_values_are_named() {
    let src = testdata::path("golden").join("llama-gqa");
    let cases: Vec<(&str, Json, Vec<&str>)> = vec![
        ("hidden_size", serde_json::json!(-64), vec!["hidden_size", "positive integer"]),
        ("hidden_size", serde_json::json!("64"), vec!["hidden_size"]),
        ("num_attention_heads", serde_json::json!(0), vec!["num_attention_heads"]),
        ("num_hidden_layers", serde_json::json!(1u64 << 40), vec!["num_hidden_layers", "absurdly large"]),
        ("num_key_value_heads", serde_json::json!(3), vec!["num_key_value_heads"]),
        ("intermediate_size", Json::Null, vec!["intermediate_size", "missing"]),
        ("rms_norm_eps", serde_json::json!(-1.0), vec!["rms_norm_eps"]),
        ("rms_norm_eps", Json::Null, vec!["rms_norm_eps", "missing"]),
        ("vocab_size", serde_json::json!(513), vec!["vocab_size", "model.embed_tokens.weight"]),
        ("rope_parameters", serde_json::json!({"rope_type": "yarn", "factor": 4.0}), vec!["yarn"]),
        ("rope_parameters", serde_json::json!({"rope_theta": "big"}), vec!["rope_parameters.rope_theta"]),
        ("max_position_embeddings", serde_json::json!(0), vec!["max_position_embeddings"]),
        ("tie_word_embeddings", serde_json::json!("no"), vec!["tie_word_embeddings"]),
    ];
    for (key, val, needles) in cases {
        let (_t, dir) = copy_model(&src, "m");
        edit_config(&dir, |c| c[key] = val.clone());
        let e = convert_err(&dir);
        assert_mentions(&e, &needles);
    }
    // A config that says the head is untied, over a checkpoint without one.
    let (_t, dir) = copy_model(&testdata::path("golden").join("llama-mha-tied"), "m");
    edit_config(&dir, |c| c["tie_word_embeddings"] = Json::Bool(false));
    assert_mentions(&convert_err(&dir), &["tie_word_embeddings", "lm_head.weight"]);
}

#[test]
fn wrong_tensor_shapes_are_named() {
    let src = testdata::path("golden").join("llama-gqa");
    // Same byte size, transposed shape.
    let (_t, dir) = copy_model(&src, "m");
    edit_tensors(&dir, |st| st.get_mut("model.layers.1.mlp.up_proj.weight").unwrap().shape = vec![64, 176]);
    assert_mentions(&convert_err(&dir), &["model.layers.1.mlp.up_proj.weight", "[64, 176]", "[176, 64]"]);
    // The config disagrees with the checkpoint about the KV heads.
    let (_t, dir) = copy_model(&src, "m");
    edit_config(&dir, |c| c["num_key_value_heads"] = serde_json::json!(1));
    assert_mentions(&convert_err(&dir), &["self_attn.k_proj.weight", "[32, 64]", "[16, 64]"]);
    // A GPT-2 Conv1D weight stored the nn.Linear way round.
    let (_t, dir) = copy_model(&testdata::path("golden").join("gpt2"), "m");
    edit_tensors(&dir, |st| st.get_mut("transformer.h.0.mlp.c_fc.weight").unwrap().shape = vec![256, 64]);
    assert_mentions(&convert_err(&dir), &["transformer.h.0.mlp.c_fc.weight", "Conv1D"]);
    // A norm with a 2-D shape.
    let (_t, dir) = copy_model(&src, "m");
    edit_tensors(&dir, |st| st.get_mut("model.norm.weight").unwrap().shape = vec![8, 8]);
    assert_mentions(&convert_err(&dir), &["model.norm.weight", "[8, 8]"]);
}

#[test]
fn wrong_dtypes_missing_and_unknown_tensors_are_named() {
    let src = testdata::path("golden").join("llama-gqa");
    let (_t, dir) = copy_model(&src, "m");
    edit_tensors(&dir, |st| st.get_mut("model.layers.0.self_attn.v_proj.weight").unwrap().dtype = "I32".into());
    assert_mentions(&convert_err(&dir), &["model.layers.0.self_attn.v_proj.weight", "I32"]);

    let (_t, dir) = copy_model(&src, "m");
    edit_tensors(&dir, |st| {
        st.remove("model.layers.1.post_attention_layernorm.weight");
    });
    assert_mentions(&convert_err(&dir), &["missing tensor", "model.layers.1.post_attention_layernorm.weight"]);

    let (_t, dir) = copy_model(&src, "m");
    edit_tensors(&dir, |st| {
        st.insert("model.layers.0.mlp.mystery.weight".into(), f32_tensor(&[2], &[1.0, 2.0]));
    });
    assert_mentions(&convert_err(&dir), &["model.layers.0.mlp.mystery.weight"]);

    let (_t, dir) = copy_model(&src, "m");
    edit_tensors(&dir, |st| {
        let t = st["model.layers.1.input_layernorm.weight"].clone();
        st.insert("model.layers.2.input_layernorm.weight".into(), t);
    });
    assert_mentions(&convert_err(&dir), &["model.layers.2.input_layernorm.weight", "block 2"]);

    // Phi needs its biases (llama.cpp's phi2 loader requires them).
    let (_t, dir) = copy_model(&testdata::path("golden").join("phi"), "m");
    edit_tensors(&dir, |st| {
        st.remove("model.layers.0.mlp.fc1.bias");
    });
    assert_mentions(&convert_err(&dir), &["model.layers.0.mlp.fc1.bias"]);
}

#[test]
fn truncated_or_corrupt_safetensors() {
    let src = testdata::path("golden").join("llama-gqa");
    let full = std::fs::read(src.join("model.safetensors")).unwrap();
    for keep in [0usize, 5, 100, full.len() / 2, full.len() - 1] {
        let (_t, dir) = copy_model(&src, "m");
        std::fs::write(dir.join("model.safetensors"), &full[..keep]).unwrap();
        assert_mentions(&convert_err(&dir), &["model.safetensors"]);
    }
    // Header length pointing far past the end.
    let (_t, dir) = copy_model(&src, "m");
    let mut b = full.clone();
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(dir.join("model.safetensors"), &b).unwrap();
    assert_mentions(&convert_err(&dir), &["model.safetensors"]);
}

// ------------------------------------------------------ tokenizers

fn reference_vocab(name: &str) -> Converted {
    Converted::load(&testdata::path("testdata").join("llamacpp-vocab").join(name))
}

fn strs(c: &Converted, k: &str) -> Vec<String> {
    c.g.get_str_array(k).unwrap().into_iter().map(String::from).collect()
}

fn ints(c: &Converted, k: &str) -> Vec<i64> {
    c.g.get_array(k).unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

/// The proto reader against llama.cpp's GGUF of the same vocabulary.
#[test]
fn spm_model_reader_matches_llamacpp_vocab() {
    let bytes = std::fs::read(testdata::path("testdata").join("llama2c-tokenizer/tokenizer.model")).unwrap();
    let m = convert::spm_model::SpmModel::parse(&bytes).unwrap();
    let r = reference_vocab("ggml-vocab-llama-spm.gguf");
    let tokens = strs(&r, "tokenizer.ggml.tokens");
    let scores = r.g.get_f32_array("tokenizer.ggml.scores").unwrap();
    let types = ints(&r, "tokenizer.ggml.token_type");
    assert_eq!(m.pieces.len(), 32000);
    assert_eq!(tokens.len(), 32000);
    for (i, p) in m.pieces.iter().enumerate() {
        assert_eq!(p.piece, tokens[i], "piece {i}");
        assert_eq!(p.score.to_bits(), scores[i].to_bits(), "score {i}");
        assert_eq!(p.kind as i64, types[i], "type {i} ({:?})", p.piece);
    }
    assert_eq!(m.trainer.model_type, convert::spm_model::ModelType::Bpe);
    assert!(m.trainer.byte_fallback);
    assert_eq!((m.trainer.unk_id, m.trainer.bos_id, m.trainer.eos_id), (0, 1, 2));
    assert!(m.normalizer.add_dummy_prefix);
    // Every truncation of the real file is refused, never a panic.
    for cut in [1usize, 2, 17, 1000, bytes.len() / 3, bytes.len() - 1] {
        let _ = convert::spm_model::SpmModel::parse(&bytes[..cut]);
    }
}

/// A tiny random llama with the real Llama 2 vocabulary and tokenizer files.
fn tiny_llama(dir: &Path, vocab: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "vocab_size": vocab, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": true
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut st = BTreeMap::new();
    let mut seed = 0;
    let mut t = |shape: &[usize]| {
        seed += 1;
        f32_tensor(shape, &noise(shape.iter().product(), seed))
    };
    st.insert("model.embed_tokens.weight".to_string(), t(&[vocab, 8]));
    st.insert("model.norm.weight".to_string(), t(&[8]));
    let l = "model.layers.0.";
    for (n, s) in [
        ("input_layernorm.weight", vec![8]),
        ("post_attention_layernorm.weight", vec![8]),
        ("self_attn.q_proj.weight", vec![8, 8]),
        ("self_attn.k_proj.weight", vec![4, 8]),
        ("self_attn.v_proj.weight", vec![4, 8]),
        ("self_attn.o_proj.weight", vec![8, 8]),
        ("mlp.gate_proj.weight", vec![16, 8]),
        ("mlp.up_proj.weight", vec![16, 8]),
        ("mlp.down_proj.weight", vec![8, 16]),
    ] {
        st.insert(format!("{l}{n}"), t(&s));
    }
    write_st(&dir.join("model.safetensors"), &st);
}

#[test]
fn sentencepiece_tokenizer_is_converted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-llama");
    tiny_llama(&dir, 32000);
    std::fs::copy(testdata::path("testdata").join("llama2c-tokenizer/tokenizer.model"), dir.join("tokenizer.model"))
        .unwrap();
    let template = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}";
    let tc = serde_json::json!({"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>",
        "eos_token": {"content": "</s>"}, "unk_token": "<unk>", "chat_template": template});
    std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
    let out = tmp.path().join("o.gguf");
    run(&dir, &out, OutType::F16).unwrap();
    let c = Converted::load(&out);
    let r = reference_vocab("ggml-vocab-llama-spm.gguf");
    assert_eq!(c.str("tokenizer.ggml.model"), "llama");
    assert_eq!(c.str("tokenizer.ggml.pre"), "default");
    assert_eq!(strs(&c, "tokenizer.ggml.tokens"), strs(&r, "tokenizer.ggml.tokens"));
    let (a, b) =
        (c.g.get_f32_array("tokenizer.ggml.scores").unwrap(), r.g.get_f32_array("tokenizer.ggml.scores").unwrap());
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.len() == b.len());
    assert_eq!(ints(&c, "tokenizer.ggml.token_type"), ints(&r, "tokenizer.ggml.token_type"));
    for k in ["bos_token_id", "eos_token_id", "unknown_token_id"] {
        let k = format!("tokenizer.ggml.{k}");
        assert_eq!(c.u32(&k), r.g.get_u32(&k).unwrap(), "{k}");
    }
    assert!(c.g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(!c.g.get_bool("tokenizer.ggml.add_eos_token").unwrap());
    assert_eq!(c.str("tokenizer.chat_template"), template);
    // The GQA q/k of this synthetic model are permuted too (1 KV head).
    let st = read_st(&dir.join("model.safetensors"));
    let (_, ty, b) = c.tensor("blk.0.attn_k.weight");
    let got = gguf_f32s(ty, b);
    let src = st["model.layers.0.self_attn.k_proj.weight"].f32s();
    for r in 0..4 {
        for k in 0..8 {
            assert_eq!(got[r * 8 + k], half::f16::from_f32(src[unpermuted_row(r, 4) * 8 + k]).to_f32());
        }
    }

    // A model whose embedding is larger than the tokenizer: padded rows.
    let dir2 = tmp.path().join("padded");
    tiny_llama(&dir2, 32005);
    std::fs::copy(dir.join("tokenizer.model"), dir2.join("tokenizer.model")).unwrap();
    run(&dir2, &tmp.path().join("p.gguf"), OutType::F32).unwrap();
    let c = Converted::load(&tmp.path().join("p.gguf"));
    let toks = strs(&c, "tokenizer.ggml.tokens");
    assert_eq!(toks.len(), 32005);
    assert_eq!(toks[32003], "[PAD32003]");
    assert_eq!(ints(&c, "tokenizer.ggml.token_type")[32004], 5);

    // A tokenizer bigger than the embedding is refused.
    let dir3 = tmp.path().join("small");
    tiny_llama(&dir3, 512);
    std::fs::copy(dir.join("tokenizer.model"), dir3.join("tokenizer.model")).unwrap();
    assert_mentions(&convert_err(&dir3), &["tokenizer.model", "32000", "512"]);

    // A corrupt tokenizer.model is refused with its name.
    std::fs::write(dir3.join("tokenizer.model"), [0x0a, 0x80]).unwrap();
    assert_mentions(&convert_err(&dir3), &["tokenizer.model"]);
}

/// Older configs: a top-level rope_theta and rope_scaling; Llama with
/// attention biases (whose q/k biases are permuted like the weight rows).
#[test]
fn llama_biases_rope_theta_and_linear_scaling() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    tiny_llama(&dir, 64);
    edit_config(&dir, |c| {
        c["attention_bias"] = Json::Bool(true);
        c["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
    });
    edit_tensors(&dir, |st| {
        for (n, len, seed) in [("q", 8, 7), ("k", 4, 8), ("v", 4, 9), ("o", 8, 10)] {
            st.insert(format!("model.layers.0.self_attn.{n}_proj.bias"), f32_tensor(&[len], &noise(len, seed)));
        }
    });
    let out = tmp.path().join("o.gguf");
    run(&dir, &out, OutType::F16).unwrap();
    let c = Converted::load(&out);
    assert_eq!(c.f32("llama.rope.freq_base"), 500000.0);
    assert_eq!(c.str("llama.rope.scaling.type"), "linear");
    assert_eq!(c.f32("llama.rope.scaling.factor"), 2.0);
    let st = read_st(&dir.join("model.safetensors"));
    for (n, len) in [("q", 8usize), ("k", 4), ("v", 4), ("o", 8)] {
        let (dims, ty, b) = c.tensor(&format!("blk.0.attn_{}.bias", if n == "o" { "output" } else { n }));
        assert_eq!((dims, ty), (vec![len as u64], GgmlType::F32), "{n} bias");
        let got = gguf_f32s(ty, b);
        let src = st[&format!("model.layers.0.self_attn.{n}_proj.bias")].f32s();
        assert_eq!(got.len(), len);
        for (r, g) in got.iter().enumerate() {
            let from = if n == "q" || n == "k" { unpermuted_row(r, 4) } else { r };
            assert_eq!(g.to_bits(), src[from].to_bits(), "{n} bias [{r}]");
        }
    }
    // A bias where the architecture has none is refused.
    edit_tensors(&dir, |st| {
        st.insert("model.layers.0.input_layernorm.bias".into(), f32_tensor(&[8], &[0.0; 8]));
    });
    assert_mentions(&convert_err(&dir), &["model.layers.0.input_layernorm.bias"]);
}

/// A tiny random GPT-2 with the real GPT-2 BPE files.
fn tiny_gpt2(dir: &Path, vocab: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"], "n_embd": 8, "n_head": 2, "n_layer": 1, "n_positions": 16,
        "n_inner": null, "layer_norm_epsilon": 1e-5, "vocab_size": vocab, "bos_token_id": 50256, "eos_token_id": 50256
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut st = BTreeMap::new();
    let mut seed = 100;
    let mut t = |shape: &[usize]| {
        seed += 1;
        f32_tensor(shape, &noise(shape.iter().product(), seed))
    };
    st.insert("transformer.wte.weight".to_string(), t(&[vocab, 8]));
    st.insert("transformer.wpe.weight".to_string(), t(&[16, 8]));
    st.insert("transformer.ln_f.weight".to_string(), t(&[8]));
    st.insert("transformer.ln_f.bias".to_string(), t(&[8]));
    for (n, s) in [
        ("ln_1.weight", vec![8]),
        ("ln_1.bias", vec![8]),
        ("ln_2.weight", vec![8]),
        ("ln_2.bias", vec![8]),
        ("attn.c_attn.weight", vec![8, 24]),
        ("attn.c_attn.bias", vec![24]),
        ("attn.c_proj.weight", vec![8, 8]),
        ("attn.c_proj.bias", vec![8]),
        ("mlp.c_fc.weight", vec![8, 32]),
        ("mlp.c_fc.bias", vec![32]),
        ("mlp.c_proj.weight", vec![32, 8]),
        ("mlp.c_proj.bias", vec![8]),
    ] {
        st.insert(format!("transformer.h.0.{n}"), t(&s));
    }
    // Old checkpoints store the causal mask as a buffer: it is skipped.
    st.insert("transformer.h.0.attn.bias".to_string(), f32_tensor(&[1, 1, 2, 2], &[1.0, 0.0, 1.0, 1.0]));
    write_st(&dir.join("model.safetensors"), &st);
}

#[test]
fn gpt2_bpe_tokenizer_is_converted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-gpt2");
    tiny_gpt2(&dir, 50257);
    let bpe = testdata::path("testdata").join("gpt2-bpe");
    std::fs::copy(bpe.join("encoder.json"), dir.join("vocab.json")).unwrap();
    std::fs::copy(bpe.join("vocab.bpe"), dir.join("merges.txt")).unwrap();
    // As in Hugging Face's gpt2 repository, tokenizer.json marks <|endoftext|> special.
    let tj = serde_json::json!({"added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": true}]});
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    let out = tmp.path().join("o.gguf");
    let log = run(&dir, &out, OutType::F32).unwrap();
    assert!(
        log.iter().any(|l| l.contains("transformer.h.0.attn.bias")),
        "the mask buffer should be reported as skipped"
    );
    let c = Converted::load(&out);
    let r = reference_vocab("ggml-vocab-gpt-2.gguf");
    assert_eq!(c.str("tokenizer.ggml.model"), "gpt2");
    assert_eq!(c.str("tokenizer.ggml.pre"), "gpt-2");
    assert_eq!(strs(&c, "tokenizer.ggml.tokens"), strs(&r, "tokenizer.ggml.tokens"));
    assert_eq!(strs(&c, "tokenizer.ggml.merges"), strs(&r, "tokenizer.ggml.merges"));
    assert_eq!(ints(&c, "tokenizer.ggml.token_type"), ints(&r, "tokenizer.ggml.token_type"));
    assert_eq!(c.u32("tokenizer.ggml.bos_token_id"), r.g.get_u32("tokenizer.ggml.bos_token_id").unwrap());
    assert_eq!(c.u32("tokenizer.ggml.eos_token_id"), r.g.get_u32("tokenizer.ggml.eos_token_id").unwrap());
    assert!(!c.g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    // The hyper-parameters llama.cpp's reference vocab file records for gpt2
    // are all present (with this model's values).
    for (k, _) in &r.g.metadata {
        if k.starts_with("gpt2.") {
            assert!(c.g.get(k).is_some(), "missing {k}");
        }
    }
    assert!(c.g.tensor("blk.0.attn.bias").is_err());

    // Merges as tokenizer.json pairs (transformers >= 4.45) give the same list.
    let merges: Vec<Json> = std::fs::read_to_string(bpe.join("vocab.bpe"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            serde_json::json!([a, b])
        })
        .collect();
    let vocab: Json = serde_json::from_slice(&std::fs::read(bpe.join("encoder.json")).unwrap()).unwrap();
    let dir2 = tmp.path().join("fast");
    tiny_gpt2(&dir2, 50257);
    let tj = serde_json::json!({
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": true}],
        "model": {"type": "BPE", "vocab": vocab, "merges": merges}
    });
    std::fs::write(dir2.join("tokenizer.json"), tj.to_string()).unwrap();
    run(&dir2, &tmp.path().join("f.gguf"), OutType::F32).unwrap();
    let c2 = Converted::load(&tmp.path().join("f.gguf"));
    assert_eq!(strs(&c2, "tokenizer.ggml.merges"), strs(&r, "tokenizer.ggml.merges"));
    assert_eq!(strs(&c2, "tokenizer.ggml.tokens"), strs(&r, "tokenizer.ggml.tokens"));

    // A vocabulary id beyond the embedding is refused.
    let dir3 = tmp.path().join("short");
    tiny_gpt2(&dir3, 50000);
    std::fs::copy(bpe.join("encoder.json"), dir3.join("vocab.json")).unwrap();
    std::fs::copy(bpe.join("vocab.bpe"), dir3.join("merges.txt")).unwrap();
    assert_mentions(&convert_err(&dir3), &["50000"]);
    // A malformed merges line is named.
    tiny_gpt2(&dir3, 50257);
    std::fs::write(dir3.join("merges.txt"), "#version: 0.2\nĠ t\nonly-one\n").unwrap();
    assert_mentions(&convert_err(&dir3), &["merges.txt", "line 3"]);
}
