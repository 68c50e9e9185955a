//! The product end to end: the real UEFI app (`cargo xtask build-efi`) boots
//! in QEMU (TCG, `-cpu max`) from an image made by the `image` crate, and a
//! harness drives its serial console. The greedy reply is checked against
//! the independent reference in ../shared, not against our own output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::vm::{app, expected_text};
use qemu::{Vm, VmConfig};

mod common;

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(testdata::path(rel)).unwrap()
}

fn config() -> VmConfig {
    VmConfig { memory: "1G".into(), cores: 2, deadline: Duration::from_secs(420), ..Default::default() }
}

/// `dir/name`, an image holding `efi` and `files`.
fn make_image(dir: &Path, name: &str, efi: &[u8], files: &[(&str, &[u8])], size: Option<u64>) -> PathBuf {
    let output = dir.join(name);
    image::build_image_from_bytes(&output, efi, files, size).expect("build test image");
    output
}

const T: Duration = Duration::from_secs(120);

/// The number the menu gives the model whose line mentions `name`.
fn menu_number(menu: &str, name: &str) -> String {
    let line = menu
        .lines()
        .find(|l| l.contains(name) && l.trim_start().starts_with('['))
        .unwrap_or_else(|| panic!("{name} not in menu:\n{menu}"));
    let n = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
    n.to_string()
}

#[test]
fn boot_menu_chat_commands_and_exit() {
    let Some(efi) = app("boot_menu_chat_commands_and_exit") else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = read("testdata/stories260K/stories260K.bin");
    let tok = read("testdata/stories260K/tok512.bin");
    let f16 = read("testdata/stories260K-gguf/stories260K-F16.gguf");
    let img = make_image(
        dir.path(),
        "two",
        &efi,
        &[("models/stories260K.bin", &model), ("models/tok512.bin", &tok), ("models/stories260K-F16.gguf", &f16)],
        None,
    );
    let mut vm = Vm::boot_with(&img, config()).unwrap();
    let menu = vm.expect("Select a model [1-2]: ", T).unwrap();
    assert!(menu.contains("llm-baremetal") && menu.contains("SIMD:"), "{menu}");
    let n = menu_number(&menu, "stories260K.bin");
    assert!(menu.contains("stories260K-F16.gguf"), "{menu}");
    vm.send_line(&n).unwrap();
    vm.expect("LBM-READY", T).unwrap();
    vm.expect("You: ", T).unwrap();
    vm.send_line("/temp 0").unwrap();
    vm.expect("temperature = 0.00", T).unwrap();
    vm.send_line("/tokens 24").unwrap();
    vm.expect("max tokens = 24", T).unwrap();
    let out = common::vm::once_upon_a_time_as_llama2c(&mut vm, T);
    assert!(out.contains("[24 tokens, token limit;"), "{out}");
    vm.send_line("/stats").unwrap();
    let stats = vm.expect("memory:", T).unwrap();
    assert!(
        stats.contains("turns:       1/10")
            && stats.contains("/512 tokens")
            && stats.contains("generated:   24 tokens"),
        "{stats}"
    );
    vm.send_line("/history").unwrap();
    vm.expect("1. You: Once upon a time", T).unwrap();
    vm.send_line("/temp 0.5").unwrap();
    vm.expect("temperature = 0.50", T).unwrap();
    vm.send_line("/temp 7").unwrap();
    vm.expect("error: invalid temperature: must be in [0, 2] (got 7)", T).unwrap();
    vm.send_line("/clear").unwrap();
    vm.expect("Conversation cleared.", T).unwrap();
    vm.send_line("/stats").unwrap();
    let stats = vm.expect("memory:", T).unwrap();
    assert!(stats.contains("turns:       0/10") && stats.contains("temperature 0.50"), "{stats}");
    vm.send_line("/exit").unwrap();
    vm.expect("Bye.", T).unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0), "QEMU exits 0 after /exit");
}

#[test]
fn bad_models_are_listed_with_errors_and_the_good_one_chats() {
    let Some(efi) = app("bad_models_are_listed_with_errors_and_the_good_one_chats") else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = read("testdata/stories260K/stories260K.bin");
    let tok = read("testdata/stories260K/tok512.bin");
    let gguf = read("testdata/stories260K-gguf/stories260K.gguf");
    let cut = &gguf[..gguf.len() / 2];
    let garbage: Vec<u8> =
        b"GGUF\x03\x00\x00\x00".iter().copied().chain((0..5000u32).map(|i| (i * 7919 % 251) as u8)).collect();
    let img = make_image(
        dir.path(),
        "bad",
        &efi,
        &[
            ("models/stories260K.bin", &model),
            ("models/tok512.bin", &tok),
            ("models/truncated.gguf", cut),
            ("models/garbage.gguf", &garbage),
        ],
        None,
    );
    let mut vm = Vm::boot_with(&img, config()).unwrap();
    let menu = vm.expect("LBM-READY", T).unwrap();
    for name in ["truncated.gguf", "garbage.gguf"] {
        let line = menu.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} not listed:\n{menu}"));
        assert!(line.contains("[-]") && line.contains("error:"), "{line}");
    }
    assert!(menu.contains("Only one model:"), "{menu}");
    vm.expect("You: ", T).unwrap();
    vm.send_line("/temp 0").unwrap();
    vm.send_line("/tokens 8").unwrap();
    vm.send_line("Lily").unwrap();
    vm.expect("AI: ", T).unwrap();
    let out = vm.expect("tok/s]", T).unwrap();
    let reply = &out[..out.find("\n[").unwrap()];
    let want = expected_text("Lily");
    assert_eq!(format!("Lily{reply}"), want[..4 + reply.len()]);
    vm.send_line("/exit").unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0));
}
