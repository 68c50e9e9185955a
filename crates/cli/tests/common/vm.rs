//! What the VM tests share: the built UEFI app and the greedy
//! "Once upon a time" reply checked against llama2.c's reference for
//! stories260K (`testdata/expected/llama2c-generation.json`).
#![allow(dead_code)]

use std::time::Duration;

use qemu::Vm;

/// The x86-64 UEFI app, or None (with a skip notice) when QEMU or the app is
/// missing and CI is not set; with CI set a missing app fails the test.
pub fn app(test: &str) -> Option<Vec<u8>> {
    if !qemu::available(test) {
        return None;
    }
    match testdata::efi_app() {
        Some(p) => Some(std::fs::read(p).unwrap()),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "{test}: target/efi/BOOTX64.EFI is missing; run `cargo xtask build-efi` first (cargo xtask test does)"
            )
        }
        None => {
            eprintln!("SKIPPING {test}: the UEFI app is not built (cargo xtask build-efi)");
            None
        }
    }
}

/// llama2.c's greedy text for `prompt` on stories260K.
pub fn expected_text(prompt: &str) -> String {
    let raw = std::fs::read(testdata::path("testdata/expected/llama2c-generation.json")).unwrap();
    let e: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let run = e["stories260K"]["runs"].as_array().unwrap().iter().find(|r| r["prompt"] == prompt).unwrap().clone();
    run["text"].as_str().unwrap().to_string()
}

/// Sends "Once upon a time" at the chat prompt of a greedy stories260K chat,
/// checks that the streamed reply is a prefix of llama2.c's text (over 40
/// bytes of it), and returns the output up to the stats line's `tok/s]`.
pub fn once_upon_a_time_as_llama2c(vm: &mut Vm, t: Duration) -> String {
    vm.send_line("Once upon a time").unwrap();
    vm.expect("AI: ", t).unwrap();
    let out = vm.expect("tok/s]", t).unwrap();
    let reply = &out[..out.find("\n[").expect("stats line")];
    let want = expected_text("Once upon a time");
    assert!(reply.len() > 40, "{reply:?}");
    assert_eq!(format!("Once upon a time{reply}"), want[..16 + reply.len()], "streamed text");
    out
}
