#!/usr/bin/env python3
"""MiniLM sentences/s, this engine against ONNX Runtime, in interleaved rounds.

One run of each says little on a shared machine (this project's 2-core VM moves by 30%
from run to run, ONNX Runtime at batch 1 by more), so each round runs, back to back:

    ours (length programs, tokenization timed), ours --pretokenized (the program alone, as
    ORT is timed), ours --padded, [each --also model dir], ORT int8 and fp32
    (scripts/minilm_ort.py bench: session.run alone), ours again

and the ratio of the round is the mean of the two "ours" runs over ORT int8 (the
like-for-like ratio: ours --pretokenized over ORT int8).  The report
gives one JSON line per round, then a summary line: medians and ranges of every column,
the median, minimum and maximum of the per-round ratios, and how many rounds were above 1.

    .venv/bin/python scripts/minilm_rounds.py --rounds 8 --batch 1 --seconds 3
    .venv/bin/python scripts/minilm_rounds.py --rounds 3 --batch 64 --seconds 6
    .venv/bin/python scripts/minilm_rounds.py --rounds 6 --batch 1 --also /tmp/old-minilm

`make bench-minilm` runs the first two.  Nothing else should run on the machine meanwhile.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ours(binary, model, sentences, batch, seconds, padded=False, pretokenized=False):
    cmd = [str(binary), "bench-embed", "--model", str(model), "--input", str(sentences),
           "--batch", str(batch), "--seconds", str(seconds)]
    if padded:
        cmd.append("--padded")
    if pretokenized:
        cmd.append("--pretokenized")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)["sentences_per_second"])


def ort(python, ort_dir, sentences, batch, seconds, threads):
    cmd = [str(python), str(ROOT / "scripts" / "minilm_ort.py"), "bench", "--dir", str(ort_dir),
           "--input", str(sentences), "--batch", str(batch), "--seconds", str(seconds),
           "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rates = json.loads(out.strip().splitlines()[-1])["sentences_per_s"]
    return float(rates["int8"]), float(rates["fp32"])


def spread(values, digits=1):
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per run")
    p.add_argument("--threads", type=int, default=2, help="ORT intra_op_num_threads")
    p.add_argument("--model", default=str(ROOT / "models" / "minilm"))
    p.add_argument("--input", default=str(ROOT / "data" / "sentences_eval.txt"))
    p.add_argument("--ort-dir", default=str(ROOT / "target" / "minilm-ort"))
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "inference"))
    p.add_argument("--also", action="append", default=[],
                   help="another model directory to run in each round (e.g. an older import)")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    rows = []
    for r in range(args.rounds):
        first = ours(args.binary, args.model, args.input, args.batch, args.seconds)
        pretok = ours(args.binary, args.model, args.input, args.batch, args.seconds,
                      pretokenized=True)
        padded = ours(args.binary, args.model, args.input, args.batch, args.seconds, padded=True)
        also = {d: ours(args.binary, d, args.input, args.batch, args.seconds) for d in args.also}
        int8, fp32 = ort(sys.executable, args.ort_dir, args.input, args.batch, args.seconds,
                         args.threads)
        again = ours(args.binary, args.model, args.input, args.batch, args.seconds)
        row = {"round": r, "batch": args.batch, "ours": round(first, 1),
               "ours_again": round(again, 1), "ours_pretokenized": round(pretok, 1),
               "ours_padded": round(padded, 1), "ort_int8": int8, "ort_fp32": fp32,
               "ratio_ours_over_ort_int8": round((first + again) / 2 / int8, 3),
               "ratio_pretokenized_over_ort_int8": round(pretok / int8, 3)}
        for d, v in also.items():
            row[f"also:{d}"] = round(v, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)

    ratios = [r["ratio_ours_over_ort_int8"] for r in rows]
    like = [r["ratio_pretokenized_over_ort_int8"] for r in rows]
    summary = {
        "summary": True, "batch": args.batch, "rounds": len(rows), "seconds": args.seconds,
        "ours": spread([v for r in rows for v in (r["ours"], r["ours_again"])]),
        "ours_pretokenized": spread([r["ours_pretokenized"] for r in rows]),
        "ours_padded": spread([r["ours_padded"] for r in rows]),
        "ort_int8": spread([r["ort_int8"] for r in rows]),
        "ort_fp32": spread([r["ort_fp32"] for r in rows]),
        "ratio_ours_over_ort_int8": spread(ratios, 3),
        "rounds_ours_faster": sum(1 for x in ratios if x > 1.0),
        "ratio_pretokenized_over_ort_int8": spread(like, 3),
        "rounds_pretokenized_faster": sum(1 for x in like if x > 1.0),
    }
    for d in args.also:
        summary[f"also:{d}"] = spread([r[f"also:{d}"] for r in rows])
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
