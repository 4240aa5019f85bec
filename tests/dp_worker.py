"""Run by tests/eval/test_parallel.py as 2 CPU ranks (tests/ranks.py):
data-parallel evaluation of the sharp tiny model; the main process writes what it gathered.
With a third argument `invariant` (tests/eval/test_invariant.py): batch-invariant evaluation
at fp32 and at bf16, each precision's predictions under its name."""

from __future__ import annotations

import copy
import json
import sys

import torch
from sharp import sharpen

from eval.evaluate import PromptSpec
from eval.lm import LM
from eval.parallel import evaluate_split_parallel, sum_across
from lab.core.recipe import TaskCfg
from lab.study.models import load_model, resolve_model
from lab.tasks import build_task


def sharp_model(cache: str):
    """The tiny random model with its matrices re-drawn at std 0.2 (as tests/eval/test_lm.py)."""
    model, tok = load_model(resolve_model("tiny-random", cache).path)
    return sharpen(model, 0), tok


def case():
    """(examples, spec): 9 examples (an odd number: unequal shards), 2 CoT demos."""
    splits = build_task(TaskCfg(n_train=64, n_dev=8, n_test=6))
    return splits["test"] + splits["ood_steps"][:3], PromptSpec("cot", tuple(splits["train"][:2]))


def main() -> None:
    torch.set_num_threads(1)
    cache, out = sys.argv[1], sys.argv[2]
    from accelerate import Accelerator

    state = Accelerator()  # as lab/study/run.py
    model, tok = sharp_model(cache)
    if sys.argv[3:] == ["invariant"]:
        got = {}
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            lm = LM(copy.deepcopy(model).to(dt), tok, batch_size=3, progress=False, invariant=True)
            got[name] = evaluate_split_parallel(lm, *case(), 8)[0]
        if state.is_main_process:
            with open(out, "w") as f:
                json.dump({"preds": got, "world": state.num_processes}, f)
        return
    lm = LM(model, tok, batch_size=4, progress=False)
    examples, spec = case()
    preds, metrics = evaluate_split_parallel(lm, examples, spec, 8)
    tokens = sum_across(lm.counts["tokens"])
    if state.is_main_process:
        with open(out, "w") as f:
            json.dump(
                {
                    "preds": preds,
                    "metrics": metrics,
                    "tokens": tokens,
                    "world": state.num_processes,
                },
                f,
            )


if __name__ == "__main__":
    main()
