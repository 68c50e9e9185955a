//! Models: hyper-parameters, weights, run state and the forward pass.
//!
//! One decoder-only transformer serves every family; a family is a choice of
//! building blocks in [`Config`] (norm, rope variant, attention biases, MLP
//! variant, residual layout) plus the loader that maps its tensor names.

mod arch;
mod session;
mod tensor;

pub(crate) use tensor::Data as tensor_data;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use kernels::exec::Executor;
use kernels::ops::{self, matmul, ActScratch};
pub use kernels::store::StableBytes;
use kernels::store::Store;

use crate::{Error, Result};
pub use arch::{Arch, ArchSpec, FfnKind, NormKind, Role, RopeKind, ARCHS, GEMMA, GPT2, LLAMA, PHI2, QWEN2};
pub use session::{KvType, Session, BATCH};
pub use tensor::{DType, Tensor};

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
            return bad(
                "model dimensions",
                alloc::format!(
                    "{} layers, {} heads, dim {}, hidden_dim {} are absurd (limits 1024, 4096, {MAX}, {})",
                    self.n_layers,
                    self.n_heads,
                    self.dim,
                    self.hidden_dim,
                    MAX * 4
                ),
            );
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

/// The bytes of a model file, owned by the model once loaded. The host passes
/// a `Vec<u8>` or its huge-page buffer; the UEFI app passes its page
/// allocation. Loading may rewrite weight matrices in place (Q4_0, Q4_K and
/// Q6_K matrices are repacked into row octets), so the bytes must be
/// writable; after that they are the model's read-only [`Store`].
pub type Blob = Box<dyn BlobBytes>;

/// What a [`Blob`] holds: bytes at a stable address (see
/// [`StableBytes`]), writable while the model is being assembled.
pub trait BlobBytes: StableBytes + AsMut<[u8]> {}
impl<T: StableBytes + AsMut<[u8]>> BlobBytes for T {}

/// A model ready to run: hyper-parameters and weights, immutable after load
/// and shared (`Sync`) by every [`Session`] that runs on it. A session holds
/// a conversation's state (KV cache, scratch buffers, position).
pub struct Model {
    pub config: Config,
    pub weights: Weights,
    /// Human-readable name (general.name or the file name).
    pub name: String,
    /// The file format it came from.
    pub format: &'static str,
    /// The GGUF `tokenizer.chat_template`, if the file has one.
    pub chat_template: Option<String>,
    /// RoPE inverse frequencies, `[n_rot / 2]`.
    inv_freq: Vec<f32>,
    /// The file's bytes, which every weight view points into.
    store: Store,
}

impl Model {
    /// Assembles a model. Validates every tensor's shape against the config
    /// and repacks quantized matrices for the kernels.
    pub fn new(config: Config, weights: Weights, blob: Blob, format: &'static str) -> Result<Self> {
        config.validate()?;
        let c = &config;
        check_shape(&weights.token_embd, c.vocab_size, c.dim)?;
        if let Some(p) = &weights.pos_embd {
            if p.cols != c.dim || p.rows == 0 {
                return Err(shape_err(p, c.max_ctx, c.dim));
            }
        }
        if let Some(o) = &weights.output {
            check_shape(o, c.vocab_size, c.dim)?;
        }
        check_vec("output_norm", &weights.output_norm.w, c.dim)?;
        if weights.layers.len() != c.n_layers {
            return Err(Error::invalid(
                "layer count",
                alloc::format!("{} layers, config says {}", weights.layers.len(), c.n_layers),
            ));
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
        // Every matrix must resolve to a kernel view (quantized rows a
        // multiple of the block size, bytes inside the file).
        let file: &[u8] = blob.bytes();
        for t in matrices(&weights) {
            t.weights_in(file)?;
        }
        let mut weights = weights;
        let mut blob = blob;
        repack(&mut weights, (*blob).as_mut());
        // From here on the bytes are read-only, and every tensor a view of them.
        let store = Store::new(blob);
        for t in matrices_mut(&mut weights) {
            t.resolve(&store)?;
        }
        let inv_freq = (0..c.n_rot / 2)
            .map(|i| ops::powf_f64(f64::from(c.rope_base), -(2.0 * i as f64) / c.n_rot as f64) as f32)
            .collect();
        Ok(Model { config, weights, name: String::new(), format, chat_template: None, inv_freq, store })
    }

    /// The longest context a session on this model can have: the trained
    /// context, and for learned positions (GPT-2) the rows of the table.
    pub fn max_ctx(&self) -> usize {
        let pe = self.weights.pos_embd.as_ref().map_or(usize::MAX, |p| p.rows);
        self.config.max_ctx.min(pe)
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

    /// Bytes the weights take: the file bytes kept (converted weights are
    /// counted by the loader's summary).
    pub fn weight_bytes(&self) -> u64 {
        self.store.bytes().len() as u64
    }

    /// Bytes in use with one session of `n_ctx` positions.
    pub fn memory_bytes(&self, n_ctx: usize) -> u64 {
        self.weight_bytes() + self.config.state_bytes(n_ctx)
    }

    /// The model file's bytes, which the weights are views of.
    fn store(&self) -> &Store {
        &self.store
    }
}

/// Every tensor the forward pass reads through a view: the embeddings and
/// the matrices.
fn matrices(w: &Weights) -> impl Iterator<Item = &Tensor> {
    let layers =
        w.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_up, &l.w_down].into_iter().chain(&l.w_gate));
    [&w.token_embd].into_iter().chain(&w.pos_embd).chain(layers).chain(&w.output)
}

fn matrices_mut(w: &mut Weights) -> impl Iterator<Item = &mut Tensor> {
    let layers = w.layers.iter_mut().flat_map(|l| {
        [&mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w_up, &mut l.w_down].into_iter().chain(&mut l.w_gate)
    });
    [&mut w.token_embd].into_iter().chain(&mut w.pos_embd).chain(layers).chain(&mut w.output)
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
    Error::TensorShape {
        name: t.name.clone(),
        expected: vec![cols as u64, rows as u64],
        found: vec![t.cols as u64, t.rows as u64],
    }
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
    store: &Store,
    exec: &dyn Executor,
    xin: &[f32],
    n: usize,
    hb: &mut [f32],
    hb2: &mut [f32],
    xq: &mut ActScratch,
) -> Result<()> {
    let (dim, hid) = (c.dim, c.hidden_dim);
    matmul(exec, l.w_up.weights(store)?, dim, xin, n, xq, hb2);
    for b in 0..n {
        add_bias(&mut hb2[b * hid..(b + 1) * hid], &l.b_up);
    }
    match (c.ffn, &l.w_gate) {
        (FfnKind::Gelu, _) => {
            hb.copy_from_slice(hb2);
            ops::geglu(hb, None);
        }
        (kind, Some(g)) => {
            matmul(exec, g.weights(store)?, dim, xin, n, xq, hb);
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
