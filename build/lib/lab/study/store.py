"""The output folder of a study, and resuming it.

OUT/
  study.json                 resolved recipe, its hash, model, task and split sizes
  cells/<key>/               (ladder: <key> = m<i>-<model>__<arm>...) cell.json (the cell's done
                             marker: rows, metrics, compute), predictions/<variant>/<split>.jsonl,
                             checkpoint/ (FT arms), resume/ (FT arms, while training: the last
                             training checkpoint)
  locks/                     the workers' claims on cells (lab/study/claims.py)
  results.jsonl              one row per cell x variant x split x metric
  report/                    the comparison a reviewer reads

A cell is done when its cell.json exists (written atomically, last) and holds every eval and
probe split of the task (a lab upgrade may add one: then only that split is evaluated); a
rerun skips done cells. Inside an unfinished cell a rerun resumes: training from its last
checkpoint in resume/ (or not at all once checkpoint/train_result.json exists), evaluation
per split (a split whose predictions file exists is read back, not regenerated). A rerun
with a changed recipe is refused unless --force (which starts over).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lab.core import fairness
from lab.core.errors import LabError
from lab.core.io import (
    atomic_write_json,
    create_json_exclusive,
    read_json,
    remove_stale_tmp,
)
from lab.core.recipe import Recipe, parse_recipe, upgrade_stored
from lab.study.plan import plan_cells


def same_study(old: dict[str, Any], recipe: Recipe) -> bool:
    """Whether the study recorded in `old` (a study.json) runs what `recipe` runs: the same
    hash, or a recipe written by an older lab that only lacks fields added since with
    their defaults (its stored resolved recipe, re-read now, hashes the same) and selects
    checkpoints the same way (lab/core/fairness.py)."""
    if not fairness.same_selection(old, recipe):
        return False
    if old.get("recipe_hash") == recipe.hash():
        return True
    try:
        return (
            parse_recipe(upgrade_stored(old["recipe"]), where="study.json").hash() == recipe.hash()
        )
    except (LabError, KeyError, TypeError, ValueError):
        return False


def different_study(out: Path, old: dict[str, Any], recipe: Recipe) -> LabError:
    """The one message for an OUT that holds another recipe's study."""
    return LabError(
        f"{out} holds results of a different recipe (hash {old.get('recipe_hash')} "
        f"!= {recipe.hash()}); pass --force to start over or choose another --out"
    )


def prepare_out(out: Path, recipe: Recipe, force: bool, main: bool = True) -> str:
    """Check or clear `out` for this recipe; the study's hash (W&B run ids derive from it):
    the recorded one when an older lab started this study, else the recipe's."""
    study = out / "study.json"
    if study.is_file():
        old = read_json(study)
        if same_study(old, recipe):
            return str(old.get("recipe_hash"))
        if not force:
            raise different_study(out, old, recipe)
        if main:  # under accelerate launch: one process deletes
            for name in ("cells", "locks", "results.jsonl", "report", "wandb"):
                p = out / name
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return recipe.hash()


def missing_splits(cell_dir: Path, splits: list[str]) -> list[str] | None:
    """None: the cell is not done. Else the `splits` (eval and probe splits) its cell.json
    lacks ([] when complete): a study resumed after a lab upgrade that added splits (e.g.
    `ood_aqua_gen`) evaluates just those; training and finished splits are reused (their
    checkpoint and predictions files)."""
    path = cell_dir / "cell.json"
    if not path.is_file():
        return None
    have = {row["split"] for row in read_json(path)["rows"]}
    return [s for s in splits if s not in have]


def write_study_json(out: Path, info: dict[str, Any], recipe: Recipe, force: bool) -> None:
    """study.json, created race-free: of workers starting together on an empty OUT, one
    creates it, and the others find the same study there (or a different recipe's)."""
    study = out / "study.json"
    if create_json_exclusive(study, info):
        return
    old = read_json(study)
    if not (force or same_study(old, recipe)):
        raise different_study(out, old, recipe)
    atomic_write_json(study, info)  # the same study: refresh its record


def remove_stale_report_tmp(out: Path) -> list[Path]:
    """Temp files of a report writer killed before (call with the report claim held: no one
    else's); returns those removed."""
    stale = [*out.glob(".results.jsonl.*.tmp"), *remove_stale_tmp(out / "report")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def collect_rows(out: Path, recipe: Recipe) -> list[dict[str, Any]]:
    """The results rows of a study's finished cells, in plan order."""
    rows: list[dict[str, Any]] = []
    for cell in plan_cells(recipe):
        path = out / "cells" / cell.key / "cell.json"
        if path.is_file():
            rows.extend(read_json(path)["rows"])
    return rows


def metric_rows(base: dict[str, Any], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The results rows of one split: exact match, and log p(gold) and Brier (classification
    splits) where the split has them."""
    return [
        {**base, "metric": k, "value": metrics[k]}
        for k in ("exact_match", "gold_logprob", "brier")
        if k in metrics
    ]
