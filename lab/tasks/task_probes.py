"""Cross-task probes: the eval splits of ANOTHER task of the lab, evaluated on every arm of a
study with that task's own scoring, and one fixed prompt for every arm.

The question they answer: does fine-tuning on one task (e.g. MBPP code) help or hurt the
others (GSM8K math, MNLI -> HANS)? A probe is asked exactly the same way of a prompted arm
and of a fine-tuned one, so only the weights (and, for ICL arms, nothing at all) differ::

    task:
      name: mbpp_humaneval
      params:
        probes:
          tasks:
            gsm8k:     {n: 20, k: 4, format: answer, splits: [test, ood_svamp]}
            mnli_hans: {n: 40, splits: [test, ood_hans]}

Each probed task is built through the normal registry (``lab.tasks.build_task``) with a
``TaskCfg`` of its own: the study's ``task.seed`` (or the probe's ``seed``), ``source`` and
``data_dir``, ``n_test = n`` (so a probe split is the same seeded sample the probed task's
own study takes at that seed and size: a prefix of one permutation), its whole train pool
(for the demos) and no dev split.

Splits: ``probe_<task>_<split>`` (``probe_gsm8k_test``, ``probe_mnli_hans_ood_hans``), in
the order of ``splits``; ids ``probe_<task>_<original id>``. Every example keeps its own
meta (tests for code, HANS heuristics...) and gains ``probe`` (the probed task: the probe
family of the rows and of the macro average ``probe_<task>``), ``probed_split``,
``probe_format``, ``demo_ids`` and ``demos``: the k demos, the first k of a seeded
permutation of the probed task's train pool (those with a target in ``format``), the same
tuple for every example and every arm (``eval.probes.task_probe_spec`` turns it into the
prompt; the predictions files keep only ``demo_ids``).

Options (``probes.tasks.<task>``): ``n`` (examples per split, default 20), ``k`` (demos,
default 0), ``format`` (answer | cot | code; default: the first the task has targets for,
``code`` for mbpp_humaneval), ``splits`` (default: ``test`` and every OOD split of the
task), ``seed`` (default: ``task.seed``), ``max_new_tokens`` (default: the study's
``eval.max_new_tokens[format]``), ``params`` (the probed task's own params).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lab.core.errors import LabError, suggest
from lab.core.example import ID_EVAL_SPLIT, Example, is_ood, usable
from lab.core.recipe import TaskCfg

TaskBuilder = Callable[[TaskCfg], dict[str, list[Example]]]

FORMATS = ("answer", "cot", "code")
OPTIONS = ("n", "k", "format", "splits", "seed", "max_new_tokens", "params")
DEFAULT_N = 20
# n_train of a probed task: at least every benchmark's train pool, so the demos are drawn
# from the whole pool (the synthetic arithmetic task generates this many).
PROBE_POOL = 10_000


def _where(task: str) -> str:
    return f"task.params.probes.tasks.{task}"


def _int_option(
    opts: dict[str, Any], key: str, default: int | None, least: int, task: str
) -> int | None:
    value = opts.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        kind = "a positive integer" if least > 0 else "a non-negative integer"
        raise LabError(f"{_where(task)}.{key} must be {kind} (got {value!r}); fix its value")
    return value


def _options(task: str, opts: Any, known: list[str], own: str) -> dict[str, Any]:
    """The checked options of one probed task (types only; splits and k need the task)."""
    where = _where(task)
    if task not in known:
        raise LabError(
            f"task.params.probes.tasks: unknown task '{task}'{suggest(task, known)}; "
            f"known tasks: {', '.join(known)}"
        )
    if task == own:
        raise LabError(
            f"{where}: '{task}' is the study's own task, whose splits every arm is evaluated "
            "on already; probe another task (eval.ft_then_icl_k prompts FT arms with demos)"
        )
    opts = {} if opts is None else opts
    if not isinstance(opts, dict):
        raise LabError(
            f"{where} must map options to values, e.g. {{n: 20, k: 4, splits: [test]}} "
            f"(got {opts!r}); options: {', '.join(OPTIONS)}"
        )
    for key in opts:
        if key not in OPTIONS:
            raise LabError(
                f"{where}: unknown option '{key}'{suggest(str(key), OPTIONS)}; "
                f"options: {', '.join(OPTIONS)}"
            )
    out = {
        "n": _int_option(opts, "n", DEFAULT_N, 1, task),
        "k": _int_option(opts, "k", 0, 0, task),
        "seed": _int_option(opts, "seed", None, 0, task),
        "max_new_tokens": _int_option(opts, "max_new_tokens", None, 1, task),
    }
    fmt = opts.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise LabError(
            f"{where}.format: '{fmt}' is not a format{suggest(str(fmt), FORMATS)}; "
            f"use one of {', '.join(FORMATS)}"
        )
    splits = opts.get("splits")
    if isinstance(splits, str):
        splits = [splits]
    if splits is not None and (
        not isinstance(splits, list) or not splits or not all(isinstance(s, str) for s in splits)
    ):
        raise LabError(f"{where}.splits must be a list of split names, e.g. [test, ood_hans]")
    params = opts.get("params") or {}
    if not isinstance(params, dict) or "probes" in params:
        raise LabError(
            f"{where}.params must be the probed task's own params (a mapping, without probes)"
        )
    return out | {"format": fmt, "splits": splits, "params": params}


def _format(task: str, fmt: str | None, train: list[Example]) -> str:
    """The probe's format: the one asked for, which the task must have targets for, or the
    first format the task has targets for."""
    has = [f for f in FORMATS if usable(train, f)]
    if fmt is None:
        if not has:
            raise LabError(f"{_where(task)}: the task's train pool has no targets to prompt with")
        return has[0]
    if fmt not in has:
        raise LabError(
            f"{_where(task)}.format: '{task}' has no '{fmt}' targets; use format: "
            f"{' or '.join(has)}"
        )
    return fmt


def _demos(task: str, train: list[Example], fmt: str, k: int, seed: int) -> tuple[Example, ...]:
    pool = usable(train, fmt)
    if k > len(pool):
        raise LabError(
            f"{_where(task)}.k={k} is larger than {task}'s train pool ({len(pool)} examples "
            f"usable in format '{fmt}'); lower k"
        )
    order = list(range(len(pool)))
    random.Random(f"probe-{task}-{seed}-demos").shuffle(order)
    return tuple(pool[i] for i in order[:k])


def build_task_probes(
    spec: Any, cfg: TaskCfg, build_task: TaskBuilder, known: list[str]
) -> dict[str, list[Example]]:
    """The splits ``probe_<task>_<split>`` of ``task.params.probes.tasks`` ({task: options}).

    `build_task` is the task registry's builder and `known` its task names (passed in: the
    registry imports this module, so it cannot import the registry)."""
    if not isinstance(spec, dict) or not spec:
        raise LabError(
            "task.params.probes.tasks must map a task name to its options, e.g. "
            f"{{gsm8k: {{n: 20, k: 4, splits: [test]}}}}; known tasks: {', '.join(known)}"
        )
    out: dict[str, list[Example]] = {}
    for key, raw in spec.items():
        task = str(key)
        opts = _options(task, raw, known, cfg.name)
        seed = cfg.seed if opts["seed"] is None else opts["seed"]
        probed = TaskCfg(
            name=task,
            seed=seed,
            n_train=PROBE_POOL,
            n_dev=0,
            n_test=opts["n"],
            source=cfg.source,
            data_dir=cfg.data_dir,
            params=opts["params"],
        )
        try:
            splits = build_task(probed)
        except LabError as e:
            raise LabError(f"{_where(task)}: {e}") from None
        evals = [s for s in splits if s == ID_EVAL_SPLIT or is_ood(s)]
        for s in opts["splits"] or []:
            if s not in evals:
                raise LabError(
                    f"{_where(task)}.splits: '{task}' has no eval split '{s}'"
                    f"{suggest(s, evals)}; its eval splits: {', '.join(evals)}"
                )
        fmt = _format(task, opts["format"], splits["train"])
        demos = _demos(task, splits["train"], fmt, opts["k"], seed)
        extra: dict[str, Any] = {
            "probe": task,
            "probe_format": fmt,
            "demo_ids": [d.id for d in demos],
            "demos": demos,
        }
        if opts["max_new_tokens"] is not None:
            extra["max_new_tokens"] = opts["max_new_tokens"]
        for s in dict.fromkeys(opts["splits"] or evals):
            name = f"probe_{task}_{s}"
            out[name] = [
                replace(
                    ex,
                    id=f"probe_{task}_{ex.id}",
                    meta={**ex.meta, "split": name, "probed_split": s, **extra},
                )
                for ex in splits[s]
            ]
    return out


def is_task_probe(ex: Example) -> bool:
    """A cross-task probe example (as opposed to a BBH one)."""
    return "probed_split" in ex.meta


def describe_task_probe(ex: Example) -> str:
    m = ex.meta
    k = len(m["demo_ids"])
    demos = f"{k} demo{'s' * (k != 1)} from {m['probe']} train" if k else "zero-shot"
    return (
        f"probe (every arm, one fixed prompt): {m['probe']} split '{m['probed_split']}', "
        f"{demos}, format {m['probe_format']}, scored as in the {m['probe']} task"
    )
