"""The output folder of a study: every path in it is named here, and only here.

OUT/
  study.json                 resolved recipe, its hash, model, task and split sizes
  cells/<key>/               (ladder: <key> = m<i>-<model>__<arm>...) cell.json (the cell's done
                             marker: rows, metrics, compute), predictions/<variant>/<split>.jsonl
                             and <split>.counts.json, checkpoint/ (FT arms), resume/ (FT arms,
                             while training: the last training checkpoint)
  locks/                     the workers' claims on cells (lab/study/claims.py)
  rationales/<key>.json      format cot_self: the base model's rationales for one (model, data
                             seed, budget), written once, shared by its cells
  results.jsonl              one row per cell x variant x split x metric
  report/                    the comparison a reviewer reads (index.html, report.md, ...)
  wandb/                     the W&B runs (offline ones until synced)

Paths only, and reading and writing the files they name (atomically): what a study does
with them (resume, claims, the report) lives above, in lab/study/ and lab/report/. It sits
in lab/core so that both of them use the one layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.io import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl


@dataclass(frozen=True)
class CellDir:
    """One cell's folder, OUT/cells/<key>/."""

    root: Path

    @property
    def key(self) -> str:
        return self.root.name

    @property
    def cell_json(self) -> Path:
        return self.root / "cell.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def resume(self) -> Path:
        return self.root / "resume"

    @property
    def predictions_root(self) -> Path:
        return self.root / "predictions"

    def predictions(self, variant: str, split: str) -> Path:
        return self.predictions_root / variant / f"{split}.jsonl"

    def counts(self, variant: str, split: str) -> Path:
        """The forward tokens a split's evaluation took, written beside its predictions."""
        return self.predictions(variant, split).with_suffix(".counts.json")

    def rationales(self, key: str) -> Path:
        """Self-written rationales (format cot_self) of one (model, data seed, budget),
        shared by the study's cells: OUT/rationales/<key>.json."""
        return self.root.parent.parent / "rationales" / f"{key}.json"

    def is_done(self) -> bool:
        """A cell is done when its cell.json exists (written atomically, last)."""
        return self.cell_json.is_file()

    def read(self) -> dict[str, Any]:
        return read_json(self.cell_json)

    def write(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.cell_json, result)

    def read_predictions(self, variant: str, split: str) -> list[dict[str, Any]]:
        return read_jsonl(self.predictions(variant, split))

    def write_predictions(self, variant: str, split: str, preds: list[dict[str, Any]]) -> None:
        atomic_write_jsonl(self.predictions(variant, split), preds)


@dataclass(frozen=True)
class StudyDir:
    """A study's output folder, OUT/."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def study_json(self) -> Path:
        return self.root / "study.json"

    @property
    def results(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def cells(self) -> Path:
        return self.root / "cells"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    @property
    def rationales(self) -> Path:
        """Self-written rationales of format cot_self (CellDir.rationales)."""
        return self.root / "rationales"

    @property
    def html_report(self) -> Path:
        return self.report / "index.html"

    @property
    def wandb_report(self) -> Path:
        return self.report / "wandb_report.py"

    def cell(self, key: str) -> CellDir:
        return CellDir(self.cells / key)

    def outputs(self) -> list[Path]:
        """What a run writes (--force deletes these; study.json is rewritten)."""
        return [self.cells, self.locks, self.results, self.report, self.wandb, self.rationales]


def model_tag(index: int, spec: str) -> str:
    """A ladder model's name in cell keys and paths: `m<index>-<last path part, sanitised>`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.rstrip("/").split("/")[-1]).strip("-.")
    return f"m{index}-{name or 'model'}"
