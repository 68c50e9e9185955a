//! A templated multi-turn chat on a random-weight model with the real Llama-2
//! vocabulary and TinyLlama's zephyr template.

#[path = "../../engine/tests/common/mod.rs"]
mod common;
use common::*;

use engine::gguf::Value;
use engine::load::load;
use engine::template::{Message, Template};
use kernels::exec::Serial;
use repl::{Chat, ChatSettings};
use repl::{Console, Key};

struct Quiet(String, u64);
impl Console for Quiet {
    fn write_str(&mut self, s: &str) {
        self.0.push_str(s);
    }
    fn read_key(&mut self) -> Option<Key> {
        None
    }
    fn poll_key(&mut self) -> Option<Key> {
        None
    }
    fn now_us(&mut self) -> u64 {
        self.1 += 1;
        self.1
    }
}

fn zephyr_template() -> String {
    json("testdata/expected/chat-templates.json")["zephyr"]["template"].as_str().unwrap().to_string()
}

fn model_file() -> Vec<u8> {
    random_llama_gguf(
        "testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf",
        64,
        96,
        2,
        4,
        2,
        &[("tokenizer.chat_template", Value::String(zephyr_template()))],
    )
}

fn chat(bytes: Vec<u8>, n_ctx: usize) -> Chat {
    let (m, t) = load(blob(bytes), None).unwrap();
    let mut s = ChatSettings { temperature: 0.0, max_tokens: 6, ..Default::default() };
    s.system_prompt = Some("You are a friendly firmware assistant.".into());
    Chat::new(m, t, s, "random".into(), n_ctx).unwrap()
}

#[test]
fn template_is_detected_and_turns_follow_it() {
    let mut c = chat(model_file(), 256);
    assert_eq!(c.template, Template::Zephyr);
    let mut con = Quiet(String::new(), 0);
    c.turn(&mut con, &Serial, "Hello!").unwrap();
    // The first turn's prompt is exactly what transformers feeds for
    // [system, user] with the generation prompt (reference ids).
    let cases = json("testdata/expected/chat-templates.json");
    let want = ids(&cases["zephyr"]["cases"]["system_and_turn"]["ids"]);
    let got = c.history_ids();
    assert_eq!(&got[..want.len()], &want[..]);
    assert_eq!(&got[want.len()..], &c.turns[0].reply_ids[..]);
}

#[test]
fn kv_cache_after_three_turns_equals_a_fresh_evaluation() {
    let bytes = model_file();
    let mut c = chat(bytes.clone(), 256);
    let mut con = Quiet(String::new(), 0);
    for u in ["Name a colour.", "Another one, in French: é?", "Thanks  \n bye"] {
        c.turn(&mut con, &Serial, u).unwrap();
    }
    let all = c.history_ids();
    let n = c.context_len();
    assert!(n + 1 >= all.len(), "{n} {}", all.len());
    // The template structure: user turns and closings as the zephyr template renders them.
    let tok = &c.tokenizer;
    let enc = engine::template::ChatEncoder::new(tok, Template::Zephyr);
    let sys = "You are a friendly firmware assistant.";
    let mut expect = enc.turn(tok, Some(sys), true, "Name a colour.");
    expect.extend_from_slice(&c.turns[0].reply_ids);
    expect.extend(enc.after_reply(tok));
    expect.extend(enc.turn(tok, None, false, "Another one, in French: é?"));
    assert_eq!(&all[..expect.len()], &expect[..]);
    let msgs = [Message::system(sys), Message::user("Name a colour.")];
    let first = engine::template::tokenize_conversation(tok, Template::Zephyr, &msgs, true);
    assert_eq!(&all[..first.len()], &first[..]);
    // Same next-token logits from the chat's cache and from a fresh model.
    let probe = 13u32;
    let cached = c.session.eval(&c.model, &[probe], &Serial).unwrap().to_vec();
    let (fresh, _) = load(blob(bytes), None).unwrap();
    let mut s = engine::model::Session::new(&fresh, 256).unwrap();
    s.eval(&fresh, &all[..n], &Serial).unwrap();
    let want = s.eval(&fresh, &[probe], &Serial).unwrap();
    let max = cached.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-4, "{max}");
}

#[test]
fn overflow_keeps_the_system_prompt_with_a_template() {
    let mut c = chat(model_file(), 96);
    let mut con = Quiet(String::new(), 0);
    for i in 0..8 {
        c.turn(&mut con, &Serial, &format!("Tell me about firmware number {i}, please.")).unwrap();
        assert!(c.context_len() <= 96);
    }
    assert!(con.0.contains("oldest turn"));
    let all = c.history_ids();
    let tok = &c.tokenizer;
    let enc = engine::template::ChatEncoder::new(tok, Template::Zephyr);
    let start = enc.turn(tok, Some("You are a friendly firmware assistant."), true, &c.turns[0].user);
    assert_eq!(&all[..start.len()], &start[..], "the kept conversation opens with the system prompt");
}
