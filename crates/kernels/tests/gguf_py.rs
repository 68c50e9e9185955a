//! Our dequantizers and reference quantizers against the `gguf` Python
//! package's `gguf.quants` (which follows ggml's reference code), through
//! the data `tests/data/gen_dequant.py` made: real Q4_1 blocks from the
//! SmolLM2-135M-Instruct file, seeded random blocks for the other types.
//! Dequantized floats must be equal bit for bit, quantized blocks byte for
//! byte.

use std::path::PathBuf;

use kernels::types::WType;

struct Data {
    id: u32,
    nblocks: usize,
    block_bytes: usize,
    block_size: usize,
    body: Vec<u8>,
}

fn load(name: &str) -> Data {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(&b[..4], b"LBMQ", "{name}");
    let u = |i: usize| u32::from_le_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap());
    let d = Data {
        id: u(0),
        nblocks: u(1) as usize,
        block_bytes: u(2) as usize,
        block_size: u(3) as usize,
        body: b[20..].to_vec(),
    };
    assert_eq!(d.body.len(), d.nblocks * (d.block_bytes + 4 * d.block_size), "{name}: size");
    d
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn check_dequant(name: &str, want_id: u32, ours: &dyn Fn(&[u8], &mut [f32])) {
    let d = load(name);
    assert_eq!(d.id, want_id, "{name}");
    let (blocks, want) = d.body.split_at(d.nblocks * d.block_bytes);
    let want = floats(want);
    let mut got = vec![0.0f32; want.len()];
    ours(blocks, &mut got);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "{name}: element {i}: ours {a}, gguf.quants {b}");
    }
    // The data is not trivial.
    assert!(want.iter().filter(|v| **v != 0.0).count() > want.len() / 2, "{name}");
}

#[test]
fn dequantizers_equal_gguf_quants() {
    // The types of the table, through the table's byte-level dequantizer.
    for (name, ty) in [
        ("dequant_q4_1.bin", WType::Q4_1),
        ("dequant_q5_1.bin", WType::Q5_1),
        ("dequant_iq4_nl.bin", WType::IQ4_NL),
        ("dequant_q2_k.bin", WType::Q2_K),
        ("dequant_q3_k.bin", WType::Q3_K),
        ("dequant_iq4_xs.bin", WType::IQ4_XS),
    ] {
        let info = ty.info();
        check_dequant(name, info.gguf_id, &|b, o| (info.dequantize)(b, o));
    }
}

#[test]
fn reference_quantizers_equal_gguf_quants() {
    for (name, ty) in [("quant_q4_1.bin", WType::Q4_1), ("quant_q5_1.bin", WType::Q5_1)] {
        let d = load(name);
        let info = ty.info();
        assert_eq!((d.id, d.block_bytes, d.block_size), (info.gguf_id, info.block_bytes, info.block_size), "{name}");
        let (x, want) = d.body.split_at(d.nblocks * d.block_size * 4);
        let x = floats(x);
        let mut got = vec![0u8; want.len()];
        (info.quantize.unwrap())(&x, &mut got);
        for (k, (a, b)) in got.chunks_exact(d.block_bytes).zip(want.chunks_exact(d.block_bytes)).enumerate() {
            assert_eq!(a, b, "{name}: block {k}");
        }
    }
}
