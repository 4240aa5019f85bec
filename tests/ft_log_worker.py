"""Run by tests/train/test_train_live_log.py (1 process, or 2 CPU ranks: tests/ranks.py):
fine-tune the tiny model with an `on_log` that records its calls; each rank writes them."""

from __future__ import annotations

import json
import sys

import torch
from accelerate import Accelerator

from lab.core.recipe import TaskCfg, TrainCfg
from lab.study.models import resolve_model
from lab.tasks import build_task
from train.finetune import finetune

CFG = TrainCfg(steps=3, batch_size=4, lr=1e-3, eval_every=2, warmup_ratio=0.0)


def main() -> None:
    torch.set_num_threads(1)
    cache, out = sys.argv[1], sys.argv[2]
    acc = Accelerator()
    splits = build_task(TaskCfg(n_train=16, n_dev=4, n_test=2))
    calls: list[dict[str, float]] = []
    res = finetune(
        resolve_model("tiny-random", cache).path,
        splits["train"][:8],
        "answer",
        "lora",
        CFG,
        0,
        f"{out}/ckpt",
        accelerator=acc,
        progress=False,
        dev_examples=splits["dev"],
        on_log=calls.append,
    )
    result = {
        "calls": calls,
        "losses": res.losses,
        "dev_losses": res.dev_losses,
        "train_tokens": res.train_tokens,
        "world": acc.num_processes,
    }
    with open(f"{out}/rank{acc.process_index}.json", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
