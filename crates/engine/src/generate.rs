//! The generation loop: feeds a prompt through the KV cache, then samples
//! and streams tokens until EOS, the token limit or the end of the context.

use alloc::string::String;
use alloc::vec::Vec;

use kernels::exec::Executor;

use crate::model::Model;
use crate::sampler::Sampler;
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::Result;

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-sequence (or end-of-turn) token.
    Eos,
    /// The token limit was reached.
    Limit,
    /// The context window is full.
    Context,
    /// The caller asked to stop (Esc / Ctrl-C).
    Interrupted,
}

impl StopReason {
    /// The name used in `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Limit => "limit",
            StopReason::Context => "context",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated ids (the stop token excluded).
    pub ids: Vec<u32>,
    /// Generated text.
    pub text: String,
    pub stop: StopReason,
    /// Position after the last token in the KV cache.
    pub n_past: usize,
    /// The last generated token when it was not fed back into the KV cache
    /// (the loop stopped right after sampling it); the next prompt must start
    /// with it.
    pub pending: Option<u32>,
    /// Prompt tokens evaluated and the time it took.
    pub prompt_tokens: usize,
    pub prompt_us: u64,
    /// Tokens decoded (forward passes after the prompt) and the time it took.
    pub decode_tokens: usize,
    pub decode_us: u64,
}

impl Generation {
    /// Prompt tokens per second.
    pub fn prompt_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_us)
    }
    /// Decoded tokens per second.
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode_us)
    }
}

fn rate(n: usize, us: u64) -> f64 {
    if us == 0 {
        0.0
    } else {
        n as f64 * 1e6 / us as f64
    }
}

/// Hooks the loop calls.
pub trait Hooks {
    /// Monotonic microseconds.
    fn now_us(&mut self) -> u64;
    /// A piece of generated text is ready. Return false to stop.
    fn on_text(&mut self, text: &str) -> bool;
    /// Whether `id` ends the reply (EOS or a template's end-of-turn token).
    fn is_stop(&self, id: u32) -> bool;
}

/// Evaluates `prompt` at positions `n_past..`, then generates up to
/// `max_new` tokens. `prev` is the token before the prompt (for decoding a
/// leading space correctly). `history` receives every token (prompt and
/// generated) for the repetition penalty.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &mut Model,
    tok: &Tokenizer,
    sampler: &mut Sampler,
    exec: &dyn Executor,
    prompt: &[u32],
    n_past: usize,
    max_new: usize,
    history: &mut Vec<u32>,
    hooks: &mut dyn Hooks,
) -> Result<Generation> {
    let n_ctx = model.n_ctx;
    let mut pos = n_past;
    let t0 = hooks.now_us();
    let mut gen = Generation {
        ids: Vec::new(),
        text: String::new(),
        stop: StopReason::Limit,
        n_past,
        pending: None,
        prompt_tokens: 0,
        prompt_us: 0,
        decode_tokens: 0,
        decode_us: 0,
    };
    if prompt.is_empty() {
        return Err(crate::Error::Usage("empty prompt".into()));
    }
    if pos + prompt.len() > n_ctx {
        return Err(crate::Error::ContextFull { n_ctx });
    }
    let vocab = model.config.vocab_size;
    let mut logits = Vec::with_capacity(vocab);
    // Prefill: the prompt goes through the layers in batches.
    let l = model.forward_batch(prompt, pos, exec)?;
    logits.extend_from_slice(l);
    pos += prompt.len();
    history.extend_from_slice(prompt);
    let t1 = hooks.now_us();
    gen.prompt_tokens = prompt.len();
    gen.prompt_us = t1.saturating_sub(t0);
    let mut dec = StreamDecoder::new(prompt.last().copied());
    let mut piece = String::new();
    loop {
        if gen.ids.len() >= max_new {
            gen.stop = StopReason::Limit;
            break;
        }
        let next = sampler.sample(&mut logits, history);
        if hooks.is_stop(next) {
            gen.stop = StopReason::Eos;
            break;
        }
        gen.ids.push(next);
        history.push(next);
        piece.clear();
        dec.push(tok, next, &mut piece);
        gen.text.push_str(&piece);
        let go_on = piece.is_empty() || hooks.on_text(&piece);
        if !go_on {
            gen.stop = StopReason::Interrupted;
            break;
        }
        if gen.ids.len() >= max_new {
            gen.stop = StopReason::Limit;
            break;
        }
        if pos >= n_ctx {
            gen.stop = StopReason::Context;
            break;
        }
        // The sampled token enters the KV cache so the next turn continues from it.
        let l = model.forward(next, pos, exec)?;
        pos += 1;
        gen.decode_tokens += 1;
        logits.clear();
        logits.extend_from_slice(l);
    }
    piece.clear();
    dec.finish(&mut piece);
    if !piece.is_empty() {
        gen.text.push_str(&piece);
        hooks.on_text(&piece);
    }
    gen.decode_us = hooks.now_us().saturating_sub(t1);
    gen.n_past = pos;
    // Every generated token but a final one that hit a stop condition has
    // been evaluated.
    let evaluated = pos - n_past - prompt.len();
    if gen.ids.len() > evaluated {
        gen.pending = gen.ids.last().copied();
    }
    Ok(gen)
}
