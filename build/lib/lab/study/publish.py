"""The end of a study: the report (the ladder report for a list of models, else the
single-model one), the W&B Report's definition, the summary printed to the terminal; and
rebuilding all of it from a study's finished cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.io import (
    read_json,
)
from lab.core.recipe import Recipe, parse_recipe, upgrade_stored
from lab.report import ladder, study_report
from lab.report.table import Summary
from lab.report.tracking import study_id
from lab.study.plan import plan_cells
from lab.study.store import collect_rows
from lab.tasks import build_task


def write_any_report(
    out: Path,
    recipe: Recipe,
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    splits: dict[str, list[Example]],
) -> Summary:
    """The study's report: the ladder report for a list of models, else the single-model one."""
    if recipe.is_ladder:
        return ladder.write_ladder_report(out, recipe, rows, info, splits)
    return study_report.write_report(out, recipe, rows, info, splits)


def write_wandb_definition(
    out: Path, recipe: Recipe, eval_splits: list[str], summary: Summary, study: str
) -> Path:
    from lab.report import wandb_report

    return wandb_report.write_definition(out, recipe, study, eval_splits, summary)


def print_summary(summary: Summary, out: Path, note: str = "") -> None:
    print(summary.table.render())
    if summary.probes:
        print(f"\nprobes:\n{summary.probes.render()}")
    if summary.task_probes:
        print(f"\ncross-task probes:\n{summary.task_probes.render()}")
    if summary.headline:
        print(f"\n{summary.headline}")
    print(f"\nreport{note}: {out / 'report' / 'index.html'}")


def rebuild_report(out: str | Path) -> Summary:
    """Rewrite OUT/report/ from a study's finished cells (e.g. after a report change, or of
    a study still running): nothing is trained or evaluated again."""
    out = Path(out)
    if not (out / "study.json").is_file():
        raise LabError(f"{out} holds no study (no study.json); pass the --out of a study run")
    info = read_json(out / "study.json")
    recipe = parse_recipe(upgrade_stored(info["recipe"]), where=str(out / "study.json"))
    splits = build_task(recipe.task)
    rows = collect_rows(out, recipe)
    if not rows:
        raise LabError(f"{out}: no finished cell yet; wait for the study or rerun it")
    summary = write_any_report(out, recipe, rows, info, splits)
    if (out / "report" / "wandb_report.py").is_file():  # keep the W&B Report in step
        study = info.get("study_id") or study_id(recipe.name, None, False, info["recipe_hash"])
        write_wandb_definition(out, recipe, info["eval_splits"], summary, study)
    done = sum((out / "cells" / c.key / "cell.json").is_file() for c in plan_cells(recipe))
    print_summary(summary, out, f" ({done}/{len(plan_cells(recipe))} cells)")
    return summary
