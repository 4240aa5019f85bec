"""Shared fixtures: the tiny random model (built once per session) and small task splits."""

from __future__ import annotations

import gc
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


@pytest.fixture(scope="module", autouse=True)
def frozen_heap_per_file():
    """What exists when a test file starts (the modules, pytest's ~900 collected tests, the
    session's models) is collected and frozen (gc.freeze): the full collections that free
    models (accelerate's free_memory, eval/merge.py, the study loop) then scan one file's
    objects, not the whole process (0.13-0.4 s each; ~45 s of CPU over the suite before).
    Nothing is frozen without being collected first; the study loop keeps this freeze
    (lab/study/run.py frozen_heap)."""
    gc.collect()
    gc.freeze()


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


# Scheduling for `make test` (pytest-xdist `--dist loadfile --no-loadscope-reorder`): a test
# file runs whole on one worker (its module fixtures built once there), and the files are
# handed out in collection order. xdist's own order (files with the most tests first) left
# the 2-process studies and reliability runs, a few tests each but ~45% of the suite's time,
# to the end, queued on one worker. Here they come first, heaviest first (measured with
# --durations, 2026-12-07), then every other file as collected, so the workers end together
# (3 workers on 2 cores: within 20 s of each other). (`--dist loadgroup` would let a file be
# split, but xdist 3.8 cannot name the groups under pytest 9.)
HEAVIEST_FIRST = [
    "tests/study/test_multiprocess_study.py",
    "tests/study/test_reliability.py",
    "tests/study/test_study.py",
    "tests/study/test_beyond_study.py",
    "tests/study/test_format_study.py",
    "tests/study/test_chat_study.py",
    "tests/study/test_arms.py",
    "tests/study/test_code_recipes_smoke.py",
    "tests/study/test_gpu_check.py",
    "tests/train/test_multiprocess_train.py",
    "tests/study/test_workers.py",
    "tests/train/test_train_live_log.py",
    "tests/eval/test_sandbox_hosts.py",
    "tests/study/test_nli_study.py",
    "tests/report/test_wandb_review.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda it: rank.get(it.nodeid.split("::")[0], len(rank)))  # stable sort
