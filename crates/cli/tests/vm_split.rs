//! A split GGUF set on the boot disk: the UEFI app (`cargo xtask build-efi`)
//! lists the 3 shards as one model, loads them merged, and its greedy reply
//! equals the independent llama2.c reference for stories260K; broken sets
//! are listed as unusable with the reason.

use std::time::Duration;

use common::vm::app;
use engine::gguf::split::{plan_split, shard_file_name, SplitBy};
use engine::gguf::Gguf;
use qemu::{Vm, VmConfig};

mod common;

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(testdata::path(rel)).unwrap()
}

const T: Duration = Duration::from_secs(120);

#[test]
fn split_set_is_one_model_and_chats_as_the_whole_file() {
    let Some(efi) = app("split_set_is_one_model_and_chats_as_the_whole_file") else { return };
    let file = read("testdata/stories260K-gguf/stories260K.gguf");
    let g = Gguf::parse(&file, file.len() as u64).unwrap();
    let shards: Vec<Vec<u8>> =
        plan_split(&g, SplitBy::Tensors(16)).unwrap().iter().map(|p| p.to_bytes(&file).unwrap()).collect();
    assert_eq!(shards.len(), 3);
    let names: Vec<String> = (0..3).map(|i| format!("models/{}", shard_file_name("stories260K", i, 3))).collect();
    let mut files: Vec<(&str, &[u8])> = names.iter().map(|n| n.as_str()).zip(shards.iter().map(|s| &s[..])).collect();
    // A set with its second shard missing, and one with its first missing.
    files.push(("models/broken-00001-of-00002.gguf", &shards[0]));
    files.push(("models/orphan-00002-of-00002.gguf", &shards[1]));
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("split.img");
    image::build_image_from_bytes(&img, &efi, &files, None).expect("build test image");

    let config = VmConfig { memory: "1G".into(), cores: 2, deadline: Duration::from_secs(420), ..Default::default() };
    let mut vm = Vm::boot_with(&img, config).unwrap();
    let menu = vm.expect("LBM-READY", T).unwrap();
    let listed: Vec<&str> = menu
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("[-]") || l.starts_with("[1]") || l.starts_with("[2]"))
        .collect();
    assert_eq!(listed.len(), 3, "one line per set:\n{menu}");
    assert!(listed[0].contains("[-] models\\broken.gguf: error: split set of 2: shard 2 of 2 is missing"), "{menu}");
    assert!(listed[1].contains("[-] models\\orphan.gguf: error: split set of 2: shard 1 of 2 is missing"), "{menu}");
    assert!(listed[2].contains("[1] models\\stories260K.gguf (3 shards)  llama"), "{menu}");
    assert!(menu.contains("Only one model: models\\stories260K.gguf"), "{menu}");
    assert!(menu.contains("Loading models\\stories260K.gguf (1.1 MiB, 3 shards)"), "{menu}");
    vm.expect("You: ", T).unwrap();
    vm.send_line("/temp 0").unwrap();
    vm.expect("temperature = 0.00", T).unwrap();
    vm.send_line("/tokens 24").unwrap();
    vm.expect("max tokens = 24", T).unwrap();
    common::vm::once_upon_a_time_as_llama2c(&mut vm, T);
    vm.send_line("/exit").unwrap();
    vm.expect("Bye.", T).unwrap();
    assert_eq!(vm.wait_exit(Duration::from_secs(60)), Some(0), "QEMU exits 0 after /exit");
}
