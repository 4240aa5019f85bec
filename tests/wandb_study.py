"""The smoke study that the W&B review tests read back (tests/report/conftest.py runs it
once per session): two ICL and two FT arms at budgets 2 and 4, offline W&B."""

from __future__ import annotations

import pytest

MAX_MB = 0.25  # between the tiny model's LoRA adapter (~0.16 MB) and its full weights (~0.3)
RECIPE = {
    "name": "wbreview",
    "model": "tiny-random",
    "task": {"n_train": 16, "n_dev": 4, "n_test": 3},
    "seeds": [0],
    "budgets": [2, 4],
    "train": {"steps": 3, "batch_size": 2, "eval_every": 2, "select": "best_dev"},
    "arms": [
        {"name": "zs", "method": "icl", "k": 0},
        {"name": "kshot", "method": "icl", "k": 2},
        {"name": "lora", "method": "lora"},
        {"name": "full", "method": "full"},
    ],
    "eval": {"batch_size": 4, "max_new_tokens": {"answer": 4, "cot": 8, "code": 8}},
    "tracking": {"mode": "auto", "max_upload_mb": MAX_MB},
    "profiles": {"tiny": {"seeds": [0]}},
    "smoke": {"train": {"steps": 3, "batch_size": 2, "select": "best_dev"}},
}
FT = ["lora__b2__d0", "lora__b4__d0", "full__b2__d0", "full__b4__d0"]


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
