//! The generation loop: feeds a prompt through the KV cache, then samples
//! and streams tokens until EOS, the token limit or the end of the context.

use alloc::string::String;
use alloc::vec::Vec;

use kernels::exec::Executor;

use crate::model::{Model, Session};
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

impl Session {
    /// Evaluates `prompt` at the session's next positions (after the pending
    /// token, if a previous generation left one), then generates up to
    /// `max_new` tokens. The sampler sees every token in the KV cache (for
    /// the repetition penalty). Afterwards the session holds the prompt and
    /// the generated tokens; a last token that hit a stop condition is left
    /// pending (see [`Generation::pending`]). Without a tokenizer the text
    /// stays empty (token ids need none). The forward passes allocate
    /// nothing; only the returned ids and text grow.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &mut self,
        model: &Model,
        tok: Option<&Tokenizer>,
        sampler: &mut Sampler,
        exec: &dyn Executor,
        prompt: &[u32],
        max_new: usize,
        hooks: &mut dyn Hooks,
    ) -> Result<Generation> {
        let n_ctx = self.n_ctx();
        let n_past = self.pos();
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
        let pending = self.pending();
        let n_prompt = prompt.len() + usize::from(pending.is_some());
        if n_prompt == 0 {
            return Err(crate::Error::Usage("empty prompt".into()));
        }
        if n_past + n_prompt > n_ctx {
            return Err(crate::Error::ContextFull { n_ctx });
        }
        // Prefill: the prompt goes through the layers in batches.
        if let Some(p) = pending {
            // Once per call: the pending token and the prompt in one batch.
            let mut all = Vec::with_capacity(n_prompt);
            all.push(p);
            all.extend_from_slice(prompt);
            self.eval(model, &all, exec)?;
            self.set_pending(None);
        } else {
            self.eval(model, prompt, exec)?;
        }
        let t1 = hooks.now_us();
        gen.prompt_tokens = n_prompt;
        gen.prompt_us = t1.saturating_sub(t0);
        let mut dec = StreamDecoder::new(self.tokens().last().copied());
        let mut piece = String::new();
        loop {
            if gen.ids.len() >= max_new {
                gen.stop = StopReason::Limit;
                break;
            }
            let (logits, history) = self.logits_and_tokens();
            let next = sampler.sample(logits, history);
            if hooks.is_stop(next) {
                gen.stop = StopReason::Eos;
                break;
            }
            gen.ids.push(next);
            piece.clear();
            if let Some(tok) = tok {
                dec.push(tok, next, &mut piece);
            }
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
            if self.pos() >= n_ctx {
                gen.stop = StopReason::Context;
                break;
            }
            // The sampled token enters the KV cache so the next turn continues from it.
            self.eval(model, &[next], exec)?;
            gen.decode_tokens += 1;
        }
        piece.clear();
        dec.finish(&mut piece);
        if !piece.is_empty() {
            gen.text.push_str(&piece);
            hooks.on_text(&piece);
        }
        gen.decode_us = hooks.now_us().saturating_sub(t1);
        gen.n_past = self.pos();
        // Every generated token but a final one that hit a stop condition has
        // been evaluated.
        let evaluated = gen.n_past - n_past - n_prompt;
        if gen.ids.len() > evaluated {
            gen.pending = gen.ids.last().copied();
            self.set_pending(gen.pending);
        }
        Ok(gen)
    }
}
