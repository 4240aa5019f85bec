"""Quickstart wall time, before and after the lab's optimisations.

`make demo` is `python -m lab run recipes/quickstart.yaml --profile demo`. This script runs
exactly that command, interleaved (after, before, after, before, ...), each time into a
fresh output directory:

- **after**: the lab as it ships;
- **before**: the same command with `FTLAB_BASELINE=1` (eval/lm.py), which turns off what
  issue 4 built for evaluation and training: the shared-prefix KV cache (every request
  runs whole), the preallocated KV cache (the stock one concatenates at every step), the
  LM head only at scored / supervised positions (it runs at every position), and per-row
  stopping (a batch decodes until its last row stops); and what issue 17 built: tree-shaped
  scoring (choices sharing their context), batching of per-example prefixes, packed
  training micro-batches and the fused AdamW step. Batches stay length-sorted.

Both use the same cached model conversion (`bench/model_load.py` times conversion vs
cached reload separately) and W&B in offline mode. The script then checks that both modes
produced the same results: every exact-match value equal, log p(gold) within 1e-3.

    python -m bench.quickstart --cache-dir /tmp/ftcache [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import OUT, ROOT, Timer, header, median, save


def run_once(mode: str, rep: int, args: argparse.Namespace) -> dict:
    out = OUT / "quickstart" / f"{mode}-{rep}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), WANDB_MODE="offline")
    env.pop("FTLAB_BASELINE", None)
    if mode == "before":
        env["FTLAB_BASELINE"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "lab",
        "run",
        "recipes/quickstart.yaml",
        "--profile",
        args.profile,
        "--out",
        str(out),
        "--quiet",
    ]
    if args.cache_dir:
        cmd += ["--cache-dir", args.cache_dir]
    with Timer() as t:
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("cells/*/cell.json"))]
    train_s = sum(c.get("compute", {}).get("train_s", 0.0) for c in cells)
    eval_s = sum(c.get("compute", {}).get("eval_s", 0.0) for c in cells)
    print(
        f"[quickstart] {mode:>6} #{rep}: {t.s:7.1f} s wall (train {train_s:.0f} s, eval "
        f"{eval_s:.0f} s, {len(cells)} cells)",
        flush=True,
    )
    return {"wall_s": t.s, "train_s": train_s, "eval_s": eval_s, "out": str(out)}


def results(out: str) -> dict[tuple, float]:
    rows = [json.loads(x) for x in Path(out, "results.jsonl").read_text().splitlines() if x]
    return {(r["cell"], r.get("variant"), r["split"], r["metric"]): r["value"] for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--cache-dir")
    args = ap.parse_args()
    info = header("quickstart")
    runs: dict[str, list[dict]] = {"after": [], "before": []}
    for rep in range(args.repeats):
        for mode in ("after", "before"):
            runs[mode].append(run_once(mode, rep, args))
    a, b = results(runs["after"][0]["out"]), results(runs["before"][0]["out"])
    assert a.keys() == b.keys(), "the two modes wrote different result rows"
    em = [k for k in a if k[-1] == "exact_match"]
    em_same = sum(a[k] == b[k] for k in em)
    lp_diff = max((abs(a[k] - b[k]) for k in a if k[-1] == "gold_logprob"), default=0.0)
    med = {
        m: {k: median([r[k] for r in runs[m]]) for k in ("wall_s", "train_s", "eval_s")}
        for m in runs
    }
    info.update(
        profile=args.profile,
        threads=args.threads,
        runs=runs,
        median=med,
        speedup=med["before"]["wall_s"] / med["after"]["wall_s"],
        exact_match_rows_equal=f"{em_same}/{len(em)}",
        max_gold_logprob_diff=lp_diff,
    )
    for m in ("before", "after"):
        print(
            f"[quickstart] {m:>6}: median wall {med[m]['wall_s']:.1f} s (train "
            f"{med[m]['train_s']:.0f} s, eval {med[m]['eval_s']:.0f} s)"
        )
    print(
        f"[quickstart] speed-up {info['speedup']:.2f}x; exact-match rows equal "
        f"{em_same}/{len(em)}; max |log p(gold) diff| {lp_diff:.2e}"
    )
    save("quickstart", info)


if __name__ == "__main__":
    main()
