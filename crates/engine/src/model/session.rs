//! A conversation's state on a [`Model`]: KV cache, scratch buffers,
//! position, the tokens evaluated and a pending sampled token.
//!
//! Any number of sessions can run on one model at once (the model is only
//! read). Every buffer is reserved, fallibly, when the session is created;
//! evaluating tokens allocates nothing.

use alloc::vec::Vec;

use kernels::exec::Executor;
use kernels::half::f32_to_f16;
use kernels::ops::{self, matmul, ActScratch, KvSlice};

use super::{add_bias, add_into, ffn, norm, Config, Model};
use crate::{Error, Result};

/// Tokens evaluated together in one batched forward pass (prompt prefill).
pub const BATCH: usize = 32;

/// How the KV cache stores keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    /// f32: the exact path (matches transformers within 1e-4).
    #[default]
    F32,
    /// f16: half the memory; computed as llama.cpp's default cache is
    /// (queries and attention weights rounded to f16 too), so greedy runs
    /// agree with llama.cpp where f32 would part ways on a near tie.
    F16,
}

impl KvType {
    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
        }
    }
    /// The type named `f32` or `f16`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(KvType::F32),
            "f16" => Some(KvType::F16),
            _ => None,
        }
    }
    fn bytes(self) -> u64 {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }
}

/// Keys or values of every layer, `[n_layers, n_ctx, kv_dim]`.
enum KvStore {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl KvStore {
    fn new(kind: KvType, len: usize) -> Result<Self> {
        Ok(match kind {
            KvType::F32 => KvStore::F32(alloc_f32(len, "KV cache")?),
            KvType::F16 => {
                let mut v = Vec::new();
                v.try_reserve_exact(len)
                    .map_err(|_| Error::OutOfMemory { what: "KV cache".into(), bytes: len as u64 * 2 })?;
                v.resize(len, 0u16);
                KvStore::F16(v)
            }
        })
    }
    fn store(&mut self, at: usize, x: &[f32]) {
        match self {
            KvStore::F32(c) => c[at..at + x.len()].copy_from_slice(x),
            KvStore::F16(c) => c[at..at + x.len()].iter_mut().zip(x).for_each(|(h, &v)| *h = f32_to_f16(v)),
        }
    }
    fn layer(&self, r: core::ops::Range<usize>) -> KvSlice<'_> {
        match self {
            KvStore::F32(c) => KvSlice::F32(&c[r]),
            KvStore::F16(c) => KvSlice::F16(&c[r]),
        }
    }
}

/// Buffers for one forward pass over up to [`BATCH`] tokens. Row-major with
/// one row per token of the batch.
struct State {
    x: Vec<f32>,          // [BATCH, dim] residual stream
    xn: Vec<f32>,         // [BATCH, dim] normed input of attention / MLP
    att_out: Vec<f32>,    // [BATCH, q_dim] attention output
    xb2: Vec<f32>,        // [BATCH, dim] projection outputs
    q: Vec<f32>,          // [BATCH, q_dim]
    k: Vec<f32>,          // [BATCH, kv_dim]
    v: Vec<f32>,          // [BATCH, kv_dim]
    hb: Vec<f32>,         // [BATCH, hidden_dim]
    hb2: Vec<f32>,        // [BATCH, hidden_dim]
    att: Vec<f32>,        // [n_heads, n_ctx] scores of one query
    logits: Vec<f32>,     // [vocab_size] of the last evaluated token
    key_cache: KvStore,   // [n_layers, n_ctx, kv_dim]
    value_cache: KvStore, // [n_layers, n_ctx, kv_dim]
    xq: ActScratch,       // quantized activations (Q8_0 and Q8_K), [BATCH, max(dim, hidden, q_dim)]
}

/// One conversation on a model.
pub struct Session {
    /// Positions the KV cache holds.
    n_ctx: usize,
    /// The tokens in the KV cache, in order (their count is the position of
    /// the next token).
    tokens: Vec<u32>,
    /// A sampled token not yet evaluated; the next evaluation starts with it.
    pending: Option<u32>,
    /// The shape this session's buffers were made for.
    shape: Config,
    kv_type: KvType,
    s: State,
}

fn alloc_f32(n: usize, what: &str) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory { what: what.into(), bytes: n as u64 * 4 })?;
    v.resize(n, 0.0);
    Ok(v)
}

impl Session {
    /// A session of `n_ctx` positions (clamped to `1..=model.max_ctx()`) on
    /// `model`. Reserves the KV cache and every buffer now; a failed
    /// reservation is [`Error::OutOfMemory`].
    pub fn new(model: &Model, n_ctx: usize) -> Result<Self> {
        Self::with_kv_type(model, n_ctx, KvType::F32)
    }

    /// [`Session::new`] with the KV cache stored as `kv_type`.
    pub fn with_kv_type(model: &Model, n_ctx: usize, kv_type: KvType) -> Result<Self> {
        let c = &model.config;
        let n_ctx = n_ctx.clamp(1, model.max_ctx().max(1));
        let kv_len = c
            .n_layers
            .checked_mul(n_ctx)
            .and_then(|v| v.checked_mul(c.kv_dim()))
            .ok_or_else(|| Error::overflow("KV cache size"))?;
        let max_cols = c.dim.max(c.hidden_dim).max(c.q_dim());
        let mut tokens = Vec::new();
        tokens
            .try_reserve_exact(n_ctx)
            .map_err(|_| Error::OutOfMemory { what: "token history".into(), bytes: n_ctx as u64 * 4 })?;
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
            key_cache: KvStore::new(kv_type, kv_len)?,
            value_cache: KvStore::new(kv_type, kv_len)?,
            xq: ActScratch::new(max_cols, BATCH),
        };
        Ok(Session { n_ctx, tokens, pending: None, shape: c.clone(), kv_type, s })
    }

    /// Positions the KV cache holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Position of the next token: the number of tokens evaluated.
    pub fn pos(&self) -> usize {
        self.tokens.len()
    }

    /// The tokens in the KV cache, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// A sampled token that has not been evaluated yet.
    pub fn pending(&self) -> Option<u32> {
        self.pending
    }

    /// Sets or clears the pending token (the next evaluation starts with it).
    pub fn set_pending(&mut self, t: Option<u32>) {
        self.pending = t;
    }

    /// How the KV cache stores keys and values.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Bytes of the session's buffers.
    pub fn memory_bytes(&self) -> u64 {
        let c = &self.shape;
        let kv = 2 * c.n_layers as u64 * self.n_ctx as u64 * c.kv_dim() as u64;
        self.shape.state_bytes(self.n_ctx) - kv * (4 - self.kv_type.bytes())
    }

    /// Forgets everything: the KV cache is empty again.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pending = None;
    }

    /// Keeps the first `n` evaluated tokens (the rest of the KV cache is
    /// overwritten by what is evaluated next) and drops the pending token.
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
        self.pending = None;
    }

    /// The logits of the last evaluated token (zeros before any).
    pub fn logits(&self) -> &[f32] {
        &self.s.logits
    }

    /// Mutable logits and the evaluated tokens, for a sampler that works in
    /// place (temperature, penalties) and looks at the history.
    pub fn logits_and_tokens(&mut self) -> (&mut [f32], &[u32]) {
        (&mut self.s.logits, &self.tokens)
    }

    fn check(&self, model: &Model, tokens: &[u32]) -> Result<()> {
        if model.config != self.shape {
            return Err(Error::Usage("this session was made for another model".into()));
        }
        let vocab = self.shape.vocab_size;
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: t, vocab });
        }
        if tokens.is_empty() {
            return Err(Error::Usage("no tokens to evaluate".into()));
        }
        if self.pos() + tokens.len() > self.n_ctx {
            return Err(Error::ContextFull { n_ctx: self.n_ctx });
        }
        Ok(())
    }

    /// Evaluates `tokens` at the next positions and returns the logits of the
    /// last one. A pending token is not evaluated implicitly: callers that
    /// continue after a generation put it first (see [`Session::take_pending`]).
    /// Tokens go through the layers in batches of [`BATCH`], so each weight
    /// matrix is read once per batch. Never allocates.
    pub fn eval(&mut self, model: &Model, tokens: &[u32], exec: &dyn Executor) -> Result<&[f32]> {
        self.check(model, tokens)?;
        for (i, chunk) in tokens.chunks(BATCH).enumerate() {
            let last = (i + 1) * BATCH >= tokens.len();
            self.batch(model, chunk, if last { Logits::Last } else { Logits::None }, exec)?;
        }
        Ok(&self.s.logits)
    }

    /// Evaluates `tokens` like [`Session::eval`] and writes the logits of
    /// every one of them into `out` (`[tokens.len(), vocab_size]`, row-major):
    /// for perplexity and logit dumps.
    pub fn eval_all(&mut self, model: &Model, tokens: &[u32], exec: &dyn Executor, out: &mut [f32]) -> Result<()> {
        self.check(model, tokens)?;
        let vocab = self.shape.vocab_size;
        if out.len() != tokens.len() * vocab {
            return Err(Error::Usage(alloc::format!("eval_all: {} logits for {} tokens", out.len(), tokens.len())));
        }
        for (chunk, rows) in tokens.chunks(BATCH).zip(out.chunks_mut(BATCH * vocab)) {
            self.batch(model, chunk, Logits::All(rows), exec)?;
        }
        let last = out.len() - vocab;
        self.s.logits.copy_from_slice(&out[last..]);
        Ok(())
    }

    /// Takes the pending token, if any, for the caller to evaluate first.
    pub fn take_pending(&mut self) -> Option<u32> {
        self.pending.take()
    }

    /// One batch of at most BATCH tokens at the next positions.
    fn batch(&mut self, model: &Model, tokens: &[u32], logits: Logits<'_>, exec: &dyn Executor) -> Result<()> {
        let c = &model.config;
        let n = tokens.len();
        let pos0 = self.tokens.len();
        let store = model.store();
        let w = &model.weights;
        let n_ctx = self.n_ctx;
        let f16_cache = self.kv_type == KvType::F16;
        let s = &mut self.s;
        let (dim, kv_dim, q_dim, hd, hid) = (c.dim, c.kv_dim(), c.q_dim(), c.head_dim, c.hidden_dim);

        for (b, &token) in tokens.iter().enumerate() {
            let x = &mut s.x[b * dim..(b + 1) * dim];
            w.token_embd.row_f32(store, token as usize, x)?;
            if let Some(scale) = c.embed_scale {
                x.iter_mut().for_each(|v| *v *= scale);
            }
            if let Some(p) = &w.pos_embd {
                let pe = &mut s.xb2[..dim];
                p.row_f32(store, pos0 + b, pe)?;
                add_into(x, pe);
            }
        }

        let scale = 1.0 / ops::libm_sqrt(hd as f32);
        let layer_len = n_ctx * kv_dim;
        for (li, l) in w.layers.iter().enumerate() {
            for b in 0..n {
                norm(c, &mut s.xn[b * dim..(b + 1) * dim], &s.x[b * dim..(b + 1) * dim], &l.attn_norm);
            }
            let xn = &s.xn[..n * dim];
            matmul(exec, l.wq.weights(store)?, dim, xn, n, &mut s.xq, &mut s.q[..n * q_dim]);
            matmul(exec, l.wk.weights(store)?, dim, xn, n, &mut s.xq, &mut s.k[..n * kv_dim]);
            matmul(exec, l.wv.weights(store)?, dim, xn, n, &mut s.xq, &mut s.v[..n * kv_dim]);
            for b in 0..n {
                let pos = pos0 + b;
                let q = &mut s.q[b * q_dim..(b + 1) * q_dim];
                let k = &mut s.k[b * kv_dim..(b + 1) * kv_dim];
                let v = &mut s.v[b * kv_dim..(b + 1) * kv_dim];
                add_bias(q, &l.bq);
                add_bias(k, &l.bk);
                add_bias(v, &l.bv);
                if c.n_rot > 0 {
                    ops::rope_heads(q, hd, pos, c.n_rot, &model.inv_freq, c.rope_neox);
                    ops::rope_heads(k, hd, pos, c.n_rot, &model.inv_freq, c.rope_neox);
                }
                let at = li * layer_len + pos * kv_dim;
                s.key_cache.store(at, k);
                s.value_cache.store(at, v);
                if f16_cache {
                    // ggml converts the queries to f16 to dot them with f16 keys.
                    q.iter_mut().for_each(|x| *x = ops::round_f16(*x));
                }
            }
            // Causal attention: token b sees positions up to pos0 + b.
            let shape = ops::AttnShape { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: hd, n_ctx };
            let window = c.sliding_window;
            ops::attention_batch(
                exec,
                &s.q[..n * q_dim],
                s.key_cache.layer(li * layer_len..(li + 1) * layer_len),
                s.value_cache.layer(li * layer_len..(li + 1) * layer_len),
                &mut s.att,
                &mut s.att_out[..n * q_dim],
                n,
                shape,
                pos0,
                &|pos| window.map_or(0, |win| (pos + 1).saturating_sub(win)),
                scale,
            );
            matmul(exec, l.wo.weights(store)?, q_dim, &s.att_out[..n * q_dim], n, &mut s.xq, &mut s.xb2[..n * dim]);
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
            ffn(c, l, store, exec, &s.xn[..n * dim], n, &mut s.hb[..n * hid], &mut s.hb2[..n * hid], &mut s.xq)?;
            matmul(exec, l.w_down.weights(store)?, hid, &s.hb[..n * hid], n, &mut s.xq, &mut s.xb2[..n * dim]);
            for b in 0..n {
                add_bias(&mut s.xb2[b * dim..(b + 1) * dim], &l.b_down);
            }
            add_into(&mut s.x[..n * dim], &s.xb2[..n * dim]);
        }
        let out_w = w.output.as_ref().unwrap_or(&w.token_embd).weights(store)?;
        let vocab = c.vocab_size;
        match logits {
            Logits::None => {}
            Logits::Last => {
                let last = n - 1;
                norm(c, &mut s.xn[..dim], &s.x[last * dim..(last + 1) * dim], &w.output_norm);
                ops::matvec(exec, out_w, dim, &s.xn[..dim], &mut s.xq, &mut s.logits);
                add_bias(&mut s.logits, &w.output_bias);
            }
            Logits::All(out) => {
                for b in 0..n {
                    norm(c, &mut s.xn[b * dim..(b + 1) * dim], &s.x[b * dim..(b + 1) * dim], &w.output_norm);
                }
                matmul(exec, out_w, dim, &s.xn[..n * dim], n, &mut s.xq, &mut out[..n * vocab]);
                for b in 0..n {
                    add_bias(&mut out[b * vocab..(b + 1) * vocab], &w.output_bias);
                }
            }
        }
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }
}

/// Which logits a batch computes.
enum Logits<'a> {
    None,
    /// The batch's last token's, into the session's buffer.
    Last,
    /// Every token's, `[n, vocab]`.
    All(&'a mut [f32]),
}
