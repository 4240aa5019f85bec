"""The fine-tuning case that tests/train_worker.py (N processes) and
tests/train/test_multiprocess_train.py (1 process) both run: the same data and config."""

from __future__ import annotations

from lab.core.example import Example
from lab.core.recipe import TaskCfg, TrainCfg
from lab.tasks import build_task


def data() -> tuple[list[Example], list[Example]]:
    """(train, dev): 16 training examples, 8 ID-dev examples."""
    splits = build_task(TaskCfg(n_train=64, n_dev=8, n_test=6))
    return splits["train"][:16], splits["dev"]


def config(method: str) -> TrainCfg:
    """6 steps of global batch 4, dev loss every 2 steps; a learning rate high enough that
    the ID-dev loss is lowest at step 4, not at the end (a best-dev snapshot is saved); a
    small max_grad_norm (clipping acts at every step); no dropout (each process would draw
    its own masks)."""
    lr = 0.1 if method == "lora" else 0.05
    return TrainCfg(
        steps=6,
        batch_size=4,
        lr=lr,
        schedule="constant",
        eval_every=2,
        save_every=0,
        max_grad_norm=0.05,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
    )
