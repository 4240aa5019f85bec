"""A study's output folder over time: starting it (or refusing another recipe's), the typed
results row and cell result written into it, and reading them back. Its layout, every path
in it, is `StudyDir` / `CellDir` (lab/core/layout.py).

A cell is done when its cell.json exists (written atomically, last); a rerun skips done
cells. Inside an unfinished cell a rerun resumes: training from its last checkpoint in
resume/ (or not at all once checkpoint/train_result.json exists), evaluation per split (a
split whose predictions file exists is read back, not regenerated). A rerun with a changed
recipe is refused unless --force (which starts over).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core import fairness
from lab.core.errors import LabError
from lab.core.io import atomic_write_json, create_json_exclusive, read_json, remove_stale_tmp
from lab.core.layout import StudyDir
from lab.core.recipe import Recipe, parse_recipe
from lab.study.plan import plan_cells

# a split's metrics, in row order (brier, ece, ece_mass: choice-scored splits, eval/choice.py)
METRICS = ("exact_match", "gold_logprob", "brier", "ece", "ece_mass")
REQUIRED = ("variant", "split", "metric", "value", "n", "ft_then_icl_k", "ood")


@dataclass(frozen=True)
class ResultRow:
    """One row of results.jsonl: a cell x variant x split x metric. `cell` describes the
    cell (study, model, arm, budget, seeds, k or n_train...), the same for all its rows;
    `probe` is set on the rows of a probe split (cells.py evaluate_probes), `aggregate` on
    a probe family's macro average."""

    cell: dict[str, Any]
    variant: str
    split: str
    metric: str
    value: float
    n: int
    ft_then_icl_k: int = 0
    ood: bool = False
    labelled_examples: int | None = None
    probe: str | None = None
    probe_demos: int | None = None
    aggregate: str | None = None
    prompt_format: str | None = None  # eval.formats: the prompt format (lab/core/formats.py)

    def to_dict(self) -> dict[str, Any]:
        """The row as stored (written with sorted keys); unset optional fields are left out."""
        own = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "cell"}
        return self.cell | {k: v for k, v in own.items() if v is not None or k in REQUIRED}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResultRow:
        own = {k: d[k] for k in cls.__dataclass_fields__ if k != "cell" and k in d}
        return cls(cell={k: v for k, v in d.items() if k not in own}, **own)


def metric_rows(cell: dict[str, Any], metrics: dict[str, Any], **row: Any) -> list[ResultRow]:
    """The results rows of one split: exact match, and log p(gold), Brier and ECE
    (classification splits) where the split has them."""
    return [
        ResultRow(cell=cell, metric=k, value=metrics[k], n=metrics["n"], **row)
        for k in METRICS
        if k in metrics
    ]


@dataclass
class CellResult:
    """What a finished cell leaves in its cell.json."""

    cell: dict[str, Any]  # the cell's description: the `cell` of its rows, with its demo ids
    rows: list[ResultRow]
    metrics: dict[str, dict[str, Any]]  # "<variant>/<split>" -> the split's metrics
    train: dict[str, Any]  # FT arms: the training result; {} for prompted arms
    compute: dict[str, Any]
    wall_s: float
    wandb_dir: str | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "rows": [r.to_dict() for r in self.rows],
            "metrics": self.metrics,
            "train": self.train,
            "compute": self.compute,
            "wall_s": self.wall_s,
            "wandb_dir": self.wandb_dir,
        }


def same_study(old: dict[str, Any], recipe: Recipe) -> bool:
    """Whether the study recorded in `old` (a study.json) runs what `recipe` runs: the same
    hash, or a stored recipe that only lacks fields added since with their defaults (re-read
    now, it hashes the same), and it selects checkpoints the same way (lab/core/fairness.py)."""
    if not fairness.same_selection(old, recipe):
        return False
    if old.get("recipe_hash") == recipe.hash():
        return True
    try:
        return parse_recipe(old["recipe"], where="study.json").hash() == recipe.hash()
    except (LabError, KeyError, TypeError, ValueError):
        return False


def different_study(study: StudyDir, old: dict[str, Any], recipe: Recipe) -> LabError:
    """The one message for an OUT that holds another recipe's study."""
    return LabError(
        f"{study.root} holds results of a different recipe (hash {old.get('recipe_hash')} "
        f"!= {recipe.hash()}); pass --force to start over or choose another --out"
    )


def prepare_out(study: StudyDir, recipe: Recipe, force: bool, main: bool = True) -> str:
    """Check or clear the folder for this recipe; the study's hash (W&B run ids derive from
    it): the recorded one when the stored recipe predates a defaulted field, else the
    recipe's."""
    if study.study_json.is_file():
        old = read_json(study.study_json)
        if same_study(old, recipe):
            return str(old.get("recipe_hash"))
        if not force:
            raise different_study(study, old, recipe)
        if main:  # under accelerate launch: one process deletes
            for p in study.outputs():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return recipe.hash()


def write_study_json(study: StudyDir, info: dict[str, Any], recipe: Recipe, force: bool) -> None:
    """study.json, created race-free: of workers starting together on an empty OUT, one
    creates it, and the others find the same study there (or a different recipe's)."""
    if create_json_exclusive(study.study_json, info):
        return
    old = read_json(study.study_json)
    if not (force or same_study(old, recipe)):
        raise different_study(study, old, recipe)
    atomic_write_json(study.study_json, info)  # the same study: refresh its record


def remove_stale_report_tmp(study: StudyDir) -> list[Path]:
    """Temp files of a report writer killed before (call with the report claim held: no one
    else's); returns those removed."""
    stale = [*study.root.glob(f".{study.results.name}.*.tmp"), *remove_stale_tmp(study.report)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def collect_rows(study: StudyDir, recipe: Recipe) -> list[ResultRow]:
    """The results rows of a study's finished cells, in plan order."""
    rows: list[ResultRow] = []
    for cell in plan_cells(recipe):
        cell_dir = study.cell(cell.key)
        if cell_dir.is_done():
            rows += [ResultRow.from_dict(r) for r in cell_dir.read()["rows"]]
    return rows
