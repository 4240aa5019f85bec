"""The probe splits of a cell: evaluation splits from outside the study's task (BBH subtasks,
or eval splits of another task of the lab), each with its own fixed prompt for every arm,
never trained on. "Probe" means only this in the lab. Their prompts are checked to fit the
context before the first cell runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.lm import LM, context_length
from eval.probes import (
    evaluate_probe,
    evaluate_task_probe,
    macro_average,
    probe_prompt,
    task_probe_max_new_tokens,
    task_probe_spec,
)
from lab.core import fairness
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.io import (
    atomic_write_jsonl,
)
from lab.core.prompts import prompt
from lab.core.recipe import Recipe
from lab.study.store import metric_rows
from lab.tasks.task_probes import is_task_probe

if TYPE_CHECKING:
    from lab.study.cells import CellRunner


def check_probe_lengths(cells: CellRunner) -> None:
    """Every probe prompt (its fixed prefix or demos, the question, the generation
    budget) must fit the context: checked before the first cell, not when a probe is
    reached."""
    if not cells.probe_splits:
        return
    model, tok = cells.base.load()
    limit = context_length(model)

    def n_tokens(text: str) -> int:
        return len(tok(text, add_special_tokens=False).input_ids)

    for split in cells.probe_splits:
        xs = cells.splits[split]
        if is_task_probe(xs[0]):
            m = xs[0].meta
            prefix = len(tok(task_probe_spec(xs).prefix).input_ids)
            longest = max(n_tokens(prompt(x)) + max(map(n_tokens, x.choices), default=0)
                          for x in xs)  # fmt: skip
            need = prefix + longest + probe_max_new(cells.recipe, xs)
            fix = (
                f"lower k ({len(m['demo_ids'])}) or max_new_tokens in "
                f"task.params.probes.tasks.{m['probe']}, or drop the split"
            )
        else:
            prefix = len(tok(xs[0].meta["prefix"]).input_ids)
            longest = max(n_tokens(probe_prompt(x)) for x in xs)
            need = prefix + longest + xs[0].meta["max_new_tokens"]
            fix = "drop the subtask from task.params.probes (tasks: [...]) or lower max_new_tokens"
        if need > limit:
            raise LabError(
                f"probe split '{split}' needs {need} tokens (its fixed prompt, the longest "
                f"question, max_new_tokens) but the model's context is {limit}; {fix}"
            )


def probe_max_new(recipe: Recipe, xs: list[Example]) -> int:
    return task_probe_max_new_tokens(xs, recipe.eval.max_new_tokens)


def eval_probes(
    cells: CellRunner, lm: LM, name: str, info: dict[str, Any], cell_dir: Path,
    metrics: dict[str, Any], preds: dict[str, Any], counter: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """Probe splits, each with its own fixed prompt (BBH: CoT answer extraction;
    cross-task probes: the probed task's own scoring): one row per split and metric,
    and one macro-average exact-match row per probe family (split `probe_<family>`:
    `probe_bbh`, `probe_gsm8k`...)."""
    r = cells.recipe
    rows: list[dict[str, Any]] = []
    families: dict[str, dict[str, dict[str, float]]] = {}
    base_row = {k: v for k, v in info.items() if k != "demo_ids"}
    base_row.update(variant=name, ft_then_icl_k=0, ood=False)
    for split in cells.probe_splits:
        xs, desc = cells.splits[split], f"probe {info['arm']}/{name}/{split}"
        if is_task_probe(xs[0]):
            p, m = evaluate_task_probe(
                lm, xs, probe_max_new(cells.recipe, xs), r.eval.code_timeout_s, desc=desc,
                gold_logprob=r.eval.gold_logprob,
            )  # fmt: skip
        else:  # BBH (sharded across processes, like the rest)
            p, m = evaluate_probe(lm, xs, desc=desc)
        m["flops_per_example"] = sum(
            counter.generate(x["prompt_tokens"], x["new_tokens"]) for x in p
        ) / len(p)
        if cells.acc.is_main_process:
            atomic_write_jsonl(cell_dir / "predictions" / name / f"{split}.jsonl", p)
        metrics[f"{name}/{split}"], preds[f"{name}/{split}"] = m, p
        task = is_task_probe(xs[0])
        cells.tracker.log_split(
            name, split, m, p, {x.id: prompt(x) if task else probe_prompt(x) for x in xs}
        )
        family = xs[0].meta["probe"]
        families.setdefault(family, {})[split] = m
        rows += metric_rows({**base_row, "split": split, "probe": family, "n": m["n"],
                             "probe_demos": fairness.fixed_demo_count(xs)}, m)  # fmt: skip
    for family, per in families.items():
        macro = macro_average(per)
        metrics[f"{name}/probe_{family}"] = macro
        cells.log(
            f"[lab]   {name:>10} {'probe_' + family:>13}: macro exact match "
            f"{macro['exact_match']:.3f} ({macro['subtasks']} splits, n={macro['n']})"
        )
        rows.append({**base_row, "split": f"probe_{family}", "probe": family,
                     "aggregate": "macro", "n": macro["n"], "metric": "exact_match",
                     "value": macro["exact_match"]})  # fmt: skip
    return rows
