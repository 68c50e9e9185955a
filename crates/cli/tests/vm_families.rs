//! Real layer shapes in the UEFI app under QEMU: 2-layer random-weight
//! models (Q8_0; GPT-2 in Q4_0 and TinyLlama in Q4_K_M, which the app
//! repacks at load) written by `lbm bench --gen-model`'s generator with each
//! model's real layer shape and (where ../shared has it) its real vocabulary.
//! Words are random; loading, menus, tokens, templates and stops are real.

use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::quantize::QuantType;
use lbm::bench::{gen_model, Shape};
use qemu::{Vm, VmConfig};

fn app(test: &str) -> Option<PathBuf> {
    if !qemu::available(test) {
        return None;
    }
    match testdata::efi_app() {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => panic!("{test}: the UEFI app is not built (cargo xtask build-efi)"),
        None => {
            eprintln!("SKIPPING {test}: the UEFI app is not built (cargo xtask build-efi)");
            None
        }
    }
}

/// A 2-layer Q8_0 model with `shape`'s layer shape, as `dir/NAME.gguf`.
fn two_layers(dir: &Path, shape: &str, vocab: Option<&str>) -> PathBuf {
    two_layers_of(dir, shape, vocab, QuantType::Q8_0)
}

/// [`two_layers`] in another type (Q4_0 and Q4_K matrices are repacked into
/// row octets in the firmware's page allocation at load).
fn two_layers_of(dir: &Path, shape: &str, vocab: Option<&str>, ty: QuantType) -> PathBuf {
    let s = Shape { layers: 2, ..*Shape::find(shape).unwrap() };
    let out = dir.join(format!("{shape}-2L-{ty:?}.gguf"));
    let vocab = vocab.map(testdata::path);
    gen_model(&s, ty, &out, vocab.as_deref(), 7, 2, &mut |_| {}).expect("gen_model");
    out
}

fn image(dir: &Path, efi: &Path, models: Vec<PathBuf>) -> PathBuf {
    let output = dir.join("disk.img");
    let opts =
        image::ImageOptions { output: output.clone(), efi: vec![efi.to_path_buf()], models, ..Default::default() };
    image::build_image(&opts, &mut |_, _, _| {}).expect("image");
    output
}

fn config() -> VmConfig {
    VmConfig { memory: "2G".into(), cores: 2, deadline: Duration::from_secs(900), ..Default::default() }
}

const T: Duration = Duration::from_secs(300);

/// The reply's token count from the line after a reply: `[N tokens...`.
fn reply_tokens(after_reply: &str) -> usize {
    let at = after_reply.rfind("\n[").expect("stats line") + 2;
    after_reply[at..].split_whitespace().next().unwrap().parse().unwrap()
}

fn menu_number(menu: &str, name: &str) -> String {
    let line = menu
        .lines()
        .find(|l| l.contains(name) && l.contains('['))
        .unwrap_or_else(|| panic!("{name} not in menu:\n{menu}"));
    line[line.find('[').unwrap() + 1..line.find(']').unwrap()].to_string()
}

#[test]
fn gpt2_shape_with_the_real_vocabulary_completes_a_prompt() {
    let Some(efi) = app("gpt2_shape_with_the_real_vocabulary_completes_a_prompt") else { return };
    let dir = tempfile::tempdir().unwrap();
    let m =
        two_layers_of(dir.path(), "gpt2-124M", Some("testdata/llamacpp-vocab/ggml-vocab-gpt-2.gguf"), QuantType::Q4_0);
    let img = image(dir.path(), &efi, vec![m]);
    let mut vm = Vm::boot_with(&img, config()).unwrap();
    let menu = vm.expect("LBM-READY", T).unwrap();
    assert!(menu.contains("gpt2") && menu.contains("Q4_0"), "{menu}");
    vm.expect("You: ", T).unwrap();
    vm.send_line("/tokens 8").unwrap();
    vm.expect("max tokens = 8", T).unwrap();
    vm.send_line("Hello world, this is").unwrap();
    vm.expect("AI: ", T).unwrap();
    let out = vm.expect("tok/s]", T).unwrap();
    let n = reply_tokens(&out);
    assert!((1..=8).contains(&n), "{out}");
    vm.send_line("/exit").unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0));
}

#[test]
fn tinyllama_shape_answers_one_templated_turn() {
    let Some(efi) = app("tinyllama_shape_answers_one_templated_turn") else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = two_layers_of(
        dir.path(),
        "tinyllama-1.1B",
        Some("testdata/llamacpp-vocab/ggml-vocab-llama-spm.gguf"),
        QuantType::Q4_K_M,
    );
    let img = image(dir.path(), &efi, vec![m]);
    let mut vm = Vm::boot_with(&img, config()).unwrap();
    vm.expect("LBM-READY", T).unwrap();
    vm.expect("You: ", T).unwrap();
    vm.send_line("/template zephyr").unwrap();
    vm.expect("Template: zephyr.", T).unwrap();
    vm.send_line("/tokens 8").unwrap();
    vm.expect("max tokens = 8", T).unwrap();
    vm.send_line("What is bare metal?").unwrap();
    vm.expect("AI: ", T).unwrap();
    let out = vm.expect("tok/s]", T).unwrap();
    let n = reply_tokens(&out);
    assert!((1..=8).contains(&n) || out.contains("[0 tokens;"), "{out}");
    let reply = &out[..out.rfind("\n[").unwrap()];
    for marker in ["</s>", "<|assistant|>", "<|user|>"] {
        assert!(!reply.contains(marker), "stop/template marker shown: {reply:?}");
    }
    vm.send_line("/stats").unwrap();
    let stats = vm.expect("memory:", T).unwrap();
    // The templated prompt ("<|user|>\n...</s>\n<|assistant|>\n") is in the context.
    let ctx: usize = stats.split("context:").nth(1).unwrap().trim().split('/').next().unwrap().parse().unwrap();
    assert!(ctx >= 15 + n.saturating_sub(1), "{stats}");
    vm.send_line("/exit").unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0));
}

#[test]
fn every_family_is_listed_and_qwen2_chats() {
    let Some(efi) = app("every_family_is_listed_and_qwen2_chats") else { return };
    let dir = tempfile::tempdir().unwrap();
    let models: Vec<PathBuf> =
        ["qwen2-0.5B", "gemma-2b", "phi-2", "mistral-7b"].iter().map(|s| two_layers(dir.path(), s, None)).collect();
    let img = image(dir.path(), &efi, models);
    let mut vm = Vm::boot_with(&img, config()).unwrap();
    let menu = vm.expect("Select a model [1-4]: ", T).unwrap();
    for (name, arch) in [("qwen2-0.5B", "qwen2"), ("gemma-2b", "gemma"), ("phi-2", "phi2"), ("mistral-7b", "llama")] {
        let line = menu.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} missing:\n{menu}"));
        assert!(line.contains(arch) && line.contains("Q8_0") && !line.contains("error"), "{line}");
    }
    let n = menu_number(&menu, "qwen2-0.5B");
    vm.send_line(&n).unwrap();
    vm.expect("LBM-READY", T).unwrap();
    vm.expect("You: ", T).unwrap();
    vm.send_line("/tokens 4").unwrap();
    vm.expect("max tokens = 4", T).unwrap();
    vm.send_line("Hi").unwrap();
    vm.expect("AI: ", T).unwrap();
    let out = vm.expect("tok/s]", T).unwrap();
    assert!(reply_tokens(&out) <= 4, "{out}");
    vm.send_line("/exit").unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0));
}

/// A real trained chat model in the firmware: SmolLM2-135M-Instruct (Q4_1,
/// the `smollm` pre-tokenizer, ChatML with its default system prompt, an
/// f16 KV cache from `\lbm.cfg`) answers the reference question with the
/// reply llama.cpp gives on the same file, as `lbm` does on the host.
#[test]
fn smollm2_answers_as_llama_cpp_does() {
    let test = "smollm2_answers_as_llama_cpp_does";
    let Some(efi) = app(test) else { return };
    let Some(model) = testdata::optional(test, "testdata/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") else { return };
    let reference: serde_json::Value =
        serde_json::from_slice(&testdata::read("testdata/smollm2/llama-cpp-reference.json")).unwrap();
    let case = &reference["chat"][0];
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lbm.cfg");
    std::fs::write(&cfg, "temperature = 0\nmax_tokens = 8\nkv_type = f16\n").unwrap();
    let output = dir.path().join("disk.img");
    let opts = image::ImageOptions {
        output: output.clone(),
        efi: vec![efi],
        models: vec![model],
        extra_files: vec![(cfg, "lbm.cfg".into())],
        ..Default::default()
    };
    image::build_image(&opts, &mut |_, _, _| {}).expect("image");
    let mut vm = Vm::boot_with(&output, config()).unwrap();
    let menu = vm.expect("LBM-READY", T).unwrap();
    assert!(menu.contains("Q4_1") && !menu.contains("warning"), "{menu}");
    vm.expect("You: ", T).unwrap();
    vm.send_line(case["messages"][0]["content"].as_str().unwrap()).unwrap();
    vm.expect("AI: ", T).unwrap();
    let out = vm.expect("tok/s]", T).unwrap();
    assert_eq!(reply_tokens(&out), 8, "{out}");
    let reply = &out[..out.rfind("\n[").unwrap()];
    // OVMF's serial console shows non-ASCII as '?': compare in ASCII.
    let want: String = case["reply"].as_str().unwrap().chars().map(|c| if c.is_ascii() { c } else { '?' }).collect();
    assert!(reply.len() > 10 && want.starts_with(reply), "firmware {reply:?}, llama.cpp {want:?}");
    vm.send_line("/system").unwrap();
    vm.expect("named SmolLM, trained by Hugging Face", T).unwrap();
    vm.send_line("/exit").unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0));
}
