#!/usr/bin/env python3
"""Interleaved speed comparison of `lbm bench` and llama.cpp's `llama-bench`.

Both programs measure the same GGUF files with the same prompt length,
generated tokens, repetitions and thread counts, one after the other (by
default lbm first, then llama.cpp, and with --alternate the order flips on
every file), and the script prints one Markdown table with tokens per second,
the ratio lbm / llama.cpp and the load average before each run. Nothing is
asserted: the figures are for docs/PERFORMANCE.md.

    scripts/bench-vs-llamacpp.py --llama-bench ~/llama.cpp/build/bin/llama-bench \\
        --lbm target/release/lbm -p 256 -n 64 -r 5 -t 1,2 a.gguf b.gguf

`--simd avx2` caps lbm's level (lbm --simd): compare it with a llama.cpp
built for AVX2 only (cmake -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON
-DGGML_F16C=ON). `--json FILE` also writes every raw result.
"""

import argparse
import json
import os
import subprocess
import sys


def load():
    return "%.2f" % os.getloadavg()[0]


def run_lbm(args, model, threads):
    cmd = [args.lbm]
    if args.simd:
        cmd += ["--simd", args.simd]
    cmd += ["bench", "-m", model, "-p", str(args.p), "-n", str(args.n), "-r", str(args.r), "-t", str(threads), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.timeout).stdout
    v = json.loads(out)
    pick = lambda k: (v[k]["median"], v[k]["std"]) if v.get(k) else None
    return {"pp": pick("pp"), "tg": pick("tg"), "simd": v.get("simd"), "type": v.get("type")}


def run_llama(args, model, threads):
    cmd = [args.llama_bench, "-m", model, "-p", str(args.p), "-n", str(args.n), "-r", str(args.r), "-t", str(threads), "-o", "jsonl"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.timeout).stdout
    res = {"pp": None, "tg": None}
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        v = json.loads(line)
        key = "pp" if v.get("n_prompt", 0) > 0 and v.get("n_gen", 0) == 0 else "tg"
        res[key] = (v["avg_ts"], v["stddev_ts"])
    return res


def fmt(x):
    if x is None:
        return "-"
    m, s = x
    digits = 0 if m >= 100 else (1 if m >= 10 else 2)
    return "%.*f ± %.*f" % (digits, m, digits, s)


def ratio(a, b):
    return "%.2f" % (a[0] / b[0]) if a and b and b[0] > 0 else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-bench", required=True, help="path of a llama-bench you built")
    ap.add_argument("--lbm", default="target/release/lbm", help="path of lbm (default: %(default)s)")
    ap.add_argument("-p", type=int, default=256, help="prompt tokens")
    ap.add_argument("-n", type=int, default=64, help="generated tokens")
    ap.add_argument("-r", type=int, default=5, help="repetitions")
    ap.add_argument("-t", type=lambda v: [int(x) for x in v.split(",")], default=[1], help="thread counts, e.g. 1,2")
    ap.add_argument("--simd", help="cap lbm's SIMD level (scalar, avx2, avx512, avx512vnni)")
    ap.add_argument("--alternate", action="store_true", help="flip which program runs first on every file")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()

    rows, raw = [], []
    first_lbm = True
    for threads in args.t:
        for model in args.models:
            order = [("lbm", run_lbm), ("llama", run_llama)]
            if not first_lbm:
                order.reverse()
            if args.alternate:
                first_lbm = not first_lbm
            got, loads = {}, {}
            for name, f in order:
                loads[name] = load()
                got[name] = f(args, model, threads)
            raw.append({"model": model, "threads": threads, "lbm": got["lbm"], "llama": got["llama"], "load": loads})
            a, b = got["lbm"], got["llama"]
            rows.append(
                "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s/%s |"
                % (
                    os.path.basename(model),
                    a.get("type") or "",
                    threads,
                    fmt(a["pp"]),
                    fmt(b["pp"]),
                    ratio(a["pp"], b["pp"]),
                    fmt(a["tg"]),
                    fmt(b["tg"]),
                    ratio(a["tg"], b["tg"]),
                    loads["lbm"],
                    loads["llama"],
                )
            )
            print(rows[-1], file=sys.stderr, flush=True)
    level = raw[0]["lbm"].get("simd") if raw else "?"
    print("lbm level: %s; p=%d n=%d r=%d" % (level, args.p, args.n, args.r))
    print()
    print("| file | type | threads | lbm pp%d | llama.cpp pp%d | ratio | lbm tg%d | llama.cpp tg%d | ratio | load lbm/llama |" % (args.p, args.p, args.n, args.n))
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
