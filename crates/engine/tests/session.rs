//! Sessions: many conversations on one immutable model.

mod common;

use common::*;
use engine::generate::{Hooks, StopReason};
use engine::load::load;
use engine::model::{Model, Session};
use engine::sampler::{Sampler, SamplerConfig};
use kernels::exec::Serial;

fn stories() -> (Model, engine::tokenizer::Tokenizer) {
    load(blob(read("testdata/stories260K/stories260K.bin")), Some(&read("testdata/stories260K/tok512.bin"))).unwrap()
}

fn assert_sync<T: Sync + Send>() {}

#[test]
fn model_is_shared_between_threads() {
    assert_sync::<Model>();
}

/// Greedy run, one token at a time, recording every step's logits.
fn run_alone(m: &Model, prompt: &[u32], steps: usize) -> Vec<Vec<f32>> {
    let mut s = Session::new(m, 512).unwrap();
    let mut out = vec![s.eval(m, prompt, &Serial).unwrap().to_vec()];
    for _ in 0..steps {
        let next = argmax(out.last().unwrap());
        out.push(s.eval(m, &[next], &Serial).unwrap().to_vec());
    }
    out
}

#[test]
fn two_interleaved_sessions_equal_two_separate_runs() {
    let (m, t) = stories();
    let pa = t.encode("Once upon a time, there was a little girl", true);
    let pb = t.encode("The dog ran to the park and", true);
    let want_a = run_alone(&m, &pa, 20);
    let want_b = run_alone(&m, &pb, 20);
    assert_ne!(want_a[0], want_b[0]);

    let mut a = Session::new(&m, 512).unwrap();
    let mut b = Session::new(&m, 512).unwrap();
    let mut got_a = vec![a.eval(&m, &pa, &Serial).unwrap().to_vec()];
    let mut got_b = vec![b.eval(&m, &pb, &Serial).unwrap().to_vec()];
    for _ in 0..20 {
        // Alternate which session steps first.
        let na = argmax(got_a.last().unwrap());
        got_a.push(a.eval(&m, &[na], &Serial).unwrap().to_vec());
        let nb = argmax(got_b.last().unwrap());
        got_b.push(b.eval(&m, &[nb], &Serial).unwrap().to_vec());
    }
    assert_eq!(got_a, want_a, "session A's logits are exactly those of a run alone");
    assert_eq!(got_b, want_b, "session B's logits are exactly those of a run alone");
    assert_eq!(a.pos(), pa.len() + 20);
    assert_eq!(b.tokens()[..pb.len()], pb[..]);

    // The same on two threads at once, sharing the model.
    let (ta, tb) = std::thread::scope(|sc| {
        let ha = sc.spawn(|| run_alone(&m, &pa, 20));
        let hb = sc.spawn(|| run_alone(&m, &pb, 20));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(ta, want_a);
    assert_eq!(tb, want_b);
}

#[test]
fn eval_all_gives_every_positions_logits() {
    let (m, t) = stories();
    let ids = t.encode(&"Lily and Ben played in the garden. ".repeat(4), true);
    assert!(ids.len() > 40, "spans two batches");
    let vocab = m.config.vocab_size;
    let mut all = vec![0.0; ids.len() * vocab];
    let mut s = Session::new(&m, 512).unwrap();
    s.eval_all(&m, &ids, &Serial, &mut all).unwrap();
    let mut one = Session::new(&m, 512).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        let l = one.eval(&m, &[id], &Serial).unwrap();
        let max = l.iter().zip(&all[i * vocab..(i + 1) * vocab]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max < 1e-4, "position {i}: {max}");
    }
    assert_eq!(s.logits(), one.logits());
    // A wrongly sized output is an error, not a panic.
    let mut small = vec![0.0; vocab];
    assert!(Session::new(&m, 512).unwrap().eval_all(&m, &ids, &Serial, &mut small).is_err());
}

struct Quiet;
impl Hooks for Quiet {
    fn now_us(&mut self) -> u64 {
        0
    }
    fn on_text(&mut self, _: &str) -> bool {
        true
    }
    fn is_stop(&self, id: u32) -> bool {
        id == 2
    }
}

#[test]
fn generate_continues_from_the_pending_token_and_truncate_rewinds() {
    let (m, t) = stories();
    let greedy = || Sampler::new(SamplerConfig { temperature: 0.0, ..Default::default() }, m.config.vocab_size);
    let prompt = t.encode("Once upon a time", true);
    // One long generation ...
    let mut s = Session::new(&m, 512).unwrap();
    let whole = s.generate(&m, Some(&t), &mut greedy(), &Serial, &prompt, 12, &mut Quiet).unwrap();
    assert_eq!(whole.stop, StopReason::Limit);
    // ... equals two shorter ones on the same session: the first leaves its
    // last token pending and the second starts with it.
    let mut s2 = Session::new(&m, 512).unwrap();
    let g1 = s2.generate(&m, Some(&t), &mut greedy(), &Serial, &prompt, 5, &mut Quiet).unwrap();
    assert_eq!(g1.pending, Some(g1.ids[4]));
    assert_eq!(s2.pending(), g1.pending);
    assert_eq!(s2.pos(), prompt.len() + 4);
    let g2 = s2.generate(&m, Some(&t), &mut greedy(), &Serial, &[], 7, &mut Quiet).unwrap();
    let mut joined = g1.ids.clone();
    joined.extend(&g2.ids);
    assert_eq!(joined, whole.ids);
    // Rewinding to the prompt and generating again gives the same reply.
    s2.truncate(prompt.len() - 1);
    let again = s2.generate(&m, Some(&t), &mut greedy(), &Serial, &prompt[prompt.len() - 1..], 12, &mut Quiet).unwrap();
    assert_eq!(again.ids, whole.ids);
    // A full context stops generation with `Context`.
    let mut tiny = Session::new(&m, prompt.len() + 3).unwrap();
    let g = tiny.generate(&m, Some(&t), &mut greedy(), &Serial, &prompt, 50, &mut Quiet).unwrap();
    assert_eq!(g.stop, StopReason::Context);
    assert_eq!(tiny.pos(), tiny.n_ctx());
}

#[test]
fn f16_kv_cache_halves_the_cache_and_stays_close() {
    let (m, t) = stories();
    let ids = t.encode("Once upon a time, there was a little girl named Lily. She loved to play", true);
    let mut a = Session::new(&m, 512).unwrap();
    let mut b = engine::model::Session::with_kv_type(&m, 512, engine::model::KvType::F16).unwrap();
    assert_eq!(b.kv_type().name(), "f16");
    let kv_bytes = 2 * m.config.n_layers as u64 * 512 * m.config.kv_dim() as u64 * 4;
    assert_eq!(a.memory_bytes() - b.memory_bytes(), kv_bytes / 2, "f16 keys and values take half");
    let (mut worst, mut agree) = (0.0f32, 0);
    for &id in &ids {
        let la = a.eval(&m, &[id], &Serial).unwrap().to_vec();
        let lb = b.eval(&m, &[id], &Serial).unwrap();
        assert_ne!(la, lb, "the f16 path rounds");
        let max = la.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        let err = la.iter().zip(lb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        worst = worst.max(err / max);
        agree += usize::from(argmax(&la) == argmax(lb));
    }
    assert!(worst < 0.01, "f16 cache moves the logits by {worst} of the largest");
    assert!(agree * 10 >= ids.len() * 9, "{agree}/{}", ids.len());
}
