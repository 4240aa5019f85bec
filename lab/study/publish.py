"""The end of a study: the report (the ladder report for a list of models, else the
single-model one), the W&B Report's definition, the summary printed to the terminal; and
rebuilding all of it from a study's finished cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.io import read_json
from lab.core.layout import StudyDir
from lab.core.recipe import Recipe, parse_recipe
from lab.report import ladder, study_report
from lab.report.table import Summary
from lab.report.tracking import study_id
from lab.study import store
from lab.study.plan import plan_cells
from lab.tasks import build_task


def write_any_report(
    study: StudyDir,
    recipe: Recipe,
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    splits: dict[str, list[Example]],
) -> Summary:
    """The study's report: the ladder report for a list of models, else the single-model one."""
    if recipe.is_ladder:
        return ladder.write_ladder_report(study.root, recipe, rows, info, splits)
    return study_report.write_report(study.root, recipe, rows, info, splits)


def write_wandb_definition(
    study: StudyDir, recipe: Recipe, eval_splits: list[str], summary: Summary, sid: str
) -> Path:
    from lab.report import wandb_report

    return wandb_report.write_definition(study.root, recipe, sid, eval_splits, summary)


def print_summary(summary: Summary, study: StudyDir, note: str = "") -> None:
    print(summary.table.render())
    if summary.probes:
        print(f"\nprobes:\n{summary.probes.render()}")
    if summary.task_probes:
        print(f"\ncross-task probes:\n{summary.task_probes.render()}")
    if summary.headline:
        print(f"\n{summary.headline}")
    print(f"\nreport{note}: {study.html_report}")


def rebuild_report(out: str | Path) -> Summary:
    """Rewrite OUT/report/ from a study's finished cells (e.g. after a report change, or of
    a study still running): nothing is trained or evaluated again."""
    study = StudyDir(Path(out))
    if not study.study_json.is_file():
        raise LabError(f"{out} holds no study (no study.json); pass the --out of a study run")
    info = read_json(study.study_json)
    recipe = parse_recipe(info["recipe"], where=str(study.study_json))
    splits = build_task(recipe.task)
    rows = [row.to_dict() for row in store.collect_rows(study, recipe)]
    if not rows:
        raise LabError(f"{out}: no finished cell yet; wait for the study or rerun it")
    summary = write_any_report(study, recipe, rows, info, splits)
    if study.wandb_report.is_file():  # keep the W&B Report in step
        sid = info.get("study_id") or study_id(recipe.name, None, False, info["recipe_hash"])
        write_wandb_definition(study, recipe, info["eval_splits"], summary, sid)
    cells = plan_cells(recipe)
    done = sum(study.cell(c.key).is_done() for c in cells)
    print_summary(summary, study, f" ({done}/{len(cells)} cells)")
    return summary
