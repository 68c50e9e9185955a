//! Turning logits into the next token: greedy, temperature, top-k, top-p,
//! min-p and repetition penalty, with a seeded RNG; all combinable.

use alloc::vec::Vec;

use kernels::ops;

/// Sampling settings. Defaults are greedy-free sampling at temperature 0.8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax, lowest id on ties).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1.0 = off).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely (0 = off).
    pub min_p: f32,
    /// Penalise tokens seen in the last `repeat_last_n` (1.0 = off).
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 42,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() }
    }

    /// Checks every setting against its [`Limit`]: the one validation the
    /// command-line flags, the chat's slash commands and the settings file
    /// share.
    pub fn validate(&self) -> crate::Result<()> {
        TEMPERATURE.check(self.temperature)?;
        TOP_P.check(self.top_p)?;
        MIN_P.check(self.min_p)?;
        REPEAT_PENALTY.check(self.repeat_penalty)?;
        if self.top_k > MAX_TOP_K {
            return Err(crate::Error::invalid(
                "top_k",
                alloc::format!("must be between 0 (off) and {MAX_TOP_K} (got {})", self.top_k),
            ));
        }
        Ok(())
    }
}

/// The accepted range of a floating-point sampling setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub name: &'static str,
    pub min: f32,
    /// Whether `min` itself is excluded.
    pub min_excluded: bool,
    pub max: f32,
}

impl Limit {
    /// `v` if it is a number in range; an error naming the setting and the
    /// range otherwise (NaN and infinities included).
    pub fn check(&self, v: f32) -> crate::Result<f32> {
        let above_min = if self.min_excluded { v > self.min } else { v >= self.min };
        if above_min && v <= self.max {
            return Ok(v);
        }
        let open = if self.min_excluded { "(" } else { "[" };
        Err(crate::Error::invalid(self.name, alloc::format!("must be in {open}{}, {}] (got {v})", self.min, self.max)))
    }
}

/// 0 = greedy; 2 is OpenAI's upper bound, past which text is noise.
pub const TEMPERATURE: Limit = Limit { name: "temperature", min: 0.0, min_excluded: false, max: 2.0 };
/// 1 = off.
pub const TOP_P: Limit = Limit { name: "top_p", min: 0.0, min_excluded: true, max: 1.0 };
/// 0 = off.
pub const MIN_P: Limit = Limit { name: "min_p", min: 0.0, min_excluded: false, max: 1.0 };
/// 1 = off.
pub const REPEAT_PENALTY: Limit = Limit { name: "repeat_penalty", min: 0.0, min_excluded: true, max: 10.0 };
/// The largest top_k (0 = off).
pub const MAX_TOP_K: usize = 1_000_000;

/// xorshift64* (as llama2.c's run.c).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is remapped, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }
    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / 16_777_216.0
    }
}

/// A sampler with its scratch space allocated once.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub config: SamplerConfig,
    rng: Rng,
    cand: Vec<(f32, u32)>,
}

/// Index of the largest value, lowest index on ties; 0 for an empty slice.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    /// A sampler for a vocabulary of `vocab` tokens.
    pub fn new(config: SamplerConfig, vocab: usize) -> Self {
        Sampler { config, rng: Rng::new(config.seed), cand: Vec::with_capacity(vocab) }
    }

    /// Restarts the RNG from a seed.
    pub fn reseed(&mut self, seed: u64) {
        self.config.seed = seed;
        self.rng = Rng::new(seed);
    }

    /// Picks the next token. `logits` is modified (penalties applied);
    /// `recent` is the token history for the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], recent: &[u32]) -> u32 {
        let c = self.config;
        if c.repeat_penalty != 1.0 && c.repeat_penalty > 0.0 {
            let window = &recent[recent.len().saturating_sub(c.repeat_last_n)..];
            for (i, &t) in window.iter().enumerate() {
                // Each distinct id is penalised once, however often it occurred.
                if window[..i].contains(&t) {
                    continue;
                }
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / c.repeat_penalty } else { *l * c.repeat_penalty };
                }
            }
        }
        if c.temperature.is_nan() || c.temperature <= 0.0 || logits.is_empty() {
            return argmax(logits);
        }
        // Candidates sorted by logit, best first (ties: lower id first).
        self.cand.clear();
        self.cand.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        let by_logit = |a: &(f32, u32), b: &(f32, u32)| {
            b.0.partial_cmp(&a.0).unwrap_or(core::cmp::Ordering::Equal).then(a.1.cmp(&b.1))
        };
        if c.top_k > 0 && c.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(c.top_k - 1, by_logit);
            self.cand.truncate(c.top_k);
        }
        self.cand.sort_unstable_by(by_logit);
        // Softmax with temperature.
        let max = self.cand[0].0;
        let mut sum = 0.0f32;
        for e in self.cand.iter_mut() {
            e.0 = ops::exp((e.0 - max) / c.temperature);
            sum += e.0;
        }
        for e in self.cand.iter_mut() {
            e.0 /= sum;
        }
        // min-p relative to the best.
        if c.min_p > 0.0 {
            let floor = self.cand[0].0 * c.min_p;
            let keep = self.cand.iter().take_while(|e| e.0 >= floor).count().max(1);
            self.cand.truncate(keep);
        }
        // top-p: smallest prefix reaching p.
        if c.top_p < 1.0 && c.top_p > 0.0 {
            let mut acc = 0.0;
            let mut keep = self.cand.len();
            for (i, e) in self.cand.iter().enumerate() {
                acc += e.0;
                if acc >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep);
        }
        let total: f32 = self.cand.iter().map(|e| e.0).sum();
        let r = self.rng.next_f32() * total;
        let mut acc = 0.0;
        for e in &self.cand {
            acc += e.0;
            if r < acc {
                return e.1;
            }
        }
        self.cand.last().map_or(0, |e| e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn greedy_picks_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplerConfig::greedy(), 4);
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, 2.0], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let cfg = SamplerConfig { temperature: 5.0, top_k: 1, ..Default::default() };
        let mut s = Sampler::new(cfg, 5);
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [0.1, 0.2, 2.0, 0.3, 1.9], &[]), 2);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities ~ [0.6, 0.3, 0.1 spread]: top_p 0.5 keeps only the best.
        let logits = [0.0f32, (0.5f32).ln(), -5.0, -5.0, -5.0];
        let cfg = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 0.5, min_p: 0.0, ..Default::default() };
        let mut s = Sampler::new(cfg, 5);
        for _ in 0..100 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 0);
        }
        let cfg = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.4, ..Default::default() };
        let mut s = Sampler::new(cfg, 5);
        let mut seen = [0usize; 5];
        for _ in 0..400 {
            seen[s.sample(&mut logits.clone(), &[]) as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0 && seen[2..].iter().all(|&n| n == 0), "{seen:?}");
    }

    #[test]
    fn sampling_follows_the_distribution_and_is_seeded() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let cfg = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 7, ..Default::default() };
        let run = || {
            let mut s = Sampler::new(cfg, 2);
            (0..4000).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same tokens");
        let ones = a.iter().filter(|&&t| t == 1).count() as f32 / 4000.0;
        assert!((ones - 0.75).abs() < 0.03, "{ones}");
    }

    #[test]
    fn repetition_penalty_changes_the_greedy_choice() {
        let cfg = SamplerConfig { repeat_penalty: 2.0, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(cfg, 3);
        assert_eq!(s.sample(&mut [1.0, 1.5, -1.0], &[1]), 0);
        let mut l = vec![1.0, -1.0, 0.5];
        s.sample(&mut l, &[1]);
        assert_eq!(l[1], -2.0);
    }
}
