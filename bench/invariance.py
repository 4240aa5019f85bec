"""The cost of batch-invariant evaluation (eval/invariant.py, the recipe's `eval.invariant`):
the same workloads with the fast kernels and with the invariant ones, interleaved in one
process (fast, invariant, fast, invariant, ...: a shared machine's load hits both alike), at
the dtype given (bf16: what `precision: auto` picks on a CPU with native bf16).

Workloads: `demo`, the prompted arms of `make demo` (recipes/quickstart.yaml, profile demo:
zero-shot and 8-shot answers, 8-shot and zero-shot CoT, on its ID test split, batch 32);
`ll`, `short` and `cot`, the lm-eval comparison workloads of bench/vs_lmeval.py (8-shot
multiple choice on the arithmetic task, on short questions, 8-shot CoT generation; batch 8).
For the scoring workloads it also prints how far the fast kernels' log-likelihoods move
between batch 1 and the bench's batch (the invariant ones: 0, tested in
tests/eval/test_invariant.py).

    nice -n 5 .venv/bin/python -m bench.invariance --dtype bf16 --cache-dir /tmp/ftcache
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from typing import Any

import torch

from bench.common import DTYPES, Timer, header, load_avg, load_lab_model, median, save, torch_dtype
from bench.workloads import mc_requests, short_examples
from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM, GenRequest
from lab.core.prompts import demos_prefix, prompt
from lab.core.recipe import TaskCfg
from lab.tasks import build_task


def demo_workload(n: int) -> Callable[[LM], Any]:
    splits = build_task(
        TaskCfg(n_train=32, n_dev=8, n_test=n, params={"ops": "+-*", "digits": 1, "steps": 1})
    )
    demos, test = tuple(splits["train"][:8]), splits["test"]
    arms = [
        (PromptSpec("answer"), 6),
        (PromptSpec("answer", demos), 6),
        (PromptSpec("cot", demos), 32),
        (PromptSpec("cot", (), "Let's think step by step."), 32),
    ]

    def run(lm: LM) -> Any:
        out = []
        for spec, max_new in arms:
            preds, _ = evaluate_split(lm, test, spec, max_new, gold_logprob=False)
            out += [p["generation"] for p in preds]
        return out

    return run


def ll_workload(n: int, short: bool) -> Callable[[LM], Any]:
    if short:
        train, test = short_examples(64, "train"), short_examples(n, "test")
    else:
        splits = build_task(TaskCfg(n_train=64, n_dev=4, n_test=n, params={"ops": "+-"}))
        train, test = splits["train"], splits["test"]
    reqs, _, _ = mc_requests(train, test, 8, False)
    return lambda lm: [s for s, _g, _n in lm.loglikelihood(reqs)]


def cot_workload(n: int, max_new: int) -> Callable[[LM], Any]:
    splits = build_task(TaskCfg(n_train=64, n_dev=4, n_test=n, params={"ops": "+-"}))
    prefix = demos_prefix(splits["train"][:8], "cot")
    reqs = [GenRequest(prefix, prompt(ex), ("\n",), max_new) for ex in splits["test"]]
    return lambda lm: [g.text for g in lm.generate(reqs)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", nargs="*", default=["demo", "ll", "short", "cot"])
    ap.add_argument("--dtype", default="bf16", choices=DTYPES)
    ap.add_argument("--n-demo", type=int, default=64, help="ID test examples of the demo")
    ap.add_argument("--n", type=int, default=16, help="examples of ll / short / cot")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = header("invariance") | {"dtype": args.dtype, "threads": args.threads, "runs": {}}
    _, model, tok = load_lab_model(args.cache_dir)
    model = copy.deepcopy(model).to(torch_dtype(args.dtype))
    workloads = {
        "demo": (demo_workload(args.n_demo), 32),
        "ll": (ll_workload(args.n, False), 8),
        "short": (ll_workload(args.n, True), 8),
        "cot": (cot_workload(args.n, 48), 8),
    }
    for name in args.which:
        run, bs = workloads[name]
        times: dict[str, list[float]] = {"fast": [], "invariant": []}
        outs: dict[str, Any] = {}
        for rep in range(args.repeats):
            for mode in ("fast", "invariant"):
                lm = LM(model, tok, bs, progress=False, invariant=mode == "invariant")
                with Timer() as t:
                    outs[mode] = run(lm)
                times[mode].append(t.s)
                print(f"[invariance] {name:>5} {mode:>9} #{rep}: {t.s:6.1f} s  load {load_avg()}")
        fast, inv = median(times["fast"]), median(times["invariant"])
        row: dict[str, Any] = {
            "batch_size": bs,
            "fast_s": times["fast"],
            "invariant_s": times["invariant"],
            "ratio": inv / fast,
        }
        if name in ("ll", "short"):  # how far batching moves the fast kernels' scores
            at1 = run(LM(model, tok, 1, progress=False))
            row["fast_max_abs_diff_batch1"] = max(
                abs(a - b) for a, b in zip(at1, outs["fast"], strict=True)
            )
            row["invariant_vs_fast_max_abs_diff"] = max(
                abs(a - b) for a, b in zip(outs["invariant"], outs["fast"], strict=True)
            )
            if args.dtype != "fp32":  # error against fp32 (fast, batch 1: within ~1e-5)
                ref = run(LM(copy.deepcopy(model).float(), tok, 1, progress=False))
                for mode in ("fast", "invariant"):
                    err = [abs(a - b) for a, b in zip(outs[mode], ref, strict=True)]
                    row[f"{mode}_vs_fp32_abs_diff_max_mean"] = (max(err), sum(err) / len(err))
        else:
            same = sum(a == b for a, b in zip(outs["fast"], outs["invariant"], strict=True))
            row["same_outputs_as_fast"] = f"{same}/{len(outs['fast'])}"
        info["runs"][name] = row
        shown = {k: v for k, v in row.items() if "diff" in k or "same" in k}
        print(
            f"[invariance] {name}: invariant / fast = {inv:.1f} s / {fast:.1f} s = "
            f"{inv / fast:.2f}x  {shown}",
            flush=True,
        )
    save(f"invariance_{args.dtype}", info)


if __name__ == "__main__":
    main()
