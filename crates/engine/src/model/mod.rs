//! Models: hyper-parameters, weights, run state and the forward pass.
//!
//! One decoder-only transformer serves every family; a family is a choice of
//! building blocks in [`Config`] (norm, rope variant, attention biases, MLP
//! variant, residual layout) plus the loader that maps its tensor names.

mod tensor;

pub(crate) use tensor::Data as tensor_data;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use kernels::exec::Executor;
use kernels::ops::{self, matmul, matvec, ActScratch};

use crate::{Error, Result};
pub use tensor::{DType, Tensor};

/// Model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gpt2,
    Qwen2,
    Gemma,
    Phi2,
}

impl Arch {
    /// The GGUF `general.architecture` name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gpt2 => "gpt2",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma => "gemma",
            Arch::Phi2 => "phi2",
        }
    }
}

/// Normalisation layer kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    Rms,
    Layer,
}

/// Feed-forward kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnKind {
    /// down(silu(gate x) * up x)
    SwiGlu,
    /// down(gelu_tanh(gate x) * up x)
    GeGlu,
    /// down(gelu_tanh(up x + b) + b)
    Gelu,
}

/// Hyper-parameters and building blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    /// Embedding width.
    pub dim: usize,
    /// Feed-forward width.
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Context length the model was trained with.
    pub max_ctx: usize,
    pub norm: NormKind,
    pub norm_eps: f32,
    pub ffn: FfnKind,
    /// RoPE: dimensions rotated per head (0 = no rope: learned positions).
    pub n_rot: usize,
    pub rope_base: f32,
    /// NeoX/HF half-split rotation instead of adjacent pairs.
    pub rope_neox: bool,
    /// Attention only looks back this many positions (Mistral).
    pub sliding_window: Option<usize>,
    /// Attention and MLP both read the same normed input (Phi-2).
    pub parallel_residual: bool,
    /// Multiply embeddings by this (Gemma: sqrt(dim) rounded to the model dtype).
    pub embed_scale: Option<f32>,
}

impl Config {
    /// Width of the key/value projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    /// Width of the query projection.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Checks the dimensions make sense together and are not absurd.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, detail: alloc::string::String| Err(Error::invalid(what, detail));
        const MAX: usize = 1 << 20;
        for (name, v) in [
            ("dim", self.dim),
            ("hidden_dim", self.hidden_dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("context length", self.max_ctx),
        ] {
            if v == 0 || v > MAX * 16 {
                return bad(name, alloc::format!("{v} is out of range"));
            }
        }
        if self.n_layers > 1024 || self.n_heads > 4096 || self.dim > MAX || self.hidden_dim > MAX * 4 {
            return bad("model dimensions", alloc::format!("{self:?} are absurd"));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad("n_kv_heads", alloc::format!("{} does not divide n_heads {}", self.n_kv_heads, self.n_heads));
        }
        if self.n_rot > self.head_dim || !self.n_rot.is_multiple_of(2) {
            return bad("rope dimension count", alloc::format!("{} for head_dim {}", self.n_rot, self.head_dim));
        }
        let eps_ok = (0.0..1.0).contains(&self.norm_eps);
        let base_ok = self.rope_base.is_finite() && self.rope_base > 0.0;
        if !eps_ok || (!base_ok && self.n_rot > 0) {
            return bad("norm epsilon or rope base", alloc::format!("{} / {}", self.norm_eps, self.rope_base));
        }
        Ok(())
    }

    /// Bytes of run state (KV cache and buffers) for a context of `n_ctx`.
    pub fn state_bytes(&self, n_ctx: usize) -> u64 {
        let kv = 2 * self.n_layers as u64 * n_ctx as u64 * self.kv_dim() as u64;
        let bufs = 6 * self.dim.max(self.q_dim()) as u64 + 3 * self.hidden_dim as u64 + self.vocab_size as u64;
        let att = self.n_heads as u64 * n_ctx as u64;
        (kv + bufs + att) * 4
    }
}

/// A norm's weight (and bias for LayerNorm), converted to f32.
#[derive(Debug, Clone)]
pub struct Norm {
    pub w: Vec<f32>,
    pub b: Option<Vec<f32>>,
}

/// One transformer block.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `[dim]`
    pub attn_norm: Norm,
    /// `[q_dim, dim]`
    pub wq: Tensor,
    /// `[kv_dim, dim]`
    pub wk: Tensor,
    /// `[kv_dim, dim]`
    pub wv: Tensor,
    /// Optional biases `[q_dim]`, `[kv_dim]`, `[kv_dim]`.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// `[dim, q_dim]`
    pub wo: Tensor,
    /// `[dim]`
    pub bo: Option<Vec<f32>>,
    /// `[dim]` (unused with parallel residual)
    pub ffn_norm: Option<Norm>,
    /// `[hidden_dim, dim]` (gated FFNs only)
    pub w_gate: Option<Tensor>,
    /// `[hidden_dim, dim]`
    pub w_up: Tensor,
    /// `[hidden_dim]`
    pub b_up: Option<Vec<f32>>,
    /// `[dim, hidden_dim]`
    pub w_down: Tensor,
    /// `[dim]`
    pub b_down: Option<Vec<f32>>,
}

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// `[vocab_size, dim]`
    pub token_embd: Tensor,
    /// `[max_ctx, dim]` learned positions (GPT-2)
    pub pos_embd: Option<Tensor>,
    pub layers: Vec<Layer>,
    /// `[dim]`
    pub output_norm: Norm,
    /// `[vocab_size, dim]`; None = tied to token_embd
    pub output: Option<Tensor>,
    /// `[vocab_size]`
    pub output_bias: Option<Vec<f32>>,
}

/// Tokens evaluated together in one batched forward pass (prompt prefill).
pub const BATCH: usize = 32;

/// Buffers for one forward pass over up to [`BATCH`] tokens, allocated once
/// at load. Row-major with one row per token of the batch.
struct State {
    x: Vec<f32>,       // [BATCH, dim] residual stream
    xn: Vec<f32>,      // [BATCH, dim] normed input of attention / MLP
    att_out: Vec<f32>, // [BATCH, q_dim] attention output
    xb2: Vec<f32>,     // [BATCH, dim] projection outputs
    q: Vec<f32>,       // [BATCH, q_dim]
    k: Vec<f32>,       // [BATCH, kv_dim]
    v: Vec<f32>,       // [BATCH, kv_dim]
    hb: Vec<f32>,      // [BATCH, hidden_dim]
    hb2: Vec<f32>,     // [BATCH, hidden_dim]
    att: Vec<f32>,     // [n_heads, n_ctx] scores of one query
    logits: Vec<f32>,  // [vocab_size] of the batch's last token
    key_cache: Vec<f32>,   // [n_layers, n_ctx, kv_dim]
    value_cache: Vec<f32>, // [n_layers, n_ctx, kv_dim]
    xq: ActScratch,        // quantized activations (Q8_0 and Q8_K), [BATCH, max(dim, hidden, q_dim)]
    inv_freq: Vec<f32>,    // [n_rot / 2]
}

/// Where the weights' bytes come from.
pub use crate::load::Blob;

/// A model ready to run.
pub struct Model {
    pub config: Config,
    pub weights: Weights,
    /// Context allocated for this run (<= max_ctx).
    pub n_ctx: usize,
    /// Human-readable name (general.name or the file name).
    pub name: String,
    /// The file format it came from.
    pub format: &'static str,
    /// The GGUF `tokenizer.chat_template`, if the file has one.
    pub chat_template: Option<String>,
    blob: Blob,
    s: State,
}

impl Model {
    /// Assembles a model. Validates every tensor's shape against the config and
    /// allocates the run state for `n_ctx` positions.
    pub fn new(config: Config, weights: Weights, blob: Blob, n_ctx: usize, format: &'static str) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let n_ctx = n_ctx.clamp(1, c.max_ctx);
        check_shape(&weights.token_embd, c.vocab_size, c.dim)?;
        if let Some(p) = &weights.pos_embd {
            if p.cols != c.dim || p.rows < n_ctx {
                return Err(shape_err(p, n_ctx, c.dim));
            }
        }
        if let Some(o) = &weights.output {
            check_shape(o, c.vocab_size, c.dim)?;
        }
        check_vec("output_norm", &weights.output_norm.w, c.dim)?;
        if weights.layers.len() != c.n_layers {
            return Err(Error::invalid("layer count", alloc::format!("{} layers, config says {}", weights.layers.len(), c.n_layers)));
        }
        for l in &weights.layers {
            check_shape(&l.wq, c.q_dim(), c.dim)?;
            check_shape(&l.wk, c.kv_dim(), c.dim)?;
            check_shape(&l.wv, c.kv_dim(), c.dim)?;
            check_shape(&l.wo, c.dim, c.q_dim())?;
            check_shape(&l.w_up, c.hidden_dim, c.dim)?;
            check_shape(&l.w_down, c.dim, c.hidden_dim)?;
            if let Some(g) = &l.w_gate {
                check_shape(g, c.hidden_dim, c.dim)?;
            } else if c.ffn != FfnKind::Gelu {
                return Err(Error::MissingTensor(alloc::format!("ffn_gate for {}", l.w_up.name)));
            }
            check_vec("attn_norm", &l.attn_norm.w, c.dim)?;
            if let Some(n) = &l.ffn_norm {
                check_vec("ffn_norm", &n.w, c.dim)?;
            } else if !c.parallel_residual {
                return Err(Error::MissingTensor(alloc::format!("ffn_norm for {}", l.w_up.name)));
            }
            for (n, b, len) in [
                ("attn_q.bias", &l.bq, c.q_dim()),
                ("attn_k.bias", &l.bk, c.kv_dim()),
                ("attn_v.bias", &l.bv, c.kv_dim()),
                ("attn_output.bias", &l.bo, c.dim),
                ("ffn_up.bias", &l.b_up, c.hidden_dim),
                ("ffn_down.bias", &l.b_down, c.dim),
            ] {
                if let Some(b) = b {
                    check_vec(n, b, len)?;
                }
            }
        }
        // Every quantized matrix needs its row length to be a multiple of 32.
        let file: &[u8] = blob.as_ref().as_ref();
        for t in weights.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_up, &l.w_down]) {
            t.weights(file)?;
        }
        let mut weights = weights;
        let mut blob = blob;
        repack(&mut weights, (*blob).as_mut());
        let c = &config;
        let max_cols = c.dim.max(c.hidden_dim).max(c.q_dim());
        let alloc_f32 = |n: usize, what: &str| -> Result<Vec<f32>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory { what: what.into(), bytes: n as u64 * 4 })?;
            v.resize(n, 0.0);
            Ok(v)
        };
        let kv_len = c
            .n_layers
            .checked_mul(n_ctx)
            .and_then(|v| v.checked_mul(c.kv_dim()))
            .ok_or_else(|| Error::overflow("KV cache size"))?;
        let inv_freq = (0..c.n_rot / 2)
            .map(|i| ops::powf_f64(f64::from(c.rope_base), -(2.0 * i as f64) / c.n_rot as f64) as f32)
            .collect();
        let s = State {
            x: alloc_f32(BATCH * c.dim, "activations")?,
            xn: alloc_f32(BATCH * c.dim, "activations")?,
            att_out: alloc_f32(BATCH * c.q_dim(), "activations")?,
            xb2: alloc_f32(BATCH * c.dim, "activations")?,
            q: alloc_f32(BATCH * c.q_dim(), "activations")?,
            k: alloc_f32(BATCH * c.kv_dim(), "activations")?,
            v: alloc_f32(BATCH * c.kv_dim(), "activations")?,
            hb: alloc_f32(BATCH * c.hidden_dim, "activations")?,
            hb2: alloc_f32(BATCH * c.hidden_dim, "activations")?,
            att: alloc_f32(c.n_heads * n_ctx, "attention scores")?,
            logits: alloc_f32(c.vocab_size, "logits")?,
            key_cache: alloc_f32(kv_len, "KV cache")?,
            value_cache: alloc_f32(kv_len, "KV cache")?,
            xq: ActScratch::new(max_cols, BATCH),
            inv_freq,
        };
        Ok(Model { config, weights, n_ctx, name: String::new(), format, chat_template: None, blob, s })
    }

    /// Number of weights.
    pub fn n_params(&self) -> u64 {
        let w = &self.weights;
        let norm = |n: &Norm| n.w.len() + n.b.as_ref().map_or(0, Vec::len);
        let opt = |b: &Option<Vec<f32>>| b.as_ref().map_or(0, Vec::len);
        let mut n = w.token_embd.len() + w.pos_embd.as_ref().map_or(0, Tensor::len) + norm(&w.output_norm);
        n += w.output.as_ref().map_or(0, Tensor::len) + opt(&w.output_bias);
        for l in &w.layers {
            n += norm(&l.attn_norm) + l.ffn_norm.as_ref().map_or(0, norm);
            n += l.wq.len() + l.wk.len() + l.wv.len() + l.wo.len() + l.w_up.len() + l.w_down.len();
            n += l.w_gate.as_ref().map_or(0, Tensor::len);
            n += opt(&l.bq) + opt(&l.bk) + opt(&l.bv) + opt(&l.bo) + opt(&l.b_up) + opt(&l.b_down);
        }
        n as u64
    }

    /// The main matrix type ("F32", "Q8_0", ...): that of the first layer's wq.
    pub fn tensor_type(&self) -> &'static str {
        self.weights.layers.first().map_or("F32", |l| l.wq.dtype.name())
    }

    /// Bytes in use: file bytes kept plus converted weights plus run state.
    pub fn memory_bytes(&self) -> u64 {
        let file = self.blob.as_ref().as_ref().len() as u64;
        file + self.config.state_bytes(self.n_ctx)
    }

    /// Runs one token at position `pos` (positions `0..pos` must already be in
    /// the KV cache) and returns the logits. Never allocates.
    pub fn forward(&mut self, token: u32, pos: usize, exec: &dyn Executor) -> Result<&[f32]> {
        self.forward_batch(&[token], pos, exec)
    }

    /// Evaluates `tokens` at positions `pos..pos + tokens.len()` (prompt
    /// prefill) and returns the logits of the last one. Tokens go through the
    /// layers in batches of [`BATCH`]: each weight matrix is read once per
    /// batch. Never allocates.
    pub fn forward_batch(&mut self, tokens: &[u32], pos: usize, exec: &dyn Executor) -> Result<&[f32]> {
        let vocab = self.config.vocab_size;
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: t, vocab });
        }
        if tokens.is_empty() {
            return Err(Error::Usage("no tokens to evaluate".into()));
        }
        if pos + tokens.len() > self.n_ctx {
            return Err(Error::ContextFull { n_ctx: self.n_ctx });
        }
        for (i, chunk) in tokens.chunks(BATCH).enumerate() {
            let last = (i + 1) * BATCH >= tokens.len();
            self.batch(chunk, pos + i * BATCH, last, exec)?;
        }
        Ok(&self.s.logits)
    }

    /// One batch of at most BATCH tokens; computes logits when `logits`.
    fn batch(&mut self, tokens: &[u32], pos0: usize, logits: bool, exec: &dyn Executor) -> Result<()> {
        let c = &self.config;
        let n = tokens.len();
        let file: &[u8] = self.blob.as_ref().as_ref();
        let w = &self.weights;
        let s = &mut self.s;
        let (dim, kv_dim, q_dim, hd, hid) = (c.dim, c.kv_dim(), c.q_dim(), c.head_dim, c.hidden_dim);

        for (b, &token) in tokens.iter().enumerate() {
            let x = &mut s.x[b * dim..(b + 1) * dim];
            w.token_embd.row_f32(file, token as usize, x)?;
            if let Some(scale) = c.embed_scale {
                x.iter_mut().for_each(|v| *v *= scale);
            }
            if let Some(p) = &w.pos_embd {
                let pe = &mut s.xb2[..dim];
                p.row_f32(file, pos0 + b, pe)?;
                add_into(x, pe);
            }
        }

        let scale = 1.0 / ops::libm_sqrt(hd as f32);
        let layer_len = self.n_ctx * kv_dim;
        for (li, l) in w.layers.iter().enumerate() {
            for b in 0..n {
                norm(c, &mut s.xn[b * dim..(b + 1) * dim], &s.x[b * dim..(b + 1) * dim], &l.attn_norm);
            }
            let xn = &s.xn[..n * dim];
            matmul(exec, l.wq.weights(file)?, dim, xn, n, &mut s.xq, &mut s.q[..n * q_dim]);
            matmul(exec, l.wk.weights(file)?, dim, xn, n, &mut s.xq, &mut s.k[..n * kv_dim]);
            matmul(exec, l.wv.weights(file)?, dim, xn, n, &mut s.xq, &mut s.v[..n * kv_dim]);
            for b in 0..n {
                let pos = pos0 + b;
                let q = &mut s.q[b * q_dim..(b + 1) * q_dim];
                let k = &mut s.k[b * kv_dim..(b + 1) * kv_dim];
                let v = &mut s.v[b * kv_dim..(b + 1) * kv_dim];
                add_bias(q, &l.bq);
                add_bias(k, &l.bk);
                add_bias(v, &l.bv);
                if c.n_rot > 0 {
                    ops::rope_heads(q, hd, pos, c.n_rot, &s.inv_freq, c.rope_neox);
                    ops::rope_heads(k, hd, pos, c.n_rot, &s.inv_freq, c.rope_neox);
                }
                let at = li * layer_len + pos * kv_dim;
                s.key_cache[at..at + kv_dim].copy_from_slice(k);
                s.value_cache[at..at + kv_dim].copy_from_slice(v);
            }
            // Causal attention: token b sees positions up to pos0 + b.
            let shape = ops::AttnShape { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: hd, n_ctx: self.n_ctx };
            let window = c.sliding_window;
            ops::attention_batch(
                exec,
                &s.q[..n * q_dim],
                &s.key_cache[li * layer_len..(li + 1) * layer_len],
                &s.value_cache[li * layer_len..(li + 1) * layer_len],
                &mut s.att,
                &mut s.att_out[..n * q_dim],
                n,
                shape,
                pos0,
                &|pos| window.map_or(0, |win| (pos + 1).saturating_sub(win)),
                scale,
            );
            matmul(exec, l.wo.weights(file)?, q_dim, &s.att_out[..n * q_dim], n, &mut s.xq, &mut s.xb2[..n * dim]);
            for b in 0..n {
                add_bias(&mut s.xb2[b * dim..(b + 1) * dim], &l.bo);
            }
            add_into(&mut s.x[..n * dim], &s.xb2[..n * dim]);
            if !c.parallel_residual {
                let fnorm = l.ffn_norm.as_ref().ok_or_else(|| Error::MissingTensor("ffn_norm".into()))?;
                for b in 0..n {
                    norm(c, &mut s.xn[b * dim..(b + 1) * dim], &s.x[b * dim..(b + 1) * dim], fnorm);
                }
            }
            // With a parallel residual (Phi-2) the MLP reads the attention's
            // normed input, which is still in xn.
            ffn(c, l, file, exec, &s.xn[..n * dim], n, &mut s.hb[..n * hid], &mut s.hb2[..n * hid], &mut s.xq)?;
            matmul(exec, l.w_down.weights(file)?, hid, &s.hb[..n * hid], n, &mut s.xq, &mut s.xb2[..n * dim]);
            for b in 0..n {
                add_bias(&mut s.xb2[b * dim..(b + 1) * dim], &l.b_down);
            }
            add_into(&mut s.x[..n * dim], &s.xb2[..n * dim]);
        }
        if logits {
            let last = n - 1;
            norm(c, &mut s.xn[..dim], &s.x[last * dim..(last + 1) * dim], &w.output_norm);
            let out = w.output.as_ref().unwrap_or(&w.token_embd);
            matvec(exec, out.weights(file)?, dim, &s.xn[..dim], &mut s.xq, &mut s.logits);
            add_bias(&mut s.logits, &w.output_bias);
        }
        Ok(())
    }
}

/// Repacks the Q4_0, Q4_K and Q6_K projection matrices (and such an output
/// matrix) into row octets, in place in the file bytes: decoding then
/// streams one array with a row in each vector lane (as llama.cpp's
/// `q4_0_8x8` and `q4_K_8x8` repacking does).
/// Token embeddings stay as they are (rows are looked up one at a time). A
/// matrix whose bytes overlap another tensor's (a malformed file) is left
/// alone, so no tensor is ever read in a layout it was not written in.
fn repack(w: &mut Weights, file: &mut [u8]) {
    let mut others: Vec<core::ops::Range<usize>> = Vec::new();
    others.extend(w.token_embd.file_range());
    others.extend(w.pos_embd.as_ref().and_then(Tensor::file_range));
    let mut matrices: Vec<&mut Tensor> = Vec::new();
    for l in &mut w.layers {
        matrices.extend([&mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w_up, &mut l.w_down]);
        matrices.extend(l.w_gate.as_mut());
    }
    matrices.extend(w.output.as_mut());
    let ranges: Vec<Option<core::ops::Range<usize>>> = matrices.iter().map(|t| t.file_range()).collect();
    for (i, t) in matrices.into_iter().enumerate() {
        let Some(r) = &ranges[i] else { continue };
        let overlaps = |o: &core::ops::Range<usize>| o.start < r.end && r.start < o.end;
        let shared = others.iter().any(overlaps)
            || ranges.iter().enumerate().any(|(j, o)| j != i && o.as_ref().is_some_and(overlaps));
        if !shared {
            t.repack_octets(file);
        }
    }
}

fn check_shape(t: &Tensor, rows: usize, cols: usize) -> Result<()> {
    if t.rows != rows || t.cols != cols {
        return Err(shape_err(t, rows, cols));
    }
    Ok(())
}

fn shape_err(t: &Tensor, rows: usize, cols: usize) -> Error {
    // Reported in GGUF order: [cols, rows].
    Error::TensorShape { name: t.name.clone(), expected: vec![cols as u64, rows as u64], found: vec![t.cols as u64, t.rows as u64] }
}

fn check_vec(name: &str, v: &[f32], len: usize) -> Result<()> {
    if v.len() != len {
        return Err(Error::TensorShape { name: name.into(), expected: vec![len as u64], found: vec![v.len() as u64] });
    }
    Ok(())
}

fn norm(c: &Config, out: &mut [f32], x: &[f32], n: &Norm) {
    match c.norm {
        NormKind::Layer => ops::layernorm(out, x, &n.w, n.b.as_deref(), c.norm_eps),
        NormKind::Rms => ops::rmsnorm(out, x, &n.w, c.norm_eps),
    }
}

fn add_bias(v: &mut [f32], b: &Option<Vec<f32>>) {
    if let Some(b) = b {
        add_into(v, b);
    }
}

fn add_into(v: &mut [f32], d: &[f32]) {
    for (a, b) in v.iter_mut().zip(d) {
        *a += b;
    }
}

/// The MLP up to (not including) the down projection, for `n` rows: leaves
/// the hidden activations in `hb`.
#[allow(clippy::too_many_arguments)]
fn ffn(
    c: &Config,
    l: &Layer,
    file: &[u8],
    exec: &dyn Executor,
    xin: &[f32],
    n: usize,
    hb: &mut [f32],
    hb2: &mut [f32],
    xq: &mut ActScratch,
) -> Result<()> {
    let (dim, hid) = (c.dim, c.hidden_dim);
    matmul(exec, l.w_up.weights(file)?, dim, xin, n, xq, hb2);
    for b in 0..n {
        add_bias(&mut hb2[b * hid..(b + 1) * hid], &l.b_up);
    }
    match (c.ffn, &l.w_gate) {
        (FfnKind::Gelu, _) => {
            hb.copy_from_slice(hb2);
            ops::geglu(hb, None);
        }
        (kind, Some(g)) => {
            matmul(exec, g.weights(file)?, dim, xin, n, xq, hb);
            if kind == FfnKind::SwiGlu {
                ops::swiglu(hb, hb2);
            } else {
                ops::geglu(hb, Some(hb2));
            }
        }
        (_, None) => return Err(Error::MissingTensor("ffn_gate".into())),
    }
    Ok(())
}
