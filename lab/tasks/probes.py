"""Probe splits: sets evaluated on every arm of a study, each with one fixed prompt, whatever
the arm's demos, format or weights. Every task takes them as a task parameter (the task
registry, ``lab.tasks.build_task``, builds them after the task's own splits)::

    task: {name: gsm8k, params: {probes: {bbh: {n_per_task: 5, tasks: [date_understanding]}}}}

Two probe kinds:

- ``bbh``: generic reasoning, below.
- ``tasks``: cross-task probes, the eval splits of another task of the lab with that task's
  own scoring (``lab/tasks/task_probes.py``): ``probes: {tasks: {gsm8k: {n: 20, k: 4}}}``.

BBH (BIG-Bench Hard, Suzgun et al. 2022; ``data/bbh``): one split ``probe_bbh_<subtask>`` per
subtask, a seeded sample of ``n_per_task`` examples (in file order), prompted with the
standard 3-shot CoT prompt of that subtask (``cot-prompts/<subtask>.txt``, its canary
header removed), then ``Q: <input>\\nA: Let's think step by step.``. The answer after
"So the answer is" is extracted per subtask type (``eval/probes.py``). The runner reports
each subtask and the macro average over subtasks (split ``probe_bbh``).

Options of ``probes.bbh``: ``n_per_task`` (default 10), ``tasks`` (default: all 27),
``max_new_tokens`` (default 192; the CoT answers of the prompts are up to ~150 tokens).
With ``task.source: hub`` the examples come from ``lukaemon/bbh`` and the prompts from the
upstream repository at the commit in ``data/README.md``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from lab.core.errors import LabError, suggest
from lab.core.example import Example
from lab.core.recipe import TaskCfg
from lab.tasks.task_probes import (
    TaskBuilder,
    build_task_probes,
    describe_task_probe,
    is_task_probe,
)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"
BBH_COMMIT = "9ee07bd481feebf959a6b59d61ea57bdcf30964d"
_BBH_RAW = f"https://raw.githubusercontent.com/suzgunmirac/BIG-Bench-Hard/{BBH_COMMIT}"

# Answer type of each BBH subtask: how its answer is extracted and compared.
_NUMERIC = {"object_counting", "multistep_arithmetic_two"}
_TEXT = {"dyck_languages", "word_sorting"}
_LABEL = {
    "boolean_expressions",
    "causal_judgement",
    "formal_fallacies",
    "navigate",
    "sports_understanding",
    "web_of_lies",
}
_CHOICE = {
    "date_understanding",
    "disambiguation_qa",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
}
BBH_TASKS: tuple[str, ...] = tuple(sorted(_NUMERIC | _TEXT | _LABEL | _CHOICE))
BBH_TRIGGER = "Let's think step by step."
_BBH_OPTIONS = {"n_per_task", "tasks", "max_new_tokens"}


def bbh_answer_type(subtask: str) -> str:
    """choice ('(A)'), label (True/False, Yes/No, valid/invalid), numeric or text."""
    if subtask in _CHOICE:
        return "choice"
    if subtask in _LABEL:
        return "label"
    if subtask in _NUMERIC:
        return "numeric"
    if subtask in _TEXT:
        return "text"
    raise LabError(f"unknown BBH subtask '{subtask}'{suggest(subtask, BBH_TASKS)}")


def cot_prompt_body(text: str) -> str:
    """A BBH cot-prompts file without its canary header (everything up to the '-----' line)."""
    _, sep, body = text.partition("-----\n")
    return (body if sep else text).strip()


def _load_bbh_local(root: Path, subtask: str) -> tuple[list[dict[str, Any]], str]:
    import datasets

    ex_path = root / "bbh" / "bbh" / f"{subtask}.json"
    pr_path = root / "bbh" / "cot-prompts" / f"{subtask}.txt"
    for p in (ex_path, pr_path):
        if not p.is_file():
            raise LabError(
                f"data file '{p}' not found; restore it (`git checkout -- data/`) or point "
                "task.data_dir at a folder with the layout of data/ (see data/README.md)"
            )
    try:
        rows = list(
            datasets.load_dataset("json", data_files=str(ex_path), field="examples")["train"]
        )
    except Exception as e:
        raise LabError(
            f"data file '{ex_path}' could not be read ({type(e).__name__}); fix the file or "
            "restore it (`git checkout -- data/`)"
        ) from None
    return rows, pr_path.read_text(encoding="utf-8")


def _load_bbh_hub(subtask: str) -> tuple[list[dict[str, Any]], str]:
    import datasets

    try:
        rows = list(datasets.load_dataset("lukaemon/bbh", subtask)["test"])
        url = f"{_BBH_RAW}/cot-prompts/{subtask}.txt"
        doc = datasets.load_dataset("text", data_files=url, sample_by="document")["train"]
        text = doc[0]["text"]
    except Exception as e:
        raise LabError(
            f"could not load BBH '{subtask}' from the hub ({type(e).__name__}); check the "
            "network or use task.source: local"
        ) from None
    return rows, text


def _bbh_options(opts: Any) -> tuple[int, list[str], int]:
    if not isinstance(opts, dict) or set(opts) - _BBH_OPTIONS:
        extra = sorted(set(opts) - _BBH_OPTIONS) if isinstance(opts, dict) else opts
        raise LabError(
            f"task.params.probes.bbh: {extra!r} not understood; options are "
            f"{sorted(_BBH_OPTIONS)} (e.g. {{n_per_task: 5, tasks: [date_understanding]}})"
        )
    n = opts.get("n_per_task", 10)
    tasks = opts.get("tasks", list(BBH_TASKS))
    max_new = opts.get("max_new_tokens", 192)
    if not isinstance(n, int) or n <= 0 or not isinstance(max_new, int) or max_new <= 0:
        raise LabError(
            "task.params.probes.bbh: n_per_task and max_new_tokens must be positive integers"
        )
    if isinstance(tasks, str):
        tasks = list(BBH_TASKS) if tasks == "all" else [tasks]
    for t in tasks:
        if t not in BBH_TASKS:
            raise LabError(
                f"task.params.probes.bbh.tasks: unknown BBH subtask '{t}'{suggest(str(t), BBH_TASKS)}"
                f"; known: {', '.join(BBH_TASKS)}"
            )
    return n, list(dict.fromkeys(tasks)), max_new


def build_bbh(opts: Any, cfg: TaskCfg) -> dict[str, list[Example]]:
    n, tasks, max_new = _bbh_options(opts)
    root = Path(cfg.data_dir).expanduser().resolve() if cfg.data_dir else DEFAULT_DATA_DIR
    out: dict[str, list[Example]] = {}
    for t in tasks:
        rows, prompt_text = _load_bbh_hub(t) if cfg.source == "hub" else _load_bbh_local(root, t)
        pick = list(range(len(rows)))
        random.Random(f"bbh-{cfg.seed}-{t}").shuffle(pick)
        split = f"probe_bbh_{t}"
        prefix = cot_prompt_body(prompt_text) + "\n\n"
        out[split] = [
            Example(
                id=f"{split}-{i:05d}",
                question=str(rows[i]["input"]),
                answer=str(rows[i]["target"]),
                rationale="",
                program="",
                meta={
                    "split": split,
                    "probe": "bbh",
                    "subtask": t,
                    "row": i,
                    "answer_type": bbh_answer_type(t),
                    "max_new_tokens": max_new,
                    "prefix": prefix,
                    "trigger": BBH_TRIGGER,
                },
            )
            for i in sorted(pick[:n])
        ]
    return out


PROBES = ("bbh", "tasks")


def build_probes(
    spec: Any,
    cfg: TaskCfg,
    build_task: TaskBuilder | None = None,
    known_tasks: list[str] | None = None,
) -> dict[str, list[Example]]:
    """The probe splits of `task.params.probes` ({kind: options}), in order. Cross-task
    probes (`tasks`) need the task registry's builder and task names (the registry passes
    them in: it imports this module)."""
    if not isinstance(spec, dict) or not spec:
        raise LabError(
            "task.params.probes must map a probe name to its options, e.g. "
            "{bbh: {n_per_task: 5}}; known probes: " + ", ".join(PROBES)
        )
    out: dict[str, list[Example]] = {}
    for name, opts in spec.items():
        if name not in PROBES:
            raise LabError(
                f"task.params.probes: unknown probe '{name}'{suggest(str(name), PROBES)}; "
                f"known: {', '.join(PROBES)}"
            )
        if name == "bbh":
            out.update(build_bbh({} if opts is None else opts, cfg))
        else:
            if build_task is None or known_tasks is None:
                raise ValueError("cross-task probes need the task registry: use build_task()")
            out.update(build_task_probes(opts, cfg, build_task, known_tasks))
    return out


def is_probe(split: str) -> bool:
    return split.startswith("probe_")


# A cross-task probe split is probe_<task>_<eval split of that task> and eval splits are
# "test" or "ood_*", so the task name (which may hold underscores: mnli_hans) is what comes
# before the first "_test" / "_ood_" that ends the name.
_TASK_PROBE = re.compile(r"probe_(?P<family>.+?)_(?:test|ood_.+)")


def probe_family(split: str) -> str:
    """The probe family of a probe split (or of its macro row): 'bbh' for
    'probe_bbh_date_understanding', the probed task for a cross-task probe
    ('probe_mnli_hans_ood_hans' -> 'mnli_hans'), 'gsm8k' for the macro row 'probe_gsm8k'."""
    if split == "probe_bbh" or split.startswith("probe_bbh_"):
        return "bbh"
    m = _TASK_PROBE.fullmatch(split)
    return m.group("family") if m else split.removeprefix("probe_")


def describe_probes(splits: dict[str, list[Example]]) -> dict[str, str]:
    out = {}
    for s, xs in splits.items():
        if not (is_probe(s) and xs):
            continue
        if is_task_probe(xs[0]):
            out[s] = describe_task_probe(xs[0])
            continue
        m = xs[0].meta
        out[s] = (
            f"probe (every arm, its own fixed prompt): BBH {m['subtask']}, seeded sample, "
            f"standard 3-shot CoT prompt, {m['answer_type']} answers"
        )
    return out
