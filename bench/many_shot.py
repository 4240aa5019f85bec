"""Many-shot evaluation (`k: all`): the demo prefix computed once per variant vs once per call.

    nice -n 5 .venv/bin/python -m bench.many_shot [--budgets 32 64] [--n 16] [--dtype bf16] [--fast]

SmolLM2-135M-Instruct, the quickstart study's arithmetic task (ops +-). For each
budget b, the b-shot prefix (all of the budget: many-shot) is evaluated on `--n` queries of
two splits (ID test and ood_phrasing: generation, then log p(gold), as a study's cell does):

- kept: one LM for both splits, as eval/lm.py now runs: the prefix's KV cache is computed
  once and read by every batch of every call (generation, log p(gold), the next split);
- per call: the same, but the prefix cache is recomputed for every call (what eval/lm.py
  did before: once per generate / loglikelihood call), by a subclass that forgets it.

Both in one process, side by side (the machine is shared: compare the ratio, not seconds).
Prints prefix tokens, prefix forwards, seconds of each path and the predictions' equality.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from bench.common import header, load_avg, load_lab_model, torch_dtype
from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from lab.core.recipe import TaskCfg
from lab.tasks import build_task


class PerCallLM(LM):
    """The prefix cache recomputed at every call (the lab before the cache was kept)."""

    def _prefix_cache(self, ids: list[int]) -> Any:
        self._kept = None
        return super()._prefix_cache(ids)


def run(lm: LM, spec: PromptSpec, splits: dict[str, list[Any]]) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    preds = [evaluate_split(lm, xs, spec, max_new_tokens=10)[0] for xs in splits.values()]
    return time.perf_counter() - t0, preds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--n", type=int, default=16, help="queries per split")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--fast", action="store_true", help="eval.invariant: false (fast kernels)")
    a = ap.parse_args()
    header("many_shot")
    _resolved, model, tok = load_lab_model(a.cache_dir)
    model.to(torch_dtype(a.dtype))
    params = {"ops": "+-"}  # the quickstart study's task (2 digits, 2 steps)
    task = build_task(TaskCfg(n_train=max(a.budgets), n_dev=0, n_test=a.n, params=params))
    splits = {s: task[s][: a.n] for s in ("test", "ood_phrasing")}
    for b in a.budgets:
        spec = PromptSpec("answer", tuple(task["train"][:b]))
        out = {}
        for name, cls in (("kept", LM), ("per call", PerCallLM)):
            lm = cls(model, tok, batch_size=8, progress=False, invariant=not a.fast)
            s, preds = run(lm, spec, splits)
            ph = lm.clock.phases.get("prefix", {"calls": 0, "s": 0.0})
            out[name] = (s, preds, ph["calls"], ph["s"])
        p_len = len(lm.bos) + len(lm.encode(spec.prefix))
        (s_k, p_k, c_k, ps_k), (s_c, p_c, c_c, ps_c) = out["kept"], out["per call"]
        print(
            f"b={b:>4} prefix {p_len:>5} tokens | kept: {s_k:6.1f} s, {c_k} prefix forward(s) "
            f"{ps_k:5.1f} s | per call: {s_c:6.1f} s, {c_c} prefix forwards {ps_c:5.1f} s | "
            f"per call / kept {s_c / s_k:.2f}x | same predictions {p_k == p_c} | "
            f"load {load_avg()}"
        )


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
