"""Task registry: a task name -> a builder returning named splits of `Example`s.

`build_task` also builds the probe splits of `task.params.probes` (BBH, other tasks of this
registry: lab/tasks/probes.py) for every task: a task's own builder never sees `probes`."""

from __future__ import annotations

from collections.abc import Callable

from lab.errors import LabError, suggest
from lab.recipe import TaskCfg
from lab.tasks.aqua import build_gsm8k_with_aqua
from lab.tasks.aqua import describe as describe_gsm8k
from lab.tasks.arithmetic import ArithmeticConfig, build_arithmetic
from lab.tasks.arithmetic import describe as describe_arithmetic
from lab.tasks.base import Example
from lab.tasks.mbpp import build_mbpp_humaneval
from lab.tasks.mbpp import describe as describe_mbpp
from lab.tasks.nli import TASKS as PAIR_TASKS
from lab.tasks.nli import build_pair_task, describer
from lab.tasks.probes import build_probes


def _arithmetic(cfg: TaskCfg) -> dict[str, list[Example]]:
    params = dict(cfg.params)
    ops = str(params.pop("ops", "+-*"))
    if params or not ops or set(ops) - set("+-*") or "+" not in ops:
        raise LabError(
            f"task arithmetic: params {dict(cfg.params)} not understood; the one parameter is "
            "`ops`, a string of operations from '+-*' that includes '+' (e.g. ops: '+-'), "
            "beside `probes` (lab/tasks/probes.py)"
        )
    return build_arithmetic(ArithmeticConfig(cfg.seed, cfg.n_train, cfg.n_dev, cfg.n_test, ops))


TASKS: dict[str, tuple[Callable[[TaskCfg], dict[str, list[Example]]], Callable[[], dict]]] = {
    "arithmetic": (_arithmetic, describe_arithmetic),
    "gsm8k": (build_gsm8k_with_aqua, describe_gsm8k),
    "mbpp_humaneval": (build_mbpp_humaneval, describe_mbpp),
    **{name: (build_pair_task, describer(name)) for name in PAIR_TASKS},
}


def build_task(cfg: TaskCfg) -> dict[str, list[Example]]:
    """The task's splits, then its probe splits (`task.params.probes`), in that order."""
    if cfg.name not in TASKS:
        raise LabError(
            f"unknown task '{cfg.name}'{suggest(cfg.name, TASKS)}; known tasks: {sorted(TASKS)}"
        )
    params = dict(cfg.params)
    probes = params.pop("probes", None)
    splits = TASKS[cfg.name][0](cfg.model_copy(update={"params": params}))
    for name, examples in splits.items():
        if not examples and name != "dev":
            raise LabError(f"task '{cfg.name}' split '{name}' is empty; raise its size in `task:`")
    if probes is not None:
        splits.update(build_probes(probes, cfg, build_task, sorted(TASKS)))
    return splits


def describe_task(name: str) -> dict[str, str]:
    return TASKS[name][1]()
