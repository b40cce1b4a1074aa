#!/usr/bin/env python3
"""Compare two sets of sentence embeddings row by row: quality of ours vs a reference.

Given OURS and REF, float [n, d] .npy files whose row i embeds the same sentence i
(e.g. `inference embed` or scripts/minilm_ort.py output vs
scripts/minilm_reference.py output), it reports:

  * cosine(ours_i, ref_i) for every row: mean and min (rows are L2-normalized here
    first, so unnormalized input is fine);
  * Spearman rank correlation between the two sets of all pairwise cosine
    similarities (i < j): n(n-1)/2 pairs, ties given average ranks.  This is what a
    semantic-search user feels: does the model still rank pairs the same way.

It prints a small table (with the worst rows, and their text when --sentences is
given) and one JSON line, then exits 1 if any threshold given is not met
(2 on bad input).  Needs only numpy.

    .venv/bin/python scripts/quality_minilm.py --ours /tmp/ours.npy --reference /tmp/ref.npy \\
        --sentences data/sentences_eval.txt --min-mean 0.99 --min-min 0.97 --min-spearman 0.98
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties get the average of their ranks (as scipy's 'average')."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    # boundaries of runs of equal values
    new = np.concatenate(([True], s[1:] != s[:-1], [True]))
    idx = np.flatnonzero(new)
    ranks_sorted = np.empty(len(a), dtype=np.float64)
    for lo, hi in zip(idx[:-1], idx[1:]):
        ranks_sorted[lo:hi] = (lo + 1 + hi) / 2.0  # mean of lo+1 .. hi
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    o, r = normalize(ours), normalize(ref)
    row_cos = (o * r).sum(1)
    iu = np.triu_indices(len(o), k=1)
    so, sr = (o @ o.T)[iu], (r @ r.T)[iu]
    return {
        "n": int(len(o)),
        "dim": int(o.shape[1]),
        "mean_cos": float(row_cos.mean()),
        "min_cos": float(row_cos.min()),
        "argmin_cos": int(row_cos.argmin()),
        "spearman": spearman(so, sr) if len(so) > 1 else float("nan"),
        "pairs": int(len(so)),
        "pair_sim_max_abs_diff": float(np.abs(so - sr).max()) if len(so) else 0.0,
        "row_cos": row_cos,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", required=True, help=".npy [n, d] to judge")
    ap.add_argument("--reference", required=True, help=".npy [n, d] float reference")
    ap.add_argument("--sentences", help="the input text file (one sentence a line) to show worst rows")
    ap.add_argument("--worst", type=int, default=5, help="how many worst rows to list")
    ap.add_argument("--min-mean", type=float, help="fail if mean row cosine is below this")
    ap.add_argument("--min-min", type=float, help="fail if min row cosine is below this")
    ap.add_argument("--min-spearman", type=float, help="fail if pairwise Spearman is below this")
    ap.add_argument("--label", default="", help="name for this comparison in the JSON line")
    args = ap.parse_args(argv)

    ours, ref = np.load(args.ours), np.load(args.reference)
    if ours.ndim != 2 or ours.shape != ref.shape:
        print(f"shape mismatch: ours {ours.shape} vs reference {ref.shape}", file=sys.stderr)
        return 2
    if not (np.isfinite(ours).all() and np.isfinite(ref).all()):
        print("non-finite values in the embeddings", file=sys.stderr)
        return 2
    sentences = None
    if args.sentences:
        with open(args.sentences, encoding="utf-8") as f:
            sentences = [s.rstrip("\r\n") for s in f if s.strip()]
        if len(sentences) != len(ours):
            print(f"{args.sentences} has {len(sentences)} sentences, embeddings have {len(ours)} rows",
                  file=sys.stderr)
            return 2

    r = compare(ours, ref)
    checks = [("mean cosine", r["mean_cos"], args.min_mean),
              ("min cosine", r["min_cos"], args.min_min),
              ("Spearman (pairwise sims)", r["spearman"], args.min_spearman)]
    print(f"{args.ours} vs {args.reference}: {r['n']} rows x {r['dim']}, {r['pairs']} pairs")
    print(f"  {'metric':<26}{'value':>10}  {'threshold':>10}  result")
    failed = []
    for name, val, thr in checks:
        ok = thr is None or (val >= thr)  # NaN fails a threshold
        if not ok:
            failed.append(name)
        print(f"  {name:<26}{val:>10.5f}  {('>= %.4f' % thr) if thr is not None else '-':>10}  "
              f"{'' if thr is None else ('ok' if ok else 'FAIL')}")
    print(f"  {'max |pair sim diff|':<26}{r['pair_sim_max_abs_diff']:>10.5f}")
    worst = np.argsort(r["row_cos"])[: args.worst]
    print("  worst rows:")
    for i in worst:
        text = f"  {sentences[i][:70]!r}" if sentences else ""
        print(f"    #{i:<4} cos {r['row_cos'][i]:.5f}{text}")
    out = {k: v for k, v in r.items() if k != "row_cos"}
    out.update({"label": args.label, "ours": args.ours, "reference": args.reference,
                "pass": not failed, "failed": failed})
    print(json.dumps(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
