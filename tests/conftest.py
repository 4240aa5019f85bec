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
def tiny_model(tiny_path):
    """(model, tokenizer) of the tiny random model. Shared: tests must not modify it."""
    return load_model(tiny_path)


@pytest.fixture(scope="session")
def splits():
    return build_task(TaskCfg(n_train=64, n_dev=8, n_test=6))


# Scheduling for `make test` (pytest-xdist `--dist loadgroup --no-loadscope-reorder`): a group
# runs whole on one worker (its module and session fixtures built once there), and the groups
# are handed out in the order below, heaviest first, then every other file in collection
# order; the two workers then end together. A file is its own group except where named here:
# the tests of a slow file that share no fixture are split, so that both workers take part,
# and files that read one session fixture are joined, so that it is built once.
# Measured (--durations, `uptime` load ~12 of 2 cores, 2026-12-07): the 2-process studies and
# reliability runs below are ~45% of the suite's time.
GROUPS = {
    "tests/study/test_multiprocess_study.py::test_file_system_decisions_are_the_main_processs": (
        "multiprocess_study_fs"
    ),
    "tests/study/test_multiprocess_study.py::test_process_group_timeout_covers_the_main_processs_work": (  # noqa: E501
        "multiprocess_study_timeout"
    ),
    "tests/study/test_reliability.py::test_two_processes_match_one": "reliability_two_processes",
    "tests/report/test_wandb_keys.py": "wandb_study",  # tests/report/conftest.py's `study`
    "tests/report/test_wandb_review.py": "wandb_study",
    "tests/report/test_report_view.py": "wandb_study",
}
HEAVIEST_FIRST = [
    "tests/study/test_multiprocess_study.py",  # the ZeRO-3 pair and their one-process study
    "tests/study/test_reliability.py",
    "tests/study/test_study.py",
    "tests/study/test_code_recipes_smoke.py",
    "multiprocess_study_timeout",
    "tests/study/test_gpu_check.py",
    "tests/train/test_multiprocess_train.py",
    "multiprocess_study_fs",
    "reliability_two_processes",
    "wandb_study",
    "tests/study/test_workers.py",
    "tests/train/test_train_live_log.py",
    "tests/eval/test_sandbox_hosts.py",
    "tests/study/test_nli_study.py",
]


def _group(item: pytest.Item) -> str:
    path = item.nodeid.split("::")[0]
    name = item.nodeid.split("[")[0]
    return GROUPS.get(name) or GROUPS.get(path) or path


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups in the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {g: i for i, g in enumerate(HEAVIEST_FIRST)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    items.sort(key=lambda it: rank.get(_group(it), len(rank)))  # stable: the rest keep order
