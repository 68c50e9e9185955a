//! `lbm bench`: prompt-processing and decode speed, measured like llama-bench
//! (`-p 512 -n 128`: a 512-token prompt evaluated in batches from an empty
//! context, then 128 tokens decoded one at a time from an empty context;
//! random token ids; one warm-up run; median and spread over repetitions).
//!
//! `lbm bench --gen-model SHAPE --type T -o FILE` writes a GGUF with random
//! weights in the shape of a real model, so speed can be measured (and
//! compared with llama.cpp on the very same file) without downloading one.
//! The file is written in one pass, a chunk of rows at a time: memory use is
//! one chunk, whatever the model size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use engine::gguf::{write_header, GgmlType, Gguf, TensorEntry, Value};
use engine::load::load_model;
use engine::model::Session;
use engine::quantize::{encode, plan_tensors, ModelParams, QuantType, TensorPlan, TensorSpec};
use kernels::exec::Executor;
use kernels::ops::par_chunks_mut;

/// Command-line arguments of `lbm bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The model to measure.
    #[arg(short, long, required_unless_present = "gen_model")]
    pub model: Option<PathBuf>,
    /// Prompt tokens (0 = skip the prompt test).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens (0 = skip the decode test).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Repetitions of each test.
    #[arg(short, long, default_value_t = 5)]
    pub reps: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write a random-weight model of this shape instead of measuring:
    /// stories15M, stories110M, gpt2-124M, tinyllama-1.1B, llama-7B,
    /// qwen2-0.5B, gemma-2b, phi-2, mistral-7b.
    #[arg(long, requires = "output")]
    pub gen_model: Option<String>,
    /// Type of the generated model: f32, f16 or any `lbm quantize` type (q8_0, q4_k_m, iq4_xs, ...).
    #[arg(long = "type", default_value = "q8_0")]
    pub ty: String,
    /// Where to write the generated model.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// A GGUF file whose tokenizer (tokenizer.* keys) the generated model
    /// gets; its vocabulary must have the shape's size. Default: a
    /// placeholder vocabulary of the right size.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Read the model into memory on transparent huge pages instead of
    /// mapping the file (the default): the whole file is copied at start-up
    /// (`load_ms` in --json), and decoding walks 2 MiB pages instead of the
    /// page cache's 4 KiB ones.
    #[arg(long)]
    pub no_mmap: bool,
}

/// Runs `lbm bench` with parsed arguments.
pub fn run(a: &BenchArgs) -> Result<()> {
    let threads = crate::threads::count(a.threads);
    if let Some(shape) = &a.gen_model {
        let shape = Shape::find(shape)?;
        let ty = QuantType::parse(&a.ty).with_context(|| format!("unknown type '{}'", a.ty))?;
        let out = a.output.as_deref().context("--gen-model needs -o FILE")?;
        return gen_model(shape, ty, out, a.vocab.as_deref(), a.seed, threads, &mut |m| eprintln!("{m}"));
    }
    let model = a.model.as_deref().context("give -m MODEL")?;
    let o = BenchOptions { model: model.into(), n_prompt: a.n_prompt, n_gen: a.n_gen, threads, reps: a.reps };
    let r = bench_with(&o, crate::host::LoadMode::from_no_mmap(a.no_mmap))?;
    if a.json {
        println!("{}", r.to_json());
    } else {
        print!("{}", r.to_table());
    }
    Ok(())
}

// ---------------------------------------------------------------- measuring

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub model: PathBuf,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub threads: usize,
    pub reps: usize,
}

/// Speeds over the repetitions of one test, in tokens per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Stats {
    /// Statistics of `samples` (at least one).
    pub fn of(samples: &[f64]) -> Stats {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len() as f64;
        let median = if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 };
        let mean = s.iter().sum::<f64>() / n;
        let var = if s.len() > 1 { s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        Stats { median, mean, std: var.sqrt(), min: s[0], max: s[s.len() - 1], samples: samples.to_vec() }
    }
}

/// The result of `lbm bench`.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The model's name (general.name or the file name).
    pub model: String,
    /// Its main tensor type ("Q4_K_M", "Q8_0", ...: the file type when the
    /// file says, else the type of the first layer's attention query).
    pub ty: String,
    pub params: u64,
    pub file_size: u64,
    pub threads: usize,
    pub simd: &'static str,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub reps: usize,
    /// Prompt processing ("pp"), tokens per second.
    pub pp: Option<Stats>,
    /// Decoding ("tg"), tokens per second.
    pub tg: Option<Stats>,
    /// Milliseconds from opening the file to a loaded model (read or
    /// mapped, parsed, repacked).
    pub load_ms: f64,
    /// Whether the weights were mapped from the file (else read into huge pages).
    pub mmap: bool,
}

/// A deterministic stream of token ids below `vocab`.
fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % vocab as u64) as u32
        })
        .collect()
}

/// Measures prompt processing and decoding of the model mapped from its
/// file (the default [`crate::host::LoadMode`]).
pub fn bench(o: &BenchOptions) -> Result<BenchReport> {
    bench_with(o, crate::host::LoadMode::default())
}

/// Measures loading (`load_ms`: from opening the file to a loaded model,
/// repacking included), prompt processing and decoding, the model mapped or
/// read as `mode` says.
pub fn bench_with(o: &BenchOptions, mode: crate::host::LoadMode) -> Result<BenchReport> {
    ensure!(o.reps > 0, "--reps must be at least 1");
    ensure!(o.n_prompt > 0 || o.n_gen > 0, "nothing to measure: -p and -n are both 0");
    let start = Instant::now();
    let (bytes, got) = crate::host::read_model_as(&o.model, mode)?;
    let file_size = bytes.bytes().len() as u64;
    let mut ty = None;
    if bytes.bytes().starts_with(b"GGUF") {
        let g = Gguf::parse(bytes.bytes(), file_size)?;
        ty = g
            .get("general.file_type")
            .and_then(Value::as_u64)
            .and_then(engine::quantize::file_type_name)
            .map(String::from);
    }
    let n_ctx = o.n_prompt.max(o.n_gen).max(1);
    let m = load_model(bytes).with_context(|| format!("loading {}", o.model.display()))?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    ensure!(m.max_ctx() >= n_ctx, "the model's context ({}) is shorter than the test ({n_ctx} tokens)", m.max_ctx());
    let mut s = Session::new(&m, n_ctx)?;
    let name = if m.name.is_empty() {
        o.model.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
    } else {
        m.name.clone()
    };
    let ty = ty.unwrap_or_else(|| m.tensor_type().to_string());
    let vocab = m.config.vocab_size;
    let pool = crate::threads::pool(o.threads)?;
    let exec: &dyn Executor = &pool;

    let mut pp = Vec::new();
    if o.n_prompt > 0 {
        let toks = tokens(1, o.n_prompt, vocab);
        s.eval(&m, &toks[..toks.len().min(32)], exec)?; // warm-up
        for rep in 0..o.reps {
            let toks = tokens(rep as u64 + 2, o.n_prompt, vocab);
            s.clear();
            let t = Instant::now();
            s.eval(&m, &toks, exec)?;
            pp.push(o.n_prompt as f64 / t.elapsed().as_secs_f64());
        }
    }
    let mut tg = Vec::new();
    if o.n_gen > 0 {
        s.clear();
        s.eval(&m, &[1 % vocab as u32], exec)?; // warm-up
        for rep in 0..o.reps {
            let toks = tokens(rep as u64 + 100, o.n_gen, vocab);
            s.clear();
            let t = Instant::now();
            for &tok in &toks {
                s.eval(&m, &[tok], exec)?;
            }
            tg.push(o.n_gen as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(BenchReport {
        model: name,
        ty,
        params: m.n_params(),
        file_size,
        threads: o.threads,
        simd: kernels::cpu::level().name(),
        n_prompt: o.n_prompt,
        n_gen: o.n_gen,
        reps: o.reps,
        pp: (!pp.is_empty()).then(|| Stats::of(&pp)),
        tg: (!tg.is_empty()).then(|| Stats::of(&tg)),
        load_ms,
        mmap: got == crate::host::LoadMode::Map,
    })
}

impl BenchReport {
    /// `{"model", "type", "threads", "pp_tok_s", "tg_tok_s", ...}`: the
    /// medians, with the spread and every sample alongside.
    pub fn to_json(&self) -> serde_json::Value {
        let stat = |s: &Option<Stats>| s.as_ref().map(|s| s.median);
        let detail = |s: &Option<Stats>| {
            s.as_ref().map(|s| {
                serde_json::json!({"median": s.median, "mean": s.mean, "std": s.std, "min": s.min, "max": s.max, "samples": s.samples})
            })
        };
        serde_json::json!({
            "model": self.model,
            "type": self.ty,
            "threads": self.threads,
            "pp_tok_s": stat(&self.pp),
            "tg_tok_s": stat(&self.tg),
            "n_prompt": self.n_prompt,
            "n_gen": self.n_gen,
            "reps": self.reps,
            "pp": detail(&self.pp),
            "tg": detail(&self.tg),
            "params": self.params,
            "file_size": self.file_size,
            "simd": self.simd,
            "load_ms": self.load_ms,
            "mmap": self.mmap,
        })
    }

    /// A table like llama-bench's.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        s.push_str("| model                          |       size |     params | type   | threads | simd   |  test |              t/s |\n");
        s.push_str("| ------------------------------ | ---------: | ---------: | ------ | ------: | ------ | ----: | ---------------: |\n");
        for (test, n, st) in [("pp", self.n_prompt, &self.pp), ("tg", self.n_gen, &self.tg)] {
            if let Some(st) = st {
                s.push_str(&format!(
                    "| {:<30} | {:>6.1} MiB | {:>8.1} M | {:<6} | {:>7} | {:<6} | {:>5} | {:>8.2} ± {:>5.2} |\n",
                    self.model.chars().take(30).collect::<String>(),
                    self.file_size as f64 / (1u64 << 20) as f64,
                    self.params as f64 / 1e6,
                    self.ty,
                    self.threads,
                    self.simd,
                    format!("{test}{n}"),
                    st.median,
                    st.std,
                ));
            }
        }
        s
    }
}

// ---------------------------------------------------------------- model shapes

/// Hyper-parameters of a real model, for random-weight files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    /// GGUF architecture.
    pub arch: &'static str,
    pub dim: u64,
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    /// Per-head width when it is not dim / heads (Gemma).
    pub head_dim: Option<u64>,
    pub vocab: u64,
    pub ctx: u64,
    pub rope_base: f32,
    /// Rotated dimensions per head when not all (Phi-2).
    pub n_rot: Option<u64>,
    /// LayerNorm with biases (GPT-2, Phi-2) instead of RMSNorm.
    pub layer_norm: bool,
    /// Separate output head (else tied to the embedding).
    pub untied: bool,
    /// Biases on q, k, v (Qwen2).
    pub qkv_bias: bool,
    /// GPT-2 / Phi-2 layout: fused QKV, biases everywhere, ungated MLP.
    pub gpt_like: bool,
}

const fn llama(name: &'static str, dim: u64, hidden: u64, layers: u64, heads: u64, kv_heads: u64, ctx: u64) -> Shape {
    Shape {
        name,
        arch: "llama",
        dim,
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim: None,
        vocab: 32000,
        ctx,
        rope_base: 10000.0,
        n_rot: None,
        layer_norm: false,
        untied: true,
        qkv_bias: false,
        gpt_like: false,
    }
}

/// The shapes `--gen-model` knows (from each model's published config).
pub const SHAPES: [Shape; 9] = [
    llama("stories15M", 288, 768, 6, 6, 6, 256),
    llama("stories110M", 768, 2048, 12, 12, 12, 1024),
    Shape {
        arch: "gpt2",
        vocab: 50257,
        layer_norm: true,
        gpt_like: true,
        untied: true, // llama.cpp's converter writes a copy of wte as output.weight
        ..llama("gpt2-124M", 768, 3072, 12, 12, 12, 1024)
    },
    llama("tinyllama-1.1B", 2048, 5632, 22, 32, 4, 2048),
    llama("llama-7B", 4096, 11008, 32, 32, 32, 4096),
    Shape {
        arch: "qwen2",
        vocab: 151936,
        rope_base: 1_000_000.0,
        untied: false,
        qkv_bias: true,
        ..llama("qwen2-0.5B", 896, 4864, 24, 14, 2, 32768)
    },
    Shape {
        arch: "gemma",
        vocab: 256000,
        head_dim: Some(256),
        untied: false,
        ..llama("gemma-2b", 2048, 16384, 18, 8, 1, 8192)
    },
    Shape {
        arch: "phi2",
        vocab: 51200,
        n_rot: Some(32),
        layer_norm: true,
        gpt_like: true,
        ..llama("phi-2", 2560, 10240, 32, 32, 32, 2048)
    },
    Shape { rope_base: 1_000_000.0, ..llama("mistral-7b", 4096, 14336, 32, 32, 8, 32768) },
];

impl Shape {
    /// The shape called `name` (case-insensitive).
    pub fn find(name: &str) -> Result<&'static Shape> {
        SHAPES.iter().find(|s| s.name.eq_ignore_ascii_case(name)).with_context(|| {
            format!("unknown shape '{name}'; known: {}", SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))
        })
    }

    fn head_dim(&self) -> u64 {
        self.head_dim.unwrap_or(self.dim / self.heads)
    }

    /// Every tensor: (name, GGUF dims).
    pub fn tensors(&self) -> Vec<(String, Vec<u64>)> {
        let (d, h, v) = (self.dim, self.hidden, self.vocab);
        let (q, kv) = (self.heads * self.head_dim(), self.kv_heads * self.head_dim());
        let mut t: Vec<(String, Vec<u64>)> = vec![("token_embd.weight".into(), vec![d, v])];
        let mut add = |name: String, dims: Vec<u64>| t.push((name, dims));
        if self.arch == "gpt2" {
            add("position_embd.weight".into(), vec![d, self.ctx]);
        }
        for i in 0..self.layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            add(p("attn_norm.weight"), vec![d]);
            if self.layer_norm {
                add(p("attn_norm.bias"), vec![d]);
            }
            if self.gpt_like {
                add(p("attn_qkv.weight"), vec![d, q + 2 * kv]);
                add(p("attn_qkv.bias"), vec![q + 2 * kv]);
                add(p("attn_output.weight"), vec![q, d]);
                add(p("attn_output.bias"), vec![d]);
                if self.arch == "gpt2" {
                    add(p("ffn_norm.weight"), vec![d]);
                    add(p("ffn_norm.bias"), vec![d]);
                }
                add(p("ffn_up.weight"), vec![d, h]);
                add(p("ffn_up.bias"), vec![h]);
                add(p("ffn_down.weight"), vec![h, d]);
                add(p("ffn_down.bias"), vec![d]);
            } else {
                add(p("attn_q.weight"), vec![d, q]);
                add(p("attn_k.weight"), vec![d, kv]);
                add(p("attn_v.weight"), vec![d, kv]);
                if self.qkv_bias {
                    add(p("attn_q.bias"), vec![q]);
                    add(p("attn_k.bias"), vec![kv]);
                    add(p("attn_v.bias"), vec![kv]);
                }
                add(p("attn_output.weight"), vec![q, d]);
                add(p("ffn_norm.weight"), vec![d]);
                add(p("ffn_gate.weight"), vec![d, h]);
                add(p("ffn_up.weight"), vec![d, h]);
                add(p("ffn_down.weight"), vec![h, d]);
            }
        }
        add("output_norm.weight".into(), vec![d]);
        if self.layer_norm {
            add("output_norm.bias".into(), vec![d]);
        }
        if self.untied {
            add("output.weight".into(), vec![d, v]);
            if self.arch == "phi2" {
                add("output.bias".into(), vec![v]);
            }
        }
        t
    }

    /// The hyper-parameter metadata, in llama.cpp's key names.
    fn metadata(&self) -> Vec<(String, Value)> {
        let a = self.arch;
        let k = |s: &str| format!("{a}.{s}");
        let u = |v: u64| Value::U32(v as u32);
        let mut m = vec![
            ("general.architecture".to_string(), Value::String(a.into())),
            ("general.name".to_string(), Value::String(format!("{} (random weights)", self.name))),
            (k("context_length"), u(self.ctx)),
            (k("embedding_length"), u(self.dim)),
            (k("block_count"), u(self.layers)),
            (k("feed_forward_length"), u(self.hidden)),
            (k("attention.head_count"), u(self.heads)),
            (k("attention.head_count_kv"), u(self.kv_heads)),
        ];
        if self.layer_norm {
            m.push((k("attention.layer_norm_epsilon"), Value::F32(1e-5)));
        } else {
            m.push((k("attention.layer_norm_rms_epsilon"), Value::F32(if a == "llama" { 1e-5 } else { 1e-6 })));
        }
        if a != "gpt2" {
            m.push((k("rope.dimension_count"), u(self.n_rot.unwrap_or(self.head_dim()))));
            m.push((k("rope.freq_base"), Value::F32(self.rope_base)));
        }
        if let Some(hd) = self.head_dim {
            m.push((k("attention.key_length"), u(hd)));
            m.push((k("attention.value_length"), u(hd)));
        }
        m
    }
}

/// A placeholder SentencePiece-style vocabulary of `n` tokens that llama.cpp
/// and lbm both load: <unk>, <s>, </s>, the 256 byte tokens, then fillers.
fn placeholder_vocab(n: u64) -> Vec<(String, Value)> {
    let n = n as usize;
    let mut tokens = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for i in 0..n {
        let (t, ty) = match i {
            0 => ("<unk>".to_string(), 2),
            1 => ("<s>".to_string(), 3),
            2 => ("</s>".to_string(), 3),
            3..=258 => (format!("<0x{:02X}>", i - 3), 6),
            _ => (format!("\u{2581}t{i}"), 1),
        };
        tokens.push(Value::String(t));
        scores.push(Value::F32(-(i as f32)));
        types.push(Value::I32(ty));
    }
    vec![
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        ("tokenizer.ggml.scores".into(), Value::Array(scores)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
    ]
}

/// The tokenizer.* keys of a GGUF file, checked against the vocabulary size.
fn vocab_from(path: &Path, n: u64) -> Result<Vec<(String, Value)>> {
    let (g, _, _) = crate::host::read_header(path, Gguf::parse)?;
    let have = g.get_array("tokenizer.ggml.tokens").map(|a| a.len() as u64).unwrap_or(0);
    ensure!(have == n, "{} has {have} tokens, the shape needs {n}", path.display());
    Ok(g.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")).cloned().collect())
}

/// Fills `x` with uniform values in [-a, a) from a xorshift stream seeded by `seed`.
fn fill_uniform(x: &mut [f32], seed: u64, a: f32) {
    let mut s = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x9e37_79b9_7f4a_7c15;
    s |= 1;
    for v in x {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *v = ((s >> 40) as f32 * (1.0 / (1u64 << 23) as f32) - 1.0) * a;
    }
}

/// Writes a random-weight GGUF of `shape` quantized as `ty` to `out` (via a
/// temporary file renamed at the end), on `threads` threads.
pub fn gen_model(
    shape: &Shape,
    ty: QuantType,
    out: &Path,
    vocab: Option<&Path>,
    seed: u64,
    threads: usize,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let tensors = shape.tensors();
    let specs: Vec<TensorSpec<'_>> =
        tensors.iter().map(|(n, d)| TensorSpec { name: n, dims: d, ty: GgmlType::F32 }).collect();
    let model = ModelParams::new(shape.arch, shape.layers as i64, shape.heads, shape.kv_heads);
    let plan: Vec<TensorPlan> = plan_tensors(&specs, &model, ty)?;
    let mut meta = shape.metadata();
    meta.extend(match vocab {
        Some(p) => vocab_from(p, shape.vocab)?,
        None => placeholder_vocab(shape.vocab),
    });
    meta.push(("general.quantization_version".into(), Value::U32(2)));
    meta.push(("general.file_type".into(), Value::U32(ty.file_type())));

    let align = 32u64;
    let size = |p: &TensorPlan| -> Result<u64> {
        let rows: u64 = p.dims[1..].iter().product();
        p.to.row_bytes(p.dims[0])
            .map(|r| r * rows)
            .with_context(|| format!("{}: rows do not fit {}", p.name, p.to.name()))
    };
    let output = outfile::Output::create(out)?;
    let pool = crate::threads::pool(threads)?;
    let t0 = Instant::now();
    let result = output.write_with(4 << 20, |w| {
        let sizes = plan.iter().map(size).collect::<Result<Vec<u64>>>()?;
        let entries: Vec<TensorEntry<'_>> = plan
            .iter()
            .zip(&sizes)
            .map(|(p, &size)| TensorEntry { name: &p.name, dims: &p.dims, ty: p.to, size })
            .collect();
        let mut io_err = None;
        let header = write_header(&meta, &entries, align, &mut |b: &[u8]| {
            w.write_all(b).map_err(|e| {
                let msg = e.to_string();
                io_err = Some(e);
                engine::Error::Io(msg)
            })
        });
        if let Some(e) = io_err {
            return Err(e.into());
        }
        let mut written = header?;
        let mut put = |w: &mut std::io::BufWriter<&std::fs::File>, b: &[u8]| -> Result<()> {
            w.write_all(b)?;
            written += b.len() as u64;
            Ok(())
        };
        for (ti, p) in plan.iter().enumerate() {
            let cols = p.dims[0] as usize;
            let rows: usize = p.dims[1..].iter().product::<u64>() as usize;
            // Norm weights near 1 (Gemma's file stores 1 + w), everything else
            // uniform with the spread of a 0.02 normal.
            let (center, spread) =
                if p.name.contains("norm.weight") { (1.0f32, 0.1f32) } else { (0.0, 0.02 * 3f32.sqrt()) };
            // About 16M values per chunk, whole rows.
            let chunk_rows = (16usize << 20).div_ceil(cols).clamp(1, rows);
            let mut buf = vec![0.0f32; chunk_rows * cols];
            let mut r0 = 0;
            while r0 < rows {
                let n = chunk_rows.min(rows - r0);
                let x = &mut buf[..n * cols];
                let piece = 1 << 16;
                let base = seed ^ ((ti as u64) << 40) ^ ((r0 as u64) << 8);
                par_chunks_mut(&pool, x, piece, &|i, xs| {
                    fill_uniform(xs, base.wrapping_add(i as u64).wrapping_mul(0x9e37_79b9), spread);
                    if center != 0.0 {
                        xs.iter_mut().for_each(|v| *v += center);
                    }
                });
                put(w, &encode(&pool, x, p.to)?)?;
                r0 += n;
            }
            // Zeros up to the alignment, as write_header expects.
            let pad = sizes[ti].next_multiple_of(align) - sizes[ti];
            put(w, &vec![0u8; pad as usize])?;
        }
        Ok(written)
    });
    match result {
        Ok(bytes) => {
            log(&format!(
                "wrote {} ({} {}, {:.1} MiB, {} tensors) in {:.1} s",
                out.display(),
                shape.name,
                ty.name(),
                bytes as f64 / (1u64 << 20) as f64,
                plan.len(),
                t0.elapsed().as_secs_f64()
            ));
            Ok(())
        }
        Err(e) => {
            if e.downcast_ref::<std::io::Error>().is_some() {
                bail!("writing {}: {e:#}", out.display());
            }
            Err(e)
        }
    }
}
