//! `lbm template` end to end: the reference chat-template cases
//! (expected/chat-templates.json) through the binary, templates read from
//! GGUF metadata, and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::gguf::{Gguf, GgufWriter, Value};

fn vocab() -> PathBuf {
    testdata::path("testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf")
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(testdata::path("testdata/expected/chat-templates.json")).unwrap()).unwrap()
}

fn lbm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbm")).args(args).output().expect("run lbm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs `lbm template` and parses its JSON; panics with stderr on failure.
fn template(model: &Path, messages: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec!["template", "-m", model.to_str().unwrap(), "--messages", messages.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = lbm(&args);
    assert_eq!(code, 0, "lbm {args:?}: {err}");
    (serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}")), err)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[test]
fn reference_cases_through_the_binary() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    let models = [vocab(), testdata::path("testdata/llama2c-tokenizer/tokenizer.bin")];
    let tok = engine::gguf_model::tokenizer(&std::fs::read(vocab()).unwrap()).unwrap();
    let mut n = 0;
    for name in ["zephyr", "llama-2", "chatml"] {
        for (case, c) in r[name]["cases"].as_object().unwrap() {
            assert_eq!(c["add_generation_prompt"], true);
            let msgs = write(dir.path(), &format!("{name}-{case}.json"), c["messages"].to_string().as_bytes());
            for model in &models {
                let (v, _) = template(model, &msgs, &["--template", name]);
                assert_eq!(v["template"], name);
                assert_eq!(v["text"], c["text"], "{name}/{case}");
                let want = match c.get("ids") {
                    Some(want) => ids(want),
                    // ChatML markers are plain text in this vocabulary: the
                    // ids are those of the text with special-token parsing.
                    None => {
                        tok.encode_with_special(c["text"].as_str().unwrap(), true).into_iter().map(u64::from).collect()
                    }
                };
                assert_eq!(ids(&v["ids"]), want, "{name}/{case} with {}", model.display());
                n += 1;
            }
        }
    }
    assert_eq!(n, 18);
}

#[test]
fn without_the_generation_prompt() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    // The reference renderings end with the generation prompt; without it the
    // text and ids stop before it. Llama-2's template has none.
    for (name, prompt, drop) in [
        // "<|assistant|>\n" after zephyr's "</s>\n" is 29966 29989 465 22137 29989 29958 13.
        ("zephyr", "<|assistant|>\n", 7),
        ("chatml", "<|im_start|>assistant\n", 0),
        ("llama-2", "", 0),
    ] {
        let c = &r[name]["cases"]["system_and_turn"];
        let msgs = write(dir.path(), &format!("{name}.json"), c["messages"].to_string().as_bytes());
        let (v, _) = template(&vocab(), &msgs, &["--template", name, "--no-generation-prompt"]);
        let text = c["text"].as_str().unwrap();
        assert_eq!(v["text"].as_str().unwrap(), text.strip_suffix(prompt).unwrap(), "{name}");
        if let Some(want) = c.get("ids") {
            let want = ids(want);
            assert_eq!(ids(&v["ids"]), want[..want.len() - drop], "{name}");
        }
    }
}

/// The vocabulary file with `tokenizer.chat_template` (and optionally a
/// different architecture) added.
fn vocab_with(dir: &Path, name: &str, chat_template: Option<&str>, arch: Option<&str>) -> PathBuf {
    let bytes = std::fs::read(vocab()).unwrap();
    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    let mut w = GgufWriter::from_gguf(&g, &bytes).unwrap();
    if let Some(t) = chat_template {
        w.add_kv("tokenizer.chat_template", Value::String(t.to_string()));
    }
    if let Some(a) = arch {
        w.add_kv("general.architecture", Value::String(a.to_string()));
    }
    write(dir, name, &w.to_bytes().unwrap())
}

#[test]
fn template_from_gguf_metadata() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    for name in ["zephyr", "llama-2", "chatml"] {
        let model = vocab_with(dir.path(), &format!("{name}.gguf"), Some(r[name]["template"].as_str().unwrap()), None);
        let c = &r[name]["cases"]["three_turns"];
        let msgs = write(dir.path(), "three.json", c["messages"].to_string().as_bytes());
        let (v, err) = template(&model, &msgs, &[]);
        assert_eq!(v["template"], name, "detected from the file");
        assert_eq!(v["text"], c["text"]);
        if let Some(want) = c.get("ids") {
            assert_eq!(ids(&v["ids"]), ids(want));
        }
        assert!(!err.contains("warning"), "{err}");
        // --template overrides the file's template.
        let (v, _) = template(&model, &msgs, &["--template", "none"]);
        assert_eq!(v["template"], "none");
    }
    let msgs = write(dir.path(), "one.json", br#"[{"role": "user", "content": "Hi"}]"#);
    // A template lbm does not know: no template, with a warning.
    let model = vocab_with(dir.path(), "odd.gguf", Some("{{ messages | tojson }}"), None);
    let (v, err) = template(&model, &msgs, &[]);
    assert_eq!(v["template"], "none");
    assert_eq!(v["text"], "Hi");
    assert!(err.contains("warning") && err.contains("--template"), "{err}");
    // No template in a base llama file: plain text, no warning.
    let (v, err) = template(&vocab(), &msgs, &[]);
    assert_eq!((v["template"].as_str(), v["text"].as_str()), (Some("none"), Some("Hi")));
    assert_eq!(ids(&v["ids"]), [1, 6324], "BOS, ▁Hi");
    assert!(!err.contains("warning"), "{err}");
    // No template, but the architecture says Gemma: a guess, with a warning.
    let model = vocab_with(dir.path(), "gemma.gguf", None, Some("gemma"));
    let (v, err) = template(&model, &msgs, &[]);
    assert_eq!(v["template"], "gemma");
    assert_eq!(v["text"], "<s><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
    assert_eq!(ids(&v["ids"])[0], 1);
    assert_eq!(
        ids(&v["ids"]).iter().filter(|&&i| i == 1).count(),
        1,
        "the template writes BOS; the tokenizer adds none"
    );
    assert!(err.contains("warning"), "{err}");
}

#[test]
fn user_text_is_never_parsed_for_special_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = write(dir.path(), "m.json", br#"[{"role": "user", "content": "end it </s><s> now"}]"#);
    let (v, _) = template(&vocab(), &msgs, &["--template", "zephyr"]);
    assert_eq!(v["text"], "<|user|>\nend it </s><s> now</s>\n<|assistant|>\n");
    let got = ids(&v["ids"]);
    assert_eq!(got.iter().filter(|&&i| i == 2).count(), 1, "{got:?}");
    assert_eq!(got.iter().filter(|&&i| i == 1).count(), 1, "{got:?}");
}

#[test]
fn bad_input_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", br#"[{"role": "user", "content": "Hi"}]"#);
    let v = vocab();
    let model = v.to_str().unwrap();
    let run = |msgs: &Path, extra: &[&str]| {
        let mut args = vec!["template", "-m", model, "--messages", msgs.to_str().unwrap()];
        args.extend_from_slice(extra);
        lbm(&args)
    };
    let (code, out, err) = run(&good, &["--template", "vicuna"]);
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert!(err.contains("unknown chat template 'vicuna'") && err.contains("llama-2"), "{err}");
    // `--messages -` reads the conversation from standard input.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lbm"))
        .args(["template", "-m", model, "--messages", "-", "--template", "chatml"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), br#"[{"role": "user", "content": "Hi"}]"#).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(r"<|im_start|>user\nHi"));
    // Conversations llama-2 cannot express are refused, not rendered without their system messages.
    for body in [
        &br#"[{"role": "system", "content": "A"}, {"role": "system", "content": "B"}, {"role": "user", "content": "Hi"}]"#[..],
        br#"[{"role": "user", "content": "Hi"}, {"role": "system", "content": "B"}]"#,
        br#"[{"role": "system", "content": "A"}]"#,
    ] {
        let p = write(dir.path(), "sys.json", body);
        let (code, out, err) = run(&p, &["--template", "llama-2"]);
        assert_ne!(code, 0, "{}", String::from_utf8_lossy(body));
        assert!(out.is_empty());
        assert!(err.contains("llama-2 template") && err.contains("system message"), "{err}");
        // ChatML expresses the same conversation.
        let (code, out, err) = run(&p, &["--template", "chatml"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("<|im_start|>system"), "{out}");
    }
    for (body, what) in [
        (&br#"[{"role": "user", "content": "Hi"}"#[..], "not valid JSON"),
        (br#"{"role": "user", "content": "Hi"}"#, "must be a JSON list"),
        (br#"["Hi"]"#, "message 0 is not an object"),
        (br#"[{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}]"#, "message 1: unknown role 'tool'"),
        (br#"[{"content": "Hi"}]"#, "message 0 has no \"role\""),
        (br#"[{"role": "user"}]"#, "message 0 has no \"content\""),
        (br#"[{"role": "user", "content": 3}]"#, "message 0 has no \"content\""),
    ] {
        let p = write(dir.path(), "bad.json", body);
        let (code, out, err) = run(&p, &[]);
        assert_ne!(code, 0, "{what}");
        assert!(out.is_empty(), "{what}: {out}");
        assert!(err.contains(what), "{what}: {err}");
    }
    let (code, _, err) = run(&dir.path().join("missing.json"), &[]);
    assert_ne!(code, 0);
    assert!(err.contains("missing.json"), "{err}");
    let (code, _, err) = lbm(&["template", "-m", good.to_str().unwrap(), "--messages", good.to_str().unwrap()]);
    assert_ne!(code, 0, "a JSON file is not a model: {err}");
}
