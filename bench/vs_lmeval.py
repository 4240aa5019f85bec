"""This lab's k-shot evaluation vs lm-evaluation-harness (HF backend), side by side.

    bench/setup_lmeval.sh                      # once: bench/.venv-lmeval with lm-eval
    nice -n 5 bench/.venv-lmeval/bin/python -m bench.vs_lmeval [ll|short|cot|all]
        [--dtype fp32|bf16] [--cache-dir DIR]

One process, one loaded model (SmolLM2-135M-Instruct through lab.study.models, cast here to
`--dtype`, independent of the lab's precision setting), shared by both sides: lm-eval gets
it as `HFLM(pretrained=model)`. The data (bench/workloads.py) are written to runs/bench/data/
as JSONL for lm-eval's task YAMLs in bench/lmeval_tasks/.

- ll: the lab's arithmetic task as 4-way multiple choice (gold + 3 near-miss integers),
  k = 8 and k = 32 demos (the first k train examples), scored by sum log p(" choice"): lab
  `LM.loglikelihood` vs lm-eval `simple_evaluate` on task lab_arith_mc (metric acc).
- short: short questions ("17 + 25", ~5 tokens) with 1-3-token choices: k = 8 shared demos
  (lab_short_mc), k = 8 with a different demo set per example (lab_short_mc_pe: each doc
  carries its own demos, so both sides see one prefix per example, as with lm-eval's
  default sampling), and k = 32 shared demos.
- cot: greedy 8-shot chain of thought, stop at "\\n", 48 new tokens at most: lab
  `LM.generate` vs lm-eval `generate_until` (task lab_arith_cot).

The prompts lm-eval builds are checked equal to the lab's, string for string, before any
figure is printed. Sides alternate lab, lm-eval, lab, lm-eval, ...; figures are medians.
Timed: everything from the examples to the scores (lm-eval: the whole simple_evaluate call).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from bench.common import (
    DTYPES,
    OUT,
    ROOT,
    Timer,
    header,
    load_lab_model,
    median,
    save,
    torch_dtype,
)
from bench.workloads import choices_for, mc_requests, per_example_demos, short_examples
from eval.lm import LM, GenRequest
from eval.packed import unpacked
from lab.core.example import Example
from lab.core.io import atomic_write_jsonl
from lab.core.prompts import demos_prefix, prompt
from lab.core.recipe import TaskCfg
from lab.tasks import build_task

TASKS = ROOT / "bench" / "lmeval_tasks"


def write_data(stem: str, train: list[Example], test: list[Example], k_pe: int = 8) -> None:
    """JSONL for lm-eval; each test doc also carries its own k_pe-demo prefix (`demos`)."""

    def rows(exs: list[Example], with_demos: bool) -> list[dict[str, Any]]:
        out = []
        for ex in exs:
            ch, gold = choices_for(ex)
            demos = demos_prefix(per_example_demos(train, ex, k_pe), "answer") if with_demos else ""
            out.append(
                {
                    "id": ex.id,
                    "question": ex.question,
                    "answer": ex.answer,
                    "rationale": ex.rationale,
                    "choices": ch,
                    "gold": gold,
                    "demos": demos,
                }
            )
        return out

    atomic_write_jsonl(OUT / "data" / f"{stem}_train.jsonl", rows(train, False))
    atomic_write_jsonl(OUT / "data" / f"{stem}_test.jsonl", rows(test, True))


class ModelTime:
    """Seconds lm-eval spends inside the model calls (`HFLM.loglikelihood` / `generate_until`:
    tokenisation, batching, forward passes), apart from its task and prompt building."""

    def __init__(self, hflm: Any):
        self.s = 0.0
        for name in ("loglikelihood", "generate_until"):
            setattr(hflm, name, self._timed(getattr(hflm, name)))

    @classmethod
    def of(cls, hflm: Any) -> ModelTime:
        if not hasattr(hflm, "_bench_clock"):
            hflm._bench_clock = cls(hflm)
        return hflm._bench_clock

    def _timed(self, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Timer() as t:
                out = fn(*args, **kwargs)
            self.s += t.s
            return out

        return wrapper


def run_lmeval(
    hflm: Any, tm: Any, task: str, k: int, n: int, gen_kwargs: str | None = None
) -> list[dict[str, Any]]:
    from lm_eval import simple_evaluate

    with unpacked(hflm.model):  # lm-eval runs the stock linear layers, as it would alone
        res = simple_evaluate(
            model=hflm,
            tasks=[task],
            num_fewshot=k,
            limit=n,
            log_samples=True,
            task_manager=tm,
            bootstrap_iters=0,
            verbosity="WARNING",
            gen_kwargs=gen_kwargs,
        )
    return sorted(res["samples"][task], key=lambda s: s["doc_id"])


def lab_mc(
    lm: LM, train: list[Example], test: list[Example], k: int, pe: bool
) -> list[list[float]]:
    reqs, spans, _ = mc_requests(train, test, k, pe)
    scored = iter(lm.loglikelihood(reqs))
    return [[next(scored)[0] for _ in range(s)] for s in spans]


def lab_cot(lm: LM, demos: list[Example], test: list[Example], max_new: int) -> list[str]:
    prefix = demos_prefix(demos, "cot")
    gens = lm.generate([GenRequest(prefix, prompt(ex), ("\n",), max_new) for ex in test])
    return [g.text for g in gens]


def check_prompts(samples: list[dict[str, Any]], want: list[str]) -> None:
    for s, w in zip(samples, want, strict=True):
        ctx = s["arguments"][0][0] if isinstance(s["arguments"][0], list | tuple) else None
        ctx = ctx if ctx is not None else s["arguments"]["gen_args_0"]["arg_0"]
        if ctx != w:
            raise SystemExit(f"lm-eval's prompt differs from the lab's:\n{ctx!r}\n!=\n{w!r}")


def argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))


def bench_ll(
    lm: LM,
    hflm: Any,
    tm: Any,
    task: str,
    train,
    test,
    k: int,
    n: int,
    repeats: int,
    per_example: bool = False,
    goal: float = 3.0,
) -> dict:
    test = test[:n]
    golds = [choices_for(ex)[1] for ex in test]
    label = f"{task} k={k}"
    times: dict[str, list[float]] = {"lab": [], "lm_eval": [], "lm_eval_model": []}
    clock = ModelTime.of(hflm)
    for rep in range(repeats):
        with Timer() as t:
            ours = lab_mc(lm, train, test, k, per_example)
        times["lab"].append(t.s)
        clock.s = 0.0
        with Timer() as t:
            samples = run_lmeval(hflm, tm, task, 0 if per_example else k, n)
        times["lm_eval"].append(t.s)
        times["lm_eval_model"].append(clock.s)
        print(
            f"[{label}] repeat {rep}: lab {times['lab'][-1]:.2f} s, "
            f"lm-eval {times['lm_eval'][-1]:.2f} s (in model calls "
            f"{times['lm_eval_model'][-1]:.2f} s)"
        )
    check_prompts(samples, mc_requests(train, test, k, per_example)[2])
    theirs = [[float(r[0][0]) for r in s["resps"]] for s in samples]
    acc_lab = sum(argmax(o) == g for o, g in zip(ours, golds, strict=True)) / n
    acc_lm = sum(float(s["acc"]) for s in samples) / n
    same_pick = sum(argmax(a) == argmax(b) for a, b in zip(ours, theirs, strict=True)) / n
    diff = max(
        abs(x - y) for a, b in zip(ours, theirs, strict=True) for x, y in zip(a, b, strict=True)
    )
    lab_s, lm_s = median(times["lab"]), median(times["lm_eval"])
    lm_model_s = median(times["lm_eval_model"])
    out = {
        "task": task,
        "k": k,
        "per_example_demos": per_example,
        "n": n,
        "choices": 4,
        "times_s": times,
        "lab_ex_per_s": n / lab_s,
        "lmeval_ex_per_s": n / lm_s,
        "ratio": lm_s / lab_s,
        "goal": goal,
        "ratio_model_calls_only": lm_model_s / lab_s,
        "acc_lab": acc_lab,
        "acc_lmeval": acc_lm,
        "same_choice": same_pick,
        "max_abs_loglik_diff": diff,
    }
    print(
        f"[{label}] n={n}: lab {n / lab_s:.2f} ex/s vs lm-eval {n / lm_s:.3f} ex/s = "
        f"{lm_s / lab_s:.1f}x (goal >= {goal:g}x; {lm_model_s / lab_s:.1f}x counting only lm-eval's model "
        f"calls); acc lab {acc_lab:.3f} vs lm-eval {acc_lm:.3f}; "
        f"same choice {same_pick:.0%}; max |loglik diff| {diff:.1e}"
    )
    return out


def bench_cot(lm: LM, hflm: Any, tm: Any, train, test, n: int, repeats: int, max_new: int):
    demos, test = train[:8], test[:n]
    times: dict[str, list[float]] = {"lab": [], "lm_eval": [], "lm_eval_model": []}
    clock = ModelTime.of(hflm)
    for rep in range(repeats):
        with Timer() as t:
            ours = lab_cot(lm, demos, test, max_new)
        times["lab"].append(t.s)
        clock.s = 0.0
        with Timer() as t:
            samples = run_lmeval(hflm, tm, "lab_arith_cot", 8, n, f"max_gen_toks={max_new}")
        times["lm_eval"].append(t.s)
        times["lm_eval_model"].append(clock.s)
        print(
            f"[cot] repeat {rep}: lab {times['lab'][-1]:.2f} s, "
            f"lm-eval {times['lm_eval'][-1]:.2f} s (in model calls "
            f"{times['lm_eval_model'][-1]:.2f} s)"
        )
    check_prompts(samples, [demos_prefix(demos, "cot") + prompt(ex) for ex in test])
    theirs = [s["resps"][0][0] for s in samples]
    same = [a == b for a, b in zip(ours, theirs, strict=True)]
    diffs = [(ex.id, a, b) for ex, a, b, s in zip(test, ours, theirs, same, strict=True) if not s]
    lab_s, lm_s = median(times["lab"]), median(times["lm_eval"])
    lm_model_s = median(times["lm_eval_model"])
    out = {
        "k": 8,
        "n": n,
        "max_new_tokens": max_new,
        "times_s": times,
        "lab_ex_per_s": n / lab_s,
        "lmeval_ex_per_s": n / lm_s,
        "ratio": lm_s / lab_s,
        "ratio_model_calls_only": lm_model_s / lab_s,
        "goal": 3.0,
        "identical": sum(same) / n,
        "differences": diffs,
        "lab_outputs": ours,
        "lmeval_outputs": theirs,
    }
    print(
        f"[cot] n={n}: lab {n / lab_s:.2f} ex/s vs lm-eval {n / lm_s:.3f} ex/s = "
        f"{lm_s / lab_s:.1f}x (goal >= 3x; {lm_model_s / lab_s:.1f}x counting only lm-eval's model "
        f"calls); identical outputs {sum(same)}/{n}"
    )
    for d in diffs:
        print(f"[cot]   differs: {json.dumps(d)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", nargs="?", default="all", choices=["ll", "short", "cot", "all"])
    ap.add_argument("--n8", type=int, default=8, help="examples scored at k=8")
    ap.add_argument("--n32", type=int, default=2, help="examples scored at k=32")
    ap.add_argument("--n-short", type=int, default=16, help="short-question examples")
    ap.add_argument("--n-cot", type=int, default=8)
    ap.add_argument("--dtype", default="fp32", choices=DTYPES, help="both sides (cast here)")
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8, help="both sides")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (shared machine: 1)")
    ap.add_argument("--cache-dir")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    info = header("vs_lmeval")
    info.update(vars(args))
    n_test = max(args.n8, args.n32, args.n_cot)
    splits = build_task(TaskCfg(n_train=64, n_dev=8, n_test=n_test))
    train, test = splits["train"][:32], splits["test"]
    write_data("arith_mc", train, test)
    s_train, s_test = short_examples(64, "train"), short_examples(args.n_short, "test")
    write_data("short_mc", s_train, s_test)
    resolved, model, tok = load_lab_model(args.cache_dir)
    model = model.to(torch_dtype(args.dtype))
    info["model"] = {"path": resolved.path, "fingerprint": resolved.fingerprint}
    lm = LM(model, tok, batch_size=args.batch_size, progress=False)
    # log-softmax in fp32 on both sides (the lab always takes it in fp32; lm-eval's default
    # is the model's dtype, which in bf16 moves log-likelihoods by ~0.2 nats)
    hflm = HFLM(
        pretrained=model, tokenizer=tok, batch_size=args.batch_size, softmax_dtype=torch.float32
    )
    ModelTime.of(hflm)
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(TASKS))  # indexes lm-eval's own tasks too: built once
    import lm_eval

    info["lm_eval_version"] = lm_eval.__version__
    if args.which in ("ll", "all"):
        args_ll = (lm, hflm, tm, "lab_arith_mc", train, test)
        info["ll_k8"] = bench_ll(*args_ll, 8, args.n8, args.repeats)
        info["ll_k32"] = bench_ll(*args_ll, 32, args.n32, args.repeats)
    if args.which in ("short", "all"):
        n, r = args.n_short, args.repeats
        info["short_k8"] = bench_ll(lm, hflm, tm, "lab_short_mc", s_train, s_test, 8, n, r)
        info["short_k8_per_example"] = bench_ll(
            lm, hflm, tm, "lab_short_mc_pe", s_train, s_test, 8, n, r, per_example=True, goal=2.0
        )
        info["short_k32"] = bench_ll(
            lm, hflm, tm, "lab_short_mc", s_train, s_test, 32, n, r, goal=5.0
        )
    if args.which in ("cot", "all"):
        info["cot"] = bench_cot(lm, hflm, tm, train, test, args.n_cot, args.repeats, args.max_new)
    save(f"vs_lmeval_{args.which}_{args.dtype}", info)


if __name__ == "__main__":
    main()
