//! Split GGUF sets: our splitter writes llama.cpp's `gguf-split` layout, a
//! set loads as the whole file does, and broken sets are refused by name.

mod common;

use common::*;
use engine::gguf::split::{
    parse_shard_name, plan_split, shard_file_name, MergePlan, Shard, SplitBy, SPLIT_COUNT, SPLIT_NO,
    SPLIT_TENSORS_COUNT,
};
use engine::gguf::{Gguf, GgufWriter, Value};
use engine::load::{load, merge_split};
use engine::model::Session;
use kernels::exec::Serial;

const STORIES: &str = "testdata/stories260K-gguf/stories260K.gguf";

fn parse(b: &[u8]) -> Gguf {
    Gguf::parse(b, b.len() as u64).unwrap()
}

fn split(file: &[u8], by: SplitBy) -> Vec<Vec<u8>> {
    let g = parse(file);
    plan_split(&g, by).unwrap().iter().map(|s| s.to_bytes(file).unwrap()).collect()
}

fn named(shards: &[Vec<u8>]) -> Vec<(String, &[u8])> {
    let n = shards.len() as u16;
    shards.iter().enumerate().map(|(i, b)| (shard_file_name("stories", i as u16, n), b.as_slice())).collect()
}

fn merge(shards: &[Vec<u8>]) -> engine::Result<Vec<u8>> {
    let v = named(shards);
    let refs: Vec<(&str, &[u8])> = v.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    merge_split(&refs)
}

/// The logits of a greedy run of a few steps.
fn logits(file: Vec<u8>) -> Vec<Vec<f32>> {
    let (m, t) = load(blob(file), None).unwrap();
    let mut s = Session::new(&m, 64).unwrap();
    let prompt = t.encode("Once upon a time", true);
    let mut out = vec![s.eval(&m, &prompt, &Serial).unwrap().to_vec()];
    for _ in 0..8 {
        let next = argmax(out.last().unwrap());
        out.push(s.eval(&m, &[next], &Serial).unwrap().to_vec());
    }
    out
}

fn pad32(n: u64) -> u64 {
    n.next_multiple_of(32)
}

#[test]
fn three_shards_have_llama_cpp_layout() {
    let file = read(STORIES);
    let g = parse(&file);
    let n_tensors = g.tensors.len();
    assert_eq!(n_tensors, 48);
    let shards = split(&file, SplitBy::Tensors(16));
    assert_eq!(shards.len(), 3);
    let mut names = Vec::new();
    for (i, b) in shards.iter().enumerate() {
        let s = parse(b);
        assert_eq!(s.version, 3);
        // The split keys: split.no (u16, 0-based), split.tensors.count (i32),
        // split.count (u16), last, in the order gguf_set_val_* leaves them.
        let tail: Vec<&(String, Value)> = s.metadata.iter().rev().take(3).rev().collect();
        assert_eq!(
            tail,
            [
                &(SPLIT_NO.to_string(), Value::U16(i as u16)),
                &(SPLIT_TENSORS_COUNT.to_string(), Value::I32(48)),
                &(SPLIT_COUNT.to_string(), Value::U16(3)),
            ]
        );
        if i == 0 {
            // All the model's metadata, in order, before the split keys.
            assert_eq!(s.metadata[..s.metadata.len() - 3], g.metadata[..]);
        } else {
            assert_eq!(s.metadata.len(), 3, "shard {i} carries only the split keys");
        }
        // 16 consecutive tensors, offsets from 0, each padded to 32, the data
        // section 32-aligned, the file ending with the last tensor's padding.
        assert_eq!(s.tensors.len(), 16);
        let mut rel = 0;
        for t in &s.tensors {
            assert_eq!(t.offset - s.data_offset, rel, "{}", t.name);
            let orig = g.tensor(&t.name).unwrap();
            assert_eq!((&t.dims, t.ty), (&orig.dims, orig.ty));
            assert_eq!(s.tensor_data(b, &t.name).unwrap(), g.tensor_data(&file, &t.name).unwrap());
            let end = (t.offset + t.size) as usize;
            assert!(b[end..(s.data_offset + pad32(rel + t.size)) as usize].iter().all(|&x| x == 0), "zero padding");
            rel += pad32(t.size);
            names.push(t.name.clone());
        }
        assert_eq!(s.data_offset % 32, 0);
        assert_eq!(b.len() as u64, s.data_offset + rel);
    }
    let orig_names: Vec<String> = g.tensors.iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, orig_names, "the whole file's tensor order");
}

#[test]
fn split_by_size_fills_each_shard_greedily() {
    let file = read(STORIES);
    let g = parse(&file);
    let total: u64 = g.tensors.iter().map(|t| pad32(t.size)).sum();
    let max = total / 3 + 40_000;
    let shards = split(&file, SplitBy::Bytes(max));
    assert_eq!(shards.len(), 3);
    let parsed: Vec<Gguf> = shards.iter().map(|b| parse(b)).collect();
    for (i, s) in parsed.iter().enumerate() {
        let data: u64 = s.tensors.iter().map(|t| pad32(t.size)).sum();
        assert!(data <= max, "shard {i}: {data} > {max}");
        if let Some(next) = parsed.get(i + 1) {
            // The next shard starts with the tensor that would not fit.
            assert!(data + pad32(next.tensors[0].size) > max, "shard {i} could have held one more");
        }
    }
    // A tensor larger than the limit by itself is refused.
    let biggest = g.tensors.iter().map(|t| pad32(t.size)).max().unwrap();
    let e = plan_split(&g, SplitBy::Bytes(biggest - 1)).unwrap_err().to_string();
    assert!(e.contains("more than the") && e.contains("tensor '"), "{e}");
}

#[test]
fn first_shard_loads_with_the_whole_files_logits() {
    let file = read(STORIES);
    let want = logits(file.clone());
    let merged = merge(&split(&file, SplitBy::Tensors(16))).unwrap();
    assert_eq!(logits(merged), want, "exactly equal logits");
}

#[test]
fn merge_gives_what_llama_gguf_split_merge_writes() {
    let file = read(STORIES);
    let g = parse(&file);
    let merged = merge(&split(&file, SplitBy::Tensors(16))).unwrap();
    let m = parse(&merged);
    // The first shard's metadata with split.count set to 0, moved last.
    let mut want = g.metadata.clone();
    want.push((SPLIT_NO.into(), Value::U16(0)));
    want.push((SPLIT_TENSORS_COUNT.into(), Value::I32(48)));
    want.push((SPLIT_COUNT.into(), Value::U16(0)));
    assert_eq!(m.metadata, want);
    assert_eq!(m.tensors.len(), g.tensors.len());
    for (a, b) in m.tensors.iter().zip(&g.tensors) {
        assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty));
        assert_eq!(m.tensor_data(&merged, &a.name).unwrap(), g.tensor_data(&file, &b.name).unwrap());
    }
    // merge(split(m)) == m byte for byte, and split(m) == split(file): the
    // keys a merged file carries are replaced, not added.
    let again = split(&merged, SplitBy::Tensors(16));
    assert_eq!(again, split(&file, SplitBy::Tensors(16)));
    assert_eq!(merge(&again).unwrap(), merged);
    // Other cuts of the same file merge to the same file.
    assert_eq!(merge(&split(&file, SplitBy::Tensors(7))).unwrap(), merged);
    assert_eq!(merge(&split(&merged, SplitBy::Bytes(300_000))).unwrap(), merged);
}

#[test]
fn merge_plan_reads_shards_straight_into_place() {
    // The firmware's way: headers first, one buffer of the merged size (not
    // zeroed), then each tensor read from its shard into place.
    let file = read(STORIES);
    let shards = split(&file, SplitBy::Tensors(16));
    let heads: Vec<Shard> = shards
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let h = &b[..parse(b).data_offset as usize];
            Shard {
                name: shard_file_name("s", i as u16, 3),
                gguf: Gguf::parse(h, b.len() as u64).unwrap(),
                file_len: b.len() as u64,
            }
        })
        .collect();
    let plan = MergePlan::new(&heads).unwrap();
    let mut out = vec![0xAAu8; plan.merged_len() as usize];
    plan.place_header(&mut out).unwrap();
    for p in plan.pieces() {
        plan.place_piece(&mut out, p, &shards[p.shard]).unwrap();
    }
    assert_eq!(out, merge(&shards).unwrap());
    // The pieces cover the file after the header, in order.
    let mut at = plan.header().len() as u64;
    for p in plan.pieces() {
        assert_eq!(p.dst, at);
        at += p.len + p.pad;
    }
    assert_eq!(at, plan.merged_len());
}

fn set_key(shard: &[u8], key: &str, v: Value) -> Vec<u8> {
    let g = parse(shard);
    let mut w = GgufWriter::from_gguf(&g, shard).unwrap();
    w.add_kv(key, v);
    w.to_bytes().unwrap()
}

fn err(shards: &[Vec<u8>]) -> String {
    merge(shards).unwrap_err().to_string()
}

#[test]
fn broken_sets_are_refused_by_name() {
    let file = read(STORIES);
    let s = split(&file, SplitBy::Tensors(16));

    // A missing shard.
    let e = err(&s[..2]);
    assert!(e.contains("'split.count' is 3 but 2 shards were given") && e.contains("00001-of-00002"), "{e}");

    // Out of order.
    let e = err(&[s[0].clone(), s[2].clone(), s[1].clone()]);
    assert!(e.contains("split shard 2 of 3") && e.contains("'split.no' is 2") && e.contains("expected 1"), "{e}");

    // A shard of another cut of the same file: its tensors overlap.
    let other = split(&file, SplitBy::Tensors(20));
    assert_eq!(other.len(), 3);
    let e = err(&[s[0].clone(), other[1].clone(), s[2].clone()]);
    assert!(e.contains("split shard 3 of 3") && e.contains("is also in shard 2"), "{e}");

    // A shard of a set of a different size.
    let four = split(&file, SplitBy::Tensors(12));
    assert_eq!(four.len(), 4);
    let e = err(&[s[0].clone(), four[1].clone(), s[2].clone()]);
    assert!(e.contains("split shard 2 of 3") && e.contains("'split.count' is 4 but the first shard's is 3"), "{e}");

    // A truncated shard.
    let mut cut = s[2].clone();
    cut.truncate(cut.len() - 100);
    let e = err(&[s[0].clone(), s[1].clone(), cut]);
    assert!(e.contains("split shard 3 of 3") && e.contains("past the end of the file"), "{e}");

    // A file that is not GGUF.
    let e = err(&[s[0].clone(), vec![0x42; 4096], s[2].clone()]);
    assert!(e.contains("split shard 2 of 3") && e.contains("not a GGUF file"), "{e}");

    // Counts that do not add up.
    let e = err(&[set_key(&s[0], SPLIT_TENSORS_COUNT, Value::I32(47)), s[1].clone(), s[2].clone()]);
    assert!(
        e.contains("split shard 2 of 3") && e.contains("'split.tensors.count' is 48 but the first shard's is 47"),
        "{e}"
    );
    let fixed: Vec<Vec<u8>> = s.iter().map(|b| set_key(b, SPLIT_TENSORS_COUNT, Value::I32(49))).collect();
    let e = err(&fixed);
    assert!(e.contains("'split.tensors.count' is 49 but the 3 shards hold 48 tensors"), "{e}");

    // Wrong key types and missing keys.
    let e = err(&[s[0].clone(), set_key(&s[1], SPLIT_NO, Value::String("1".into())), s[2].clone()]);
    assert!(e.contains("split shard 2 of 3") && e.contains("'split.no' should be u16"), "{e}");
    let e = err(&[s[0].clone(), s[1].clone(), set_key(&s[2], SPLIT_COUNT, Value::I64(-3))]);
    assert!(e.contains("split shard 3 of 3") && e.contains("does not fit in u16"), "{e}");
    let e = err(&[file.clone(), s[1].clone(), s[2].clone()]);
    assert!(e.contains("split shard 1 of 3") && e.contains("not the first shard of a split set"), "{e}");

    // Splitting a shard again.
    let e = plan_split(&parse(&s[1]), SplitBy::Tensors(4)).unwrap_err().to_string();
    assert!(e.contains("shard 2 of a set of 3"), "{e}");
}

#[test]
fn shard_names() {
    assert_eq!(shard_file_name("m", 0, 3), "m-00001-of-00003.gguf");
    let n = parse_shard_name("stories-00003-of-00003.gguf").unwrap();
    assert_eq!((n.prefix, n.no, n.count), ("stories", 2, 3));
    assert_eq!(n.sibling(0), "stories-00001-of-00003.gguf");
}
