"""Shared fixtures: the tiny random model (built once per session) and small task splits."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lab.core.recipe import TaskCfg
from lab.study.models import load_model, resolve_model
from lab.tasks import build_task

# The tests mirror the packages (tests/core, tests/tasks, ...); their shared helpers (sharp.py,
# worker scripts, W&B record readers) stay here, importable from every folder.
sys.path.insert(0, str(Path(__file__).parent))

# The tiny model's matmuls are far too small to gain from threads; with several threads on a
# shared 2-core machine LoRA training was ~70x slower (16 s vs 0.2 s) from thread contention.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_path(tiny_cache):
    return resolve_model("tiny-random", tiny_cache).path


@pytest.fixture(scope="session")
def tiny_chat_path(tiny_cache):
    """The tiny model with a ChatML chat template (its end of turn is not EOS)."""
    return resolve_model("tiny-random-chat", tiny_cache).path


@pytest.fixture(scope="session")
def tiny_model(tiny_path):
    """(model, tokenizer) of the tiny random model. Shared: tests must not modify it."""
    return load_model(tiny_path)


@pytest.fixture(scope="session")
def splits():
    return build_task(TaskCfg(n_train=64, n_dev=8, n_test=6))
