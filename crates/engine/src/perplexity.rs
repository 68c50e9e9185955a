//! Perplexity over a text, computed the way llama.cpp's `llama-perplexity`
//! does, so figures can be compared with it (and between quantizations):
//!
//! - the text is tokenized once (with BOS if the vocabulary adds one);
//! - it is cut into `n_chunks` chunks of `n_ctx` tokens (at most as many as
//!   fit, and at least two chunks' worth of tokens are needed);
//! - each chunk is evaluated from an empty KV cache, in batches of
//!   `n_batch`, with its first token replaced by BOS when the vocabulary adds
//!   one;
//! - only the second half of each chunk is scored: the logits at position
//!   `j` (for `j` from `n_ctx / 2` to `n_ctx - 2`) against the token at
//!   `j + 1`, as `-log softmax`;
//! - PPL = exp(mean NLL), and its error `ppl * sqrt((E[nll²] - E[nll]²) / (count - 1))`.

use alloc::vec::Vec;

use kernels::exec::Executor;
use kernels::ops;

use crate::model::{Model, Session};
use crate::{Error, Result};

/// Settings of a perplexity run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PplOptions {
    /// Tokens per chunk (llama.cpp `-c`).
    pub n_ctx: usize,
    /// Chunks to score at most (llama.cpp `--chunks`; `None` = all).
    pub n_chunks: Option<usize>,
    /// Tokens evaluated together (llama.cpp `-b`).
    pub n_batch: usize,
}

/// The result after some chunks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ppl {
    /// Chunks scored.
    pub chunks: usize,
    /// Tokens scored.
    pub count: usize,
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Its standard error (0 until two tokens are scored).
    pub ppl_err: f64,
}

/// Runs the computation over `tokens` (the tokenized text). `bos` is the
/// BOS id when the vocabulary adds one. `on_chunk` gets the running
/// estimate after every chunk. The session's memory is reused (cleared per
/// chunk); one chunk's logits (`n_ctx * vocab` floats) are allocated once.
pub fn perplexity(
    model: &Model,
    session: &mut Session,
    tokens: &[u32],
    bos: Option<u32>,
    opts: &PplOptions,
    exec: &dyn Executor,
    on_chunk: &mut dyn FnMut(&Ppl),
) -> Result<Ppl> {
    let n_ctx = opts.n_ctx;
    if n_ctx < 4 {
        return Err(Error::Usage(alloc::format!("the chunk size must be at least 4 tokens, not {n_ctx}")));
    }
    if n_ctx > session.n_ctx() {
        return Err(Error::Usage(alloc::format!(
            "chunks of {n_ctx} tokens do not fit a context of {} (the model's or the session's)",
            session.n_ctx()
        )));
    }
    if opts.n_batch == 0 {
        return Err(Error::Usage("the batch size must be at least 1".into()));
    }
    if tokens.len() < 2 * n_ctx {
        return Err(Error::Usage(alloc::format!(
            "the text has {} tokens; chunks of {n_ctx} need at least {} (two chunks)",
            tokens.len(),
            2 * n_ctx
        )));
    }
    let max_chunks = tokens.len() / n_ctx;
    let n_chunks = opts.n_chunks.map_or(max_chunks, |c| c.min(max_chunks));
    if n_chunks == 0 {
        return Err(Error::Usage("no chunk to score (--chunks 0)".into()));
    }
    let vocab = model.config.vocab_size;
    let len = n_ctx.checked_mul(vocab).ok_or_else(|| Error::overflow("chunk logits"))?;
    let mut logits: Vec<f32> = Vec::new();
    logits
        .try_reserve_exact(len)
        .map_err(|_| Error::OutOfMemory { what: "chunk logits".into(), bytes: len as u64 * 4 })?;
    logits.resize(len, 0.0);
    let mut chunk: Vec<u32> = Vec::with_capacity(n_ctx);
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut result = Ppl { chunks: 0, count: 0, ppl: 0.0, ppl_err: 0.0 };
    for i in 0..n_chunks {
        let start = i * n_ctx;
        chunk.clear();
        chunk.extend_from_slice(&tokens[start..start + n_ctx]);
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.clear();
        for (b, rows) in chunk.chunks(opts.n_batch).zip(logits.chunks_mut(opts.n_batch * vocab)) {
            session.eval_all(model, b, exec, rows)?;
        }
        for j in first..n_ctx - 1 {
            let row = &logits[j * vocab..(j + 1) * vocab];
            let target = tokens[start + j + 1] as usize;
            let v = -log_softmax(row, target);
            nll += v;
            nll2 += v * v;
        }
        count += n_ctx - first - 1;
        result = estimate(nll, nll2, count, i + 1);
        on_chunk(&result);
    }
    Ok(result)
}

/// log softmax(row)[target], with the sum of exponentials in f64.
fn log_softmax(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&l| f64::from(ops::exp(l - max))).sum();
    f64::from(row[target] - max) - ops::ln_f64(sum)
}

fn estimate(nll: f64, nll2: f64, count: usize, chunks: usize) -> Ppl {
    let n = count as f64;
    let mean = nll / n;
    let ppl = ops::exp_f64(mean);
    let var = nll2 / n - mean * mean;
    let ppl_err = if var > 0.0 && count > 1 { ppl * ops::exp_f64(0.5 * ops::ln_f64(var / (n - 1.0))) } else { 0.0 };
    Ppl { chunks, count, ppl, ppl_err }
}
