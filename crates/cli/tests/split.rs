//! `lbm split` and split GGUF sets given to `-m`: the first shard loads the
//! whole set, as the whole file; broken sets are refused by name.

use std::path::{Path, PathBuf};
use std::process::Command;

fn lbm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbm")).args(args).output().expect("run lbm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = lbm(args);
    assert_eq!(code, 0, "lbm {args:?}: {err}");
    out
}

fn fails(args: &[&str]) -> String {
    let (code, _, err) = lbm(args);
    assert_eq!(code, 1, "lbm {args:?} should fail: {err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stories() -> PathBuf {
    testdata::path("testdata/stories260K-gguf/stories260K.gguf")
}

/// Splits stories260K into 3 shards `dir/NAME-0000k-of-00003.gguf`.
fn split3(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = dir.join(name);
    let out = ok(&["split", s(&stories()), "-o", s(&prefix), "--max-tensors", "16"]);
    let shards: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("{name}-{i:05}-of-00003.gguf"))).collect();
    for p in &shards {
        assert!(out.contains(&format!("wrote {}", p.display())), "{out}");
        assert!(p.is_file());
    }
    shards
}

fn logits(model: &Path, out: &Path) -> Vec<u8> {
    ok(&["logits", "-m", s(model), "--ids", "1,403,407,261,378,430,267", "-o", s(out)]);
    std::fs::read(out).unwrap()
}

#[test]
fn first_shard_runs_as_the_whole_file() {
    let d = tempfile::tempdir().unwrap();
    let shards = split3(d.path(), "stories");
    let whole = logits(&stories(), &d.path().join("whole.f32"));
    let split = logits(&shards[0], &d.path().join("split.f32"));
    assert_eq!(whole.len(), 7 * 512 * 4);
    assert_eq!(split, whole, "the same logits, bit for bit");

    let gen = |m: &Path| ok(&["generate", "-m", s(m), "-p", "Once upon a time", "-n", "24", "--temp", "0", "--json"]);
    assert_eq!(gen(&shards[0]), gen(&stories()));

    // info describes the set.
    let v: serde_json::Value = serde_json::from_str(ok(&["info", "--json", s(&shards[0])]).trim()).unwrap();
    let w: serde_json::Value = serde_json::from_str(ok(&["info", "--json", s(&stories())]).trim()).unwrap();
    let listed: Vec<String> = v["shards"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().into()).collect();
    assert_eq!(listed, shards.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
    for k in ["arch", "n_params", "tensor_types", "vocab_size", "n_layers", "tokenizer"] {
        assert_eq!(v[k], w[k], "{k}");
    }
    let text = ok(&["info", s(&shards[0])]);
    assert!(text.contains("split:        3 shards"), "{text}");
    // The tokenizer commands read the first shard's metadata.
    assert_eq!(
        ok(&["tokenize", "-m", s(&shards[0]), "Once upon"]),
        ok(&["tokenize", "-m", s(&stories()), "Once upon"])
    );
}

#[test]
fn merge_of_a_split_gives_the_merged_file_back() {
    let d = tempfile::tempdir().unwrap();
    let shards = split3(d.path(), "a");
    let merged = d.path().join("merged.gguf");
    ok(&["split", "--merge", s(&shards[0]), "-o", s(&merged)]);
    // Split the merged file by size and merge again: the same bytes.
    let out = ok(&["split", s(&merged), "-o", s(&d.path().join("b")), "--max-size", "300K"]);
    let n = out.lines().count();
    assert!(n >= 4, "{out}");
    let again = d.path().join("again.gguf");
    ok(&["split", "--merge", s(&d.path().join(format!("b-00001-of-{n:05}.gguf"))), "-o", s(&again)]);
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&merged).unwrap());
    // The merged file runs as the original.
    assert_eq!(logits(&merged, &d.path().join("m.f32")), logits(&stories(), &d.path().join("w.f32")));
    // A limit such as 3.9G (not a whole number of bytes) is taken rounded down: one shard.
    let out = ok(&["split", s(&stories()), "-o", s(&d.path().join("one")), "--max-size", "3.9G"]);
    assert!(out.contains("one-00001-of-00001.gguf"), "{out}");
}

#[test]
fn broken_sets_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let shards = split3(d.path(), "m");
    let first = s(&shards[0]).to_string();
    let gen = |m: &str| fails(&["generate", "-m", m, "--ids", "1", "-n", "1"]);

    // A later shard instead of the first.
    let e = gen(s(&shards[1]));
    assert!(
        e.contains("is shard 2 of a split set of 3") && e.contains("give the first shard, m-00001-of-00003.gguf"),
        "{e}"
    );

    // A truncated shard.
    let bytes = std::fs::read(&shards[2]).unwrap();
    std::fs::write(&shards[2], &bytes[..bytes.len() - 64]).unwrap();
    let e = gen(&first);
    assert!(e.contains("split shard 3 of 3") && e.contains("past the end"), "{e}");

    // A shard of another split of the same file.
    let other = tempfile::tempdir().unwrap();
    ok(&["split", s(&stories()), "-o", s(&other.path().join("m")), "--max-tensors", "20"]);
    std::fs::write(&shards[2], &bytes).unwrap();
    std::fs::copy(other.path().join("m-00002-of-00003.gguf"), &shards[1]).unwrap();
    let e = gen(&first);
    assert!(e.contains("split shard 3 of 3") && e.contains("is also in shard 2"), "{e}");

    // A shard that is not GGUF.
    std::fs::write(&shards[1], vec![7u8; 1000]).unwrap();
    let e = gen(&first);
    assert!(e.contains("split shard 2 of 3") && e.contains("not a GGUF file"), "{e}");

    // A missing shard.
    std::fs::remove_file(&shards[1]).unwrap();
    let e = gen(&first);
    assert!(e.contains("split shard 2 of 3") && e.contains("is missing") && e.contains("m-00002-of-00003.gguf"), "{e}");
    let e = fails(&["info", &first]);
    assert!(e.contains("is missing"), "{e}");

    // A first shard renamed: the others cannot be found.
    let renamed = d.path().join("renamed.gguf");
    std::fs::rename(&shards[0], &renamed).unwrap();
    let e = gen(s(&renamed));
    assert!(e.contains("does not end in -00001-of-00003.gguf"), "{e}");

    // Merging something that is not a set.
    let e = fails(&["split", "--merge", s(&stories()), "-o", s(&d.path().join("x.gguf"))]);
    assert!(e.contains("not the first shard of a split set"), "{e}");
}

#[test]
fn split_arguments_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x");
    let e = fails(&["split", s(&stories()), "-o", s(&p)]);
    assert!(e.contains("--max-size SIZE or --max-tensors N"), "{e}");
    let e = fails(&["split", s(&stories()), "-o", s(&p), "--max-tensors", "0"]);
    assert!(e.contains("at least 1"), "{e}");
    // A tensor larger than the limit by itself: nothing is written.
    let e = fails(&["split", s(&stories()), "-o", s(&p), "--max-size", "1K"]);
    assert!(e.contains("more than the 1024 a shard may hold"), "{e}");
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "no file left behind");
    let (code, _, e) = lbm(&["split", s(&stories()), "-o", s(&p), "--max-size", "1M", "--max-tensors", "3"]);
    assert_eq!(code, 2, "{e}");
    // A split set cannot be split again.
    let shards = split3(d.path(), "y");
    let e = fails(&["split", s(&shards[0]), "-o", s(&d.path().join("z")), "--max-tensors", "4"]);
    assert!(e.contains("shard 1 of a set of 3"), "{e}");
}

/// The files under `models/` of an image's FAT partition.
fn image_models(img: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    let disk = gpt::GptConfig::new().writable(false).open(img).unwrap();
    let part = &disk.partitions()[&1];
    let mut f = std::fs::File::open(img).unwrap();
    f.seek(SeekFrom::Start(part.first_lba * 512)).unwrap();
    let mut bytes = vec![0u8; ((part.last_lba - part.first_lba + 1) * 512) as usize];
    f.read_exact(&mut bytes).unwrap();
    let fs = fatfs::FileSystem::new(std::io::Cursor::new(bytes), fatfs::FsOptions::new()).unwrap();
    let mut out = Vec::new();
    for e in fs.root_dir().open_dir("models").unwrap().iter() {
        let e = e.unwrap();
        if e.is_file() {
            let mut b = Vec::new();
            e.to_file().read_to_end(&mut b).unwrap();
            out.push((e.file_name(), b));
        }
    }
    out.sort();
    out
}

#[test]
fn image_splits_a_model_too_large_for_one_file() {
    let d = tempfile::tempdir().unwrap();
    let efi = d.path().join("app.efi");
    std::fs::write(&efi, qemu::tiny_efi::tiny_efi_app("x\r\n", qemu::tiny_efi::Finish::Return)).unwrap();
    let img = d.path().join("disk.img");
    // A limit small enough that stories260K (1.1 MiB) needs shards.
    let (code, _, err) =
        lbm(&["image", "-o", s(&img), "--efi", s(&efi), "--model", s(&stories()), "--max-file-size", "400K"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("split into 4 shards of at most 409600 bytes"), "{err}");
    let files = image_models(&img);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        (1..=4).map(|i| format!("stories260K-{i:05}-of-00004.gguf")).collect::<Vec<_>>(),
        "the shards only, named as llama.cpp names them"
    );
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (n, b) in &files {
        assert!(b.len() <= 400 << 10, "{n}: {} bytes", b.len());
        std::fs::write(out.join(n), b).unwrap();
    }
    // The shards are those `lbm split` writes, and load as the whole file.
    let whole = std::fs::read(stories()).unwrap();
    let g = engine::gguf::Gguf::parse(&whole, whole.len() as u64).unwrap();
    let data = (400 << 10) - engine::gguf::split::max_shard_header(&g).unwrap();
    ok(&["split", s(&stories()), "-o", s(&d.path().join("stories260K")), "--max-size", &data.to_string()]);
    for (n, b) in &files {
        assert_eq!(b, &std::fs::read(d.path().join(n)).unwrap(), "{n} as lbm split writes it");
    }
    let first = out.join("stories260K-00001-of-00004.gguf");
    assert_eq!(logits(&first, &d.path().join("a.f32")), logits(&stories(), &d.path().join("b.f32")));

    // A split set given by its first shard brings all its shards; a small model stays whole.
    let shards = split3(d.path(), "set");
    let img2 = d.path().join("disk2.img");
    let small = testdata::path("testdata/stories260K-gguf/stories260K-F16.gguf");
    let (code, _, err) = lbm(&[
        "image",
        "-o",
        s(&img2),
        "--efi",
        s(&efi),
        "--model",
        s(&shards[0]),
        "--model",
        s(&small),
        "--max-file-size",
        "1M",
    ]);
    assert_eq!(code, 0, "{err}");
    let files = image_models(&img2);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["set-00001-of-00003.gguf", "set-00002-of-00003.gguf", "set-00003-of-00003.gguf", "stories260K-F16.gguf"]
    );
    for (i, p) in shards.iter().enumerate() {
        assert_eq!(files[i].1, std::fs::read(p).unwrap());
    }
    // A limit the largest tensor does not fit in is an error naming it.
    let (code, _, err) =
        lbm(&["image", "-o", s(&img2), "--efi", s(&efi), "--model", s(&stories()), "--max-file-size", "64K"]);
    assert_eq!(code, 1);
    assert!(err.contains("a shard may hold") || err.contains("leaves no room"), "{err}");
}
