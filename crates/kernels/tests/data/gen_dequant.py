#!/usr/bin/env python3
"""Reference data for crates/kernels/tests/gguf_py.rs, from the `gguf` Python
package (PyPI `gguf`, with numpy): its `gguf.quants` dequantizers and
quantizers, which follow ggml's reference code.

For each type, `dequant_<type>.bin`: blocks and the floats `gguf.quants.dequantize`
gives for them. Q4_1 blocks are real ones, from the SmolLM2-135M-Instruct
Q4_1 file (the first blocks of its first Q4_1 tensor); the others are bytes
from a seeded RNG with sane f16 scales written over the scale fields.

For each type the package can quantize to, `quant_<type>.bin`: floats and the
blocks `gguf.quants.quantize` makes of them.

File layout (little-endian): magic b"LBMQ", u32 GGUF type id, u32 block count,
u32 block bytes, u32 elements per block; then for dequant files the blocks and
then the floats, for quant files the floats and then the blocks.

Usage: python3 gen_dequant.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
(run from this folder; writes next to itself).
"""

import struct
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = Path(__file__).resolve().parent
N_BLOCKS = 40


def write(name, qtype, nblocks, first, second):
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    head = b"LBMQ" + struct.pack("<4I", int(qtype), nblocks, ts, bs)
    (OUT / name).write_bytes(head + first.tobytes() + second.tobytes())
    print(name, len(head) + first.nbytes + second.nbytes, "bytes")


def f16(rng, n, lo, hi, signed=True):
    """n f16 values with magnitudes between lo and hi, as bytes (n, 2)."""
    v = rng.uniform(lo, hi, n)
    if signed:
        v *= rng.choice([-1.0, 1.0], n)
    return v.astype(np.float16).view(np.uint8).reshape(n, 2)


def random_blocks(rng, qtype, fields):
    """Random blocks of `qtype` (N_BLOCKS of 32 values, or 6 super-blocks of
    256) with the f16 fields at the given offsets replaced: fields =
    [(offset, lo, hi, signed)]."""
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    n = N_BLOCKS if bs == 32 else 6
    b = rng.integers(0, 256, (n, ts), dtype=np.uint8)
    for off, lo, hi, signed in fields:
        b[:, off:off + 2] = f16(rng, n, lo, hi, signed)
    return b


def dequant_file(name, qtype, blocks):
    y = dequantize(blocks, qtype).astype(np.float32)
    write(name, qtype, blocks.shape[0], blocks, y)


def quant_file(name, qtype, x):
    q = quantize(x, qtype)
    write(name, qtype, x.size // gguf.GGML_QUANT_SIZES[qtype][0], x, q)


def main():
    rng = np.random.default_rng(20261202)

    # Q4_1: real blocks.
    reader = gguf.GGUFReader(sys.argv[1])
    t = next(t for t in reader.tensors if t.tensor_type == T.Q4_1)
    raw = np.asarray(t.data).view(np.uint8).reshape(-1, 20)[:N_BLOCKS]
    dequant_file("dequant_q4_1.bin", T.Q4_1, np.ascontiguousarray(raw))

    # Q5_1: d > 0, m of either sign.
    dequant_file("dequant_q5_1.bin", T.Q5_1, random_blocks(rng, T.Q5_1, [(0, 1e-3, 0.05, False), (2, 1e-3, 0.5, True)]))
    # IQ4_NL: d of either sign.
    dequant_file("dequant_iq4_nl.bin", T.IQ4_NL, random_blocks(rng, T.IQ4_NL, [(0, 1e-4, 0.01, True)]))
    # Q2_K: scales[16], qs[64], d, dmin.
    dequant_file("dequant_q2_k.bin", T.Q2_K, random_blocks(rng, T.Q2_K, [(80, 1e-3, 0.05, False), (82, 1e-3, 0.05, False)]))
    # Q3_K: hmask[32], qs[64], scales[12], d.
    dequant_file("dequant_q3_k.bin", T.Q3_K, random_blocks(rng, T.Q3_K, [(108, 1e-4, 0.01, True)]))
    # IQ4_XS: d, scales_h, scales_l[4], qs[128].
    dequant_file("dequant_iq4_xs.bin", T.IQ4_XS, random_blocks(rng, T.IQ4_XS, [(0, 1e-4, 0.01, True)]))

    # Quantizers: weights-like floats, with an all-equal block, a zero block
    # and an outlier.
    for name, qtype in [("quant_q4_1.bin", T.Q4_1), ("quant_q5_1.bin", T.Q5_1)]:
        x = (rng.standard_normal(32 * N_BLOCKS) * 0.02).astype(np.float32)
        x[:32] = 0.25
        x[32:64] = 0.0
        x[100] = 0.7
        x[200:232] += 0.05
        quant_file(name, qtype, x)


if __name__ == "__main__":
    main()
