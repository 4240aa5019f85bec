"""The conductor: a recipe -> cells (arm x seed) -> train (FT arms) -> eval on every split
-> results rows, per-example predictions, W&B runs and the report. Resumable.

OUT/
  study.json                 resolved recipe, its hash, model, task and split sizes
  cells/<arm>__s<seed>/      cell.json (the cell's done marker: rows, metrics, compute)
                             predictions/<split>.jsonl, checkpoint/ (FT arms)
  results.jsonl              one row per model x arm x seed x split
  report.md, plots/          the comparison a reviewer reads

A cell is done when its cell.json exists (written atomically, last); a rerun skips done
cells, so an interrupted study resumes where it stopped. A rerun with a changed recipe is
refused unless --force (which starts the study over).
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from eval.prompts import prompt
from lab import report
from lab.errors import LabError
from lab.io import atomic_write_json, atomic_write_jsonl, read_json
from lab.models import ResolvedModel, load_model, resolve_model
from lab.recipe import ArmCfg, Recipe
from lab.tasks import build_task, describe_task
from lab.tasks.base import ID_EVAL_SPLIT, Example, is_ood, usable
from lab.tracking import Tracker


@dataclass(frozen=True)
class Cell:
    arm: ArmCfg
    seed: int

    @property
    def key(self) -> str:
        return f"{self.arm.name}__s{self.seed}"


def plan_cells(recipe: Recipe) -> list[Cell]:
    return [Cell(arm, seed) for seed in recipe.seeds for arm in recipe.arms]


def eval_splits(splits: dict[str, list[Example]]) -> list[str]:
    return [s for s in splits if s == ID_EVAL_SPLIT or is_ood(s)]


def select_data(
    recipe: Recipe, train: list[Example], cell: Cell
) -> tuple[list[Example], list[Example]]:
    """(demos, fine-tuning examples) for a cell, drawn from the train split only.

    One seeded permutation of the train pool per seed: the k demos are its first k
    examples and the FT data its first n_train, so an arm with k demos and an arm trained
    on n_train = k see exactly the same labelled examples.
    """
    train = study_pool(recipe, train)
    order = list(range(len(train)))
    random.Random(f"data-{recipe.task.seed}-{cell.seed}").shuffle(order)
    demos = [train[i] for i in order[: cell.arm.k]]
    n = recipe.train_for(cell.arm).n_train or len(train)
    return demos, [train[i] for i in order[:n]]


def study_pool(recipe: Recipe, train: list[Example]) -> list[Example]:
    """The train examples usable in every format the study uses (e.g. GSM8K problems whose
    program could not be verified are dropped for all arms), so that every arm draws its
    demos and training data from the same pool."""
    for fmt in sorted({arm.format for arm in recipe.arms}):
        train = usable(train, fmt)
    return train


def validate(recipe: Recipe, splits: dict[str, list[Example]]) -> None:
    n_train = len(study_pool(recipe, splits["train"]))
    for arm in recipe.arms:
        if arm.k > n_train:
            raise LabError(
                f"arm '{arm.name}' asks for k={arm.k} demos but the train pool has {n_train} "
                "usable examples; lower k or raise task.n_train"
            )
        if arm.method != "icl":
            n = recipe.train_for(arm).n_train
            if n is not None and n > n_train:
                raise LabError(
                    f"arm '{arm.name}' trains on n_train={n} examples but the train split has "
                    f"{n_train}; lower train.n_train or raise task.n_train"
                )


def _prepare_out(out: Path, recipe: Recipe, force: bool) -> None:
    study = out / "study.json"
    if study.is_file():
        old = read_json(study)
        if old.get("recipe_hash") != recipe.hash():
            if not force:
                raise LabError(
                    f"{out} holds results of a different recipe (hash {old.get('recipe_hash')} "
                    f"!= {recipe.hash()}); pass --force to start over or choose another --out"
                )
            for name in ("cells", "results.jsonl", "report.md", "plots", "wandb"):
                p = out / name
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


@torch.no_grad()
def _probe_logits(model: Any, tok: Any, texts: list[str]) -> torch.Tensor:
    """Next-token logits after each probe prompt (to show an FT model differs from base)."""
    rows = []
    for t in texts:
        ids = tok(t, return_tensors="pt").input_ids.to(model.device)
        rows.append(model(input_ids=ids, logits_to_keep=1).logits[0, -1].float().cpu())
    return torch.stack(rows)


class Runner:
    def __init__(
        self,
        recipe: Recipe,
        out: str | Path,
        force: bool = False,
        progress: bool = True,
        cache_dir: str | None = None,
    ):
        self.recipe = recipe
        self.out = Path(out)
        self.progress = progress
        self.log = tqdm.write if progress else (lambda *a, **k: None)
        # Everything a user can get wrong is checked before anything is written.
        self.splits = build_task(recipe.task)
        validate(recipe, self.splits)
        self.model: ResolvedModel = resolve_model(recipe.model, cache_dir)
        _prepare_out(self.out, recipe, force)
        self.eval_splits = eval_splits(self.splits)
        self._base: tuple[Any, Any] | None = None
        self._probe: torch.Tensor | None = None

    # -- the study --------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        from accelerate import Accelerator

        self.acc = Accelerator()
        r = self.recipe
        if self.acc.is_main_process:
            atomic_write_json(self.out / "study.json", self._study_info())
        tracker = Tracker(r.tracking, r.name, self.out, r.model_dump(mode="json"))
        cells = plan_cells(r)
        self.log(
            f"[lab] study '{r.name}': model {r.model} ({self.model.source}), {len(r.arms)} arms x "
            f"{len(r.seeds)} seeds = {len(cells)} cells; eval splits {self.eval_splits}; "
            f"W&B {tracker.mode}; out {self.out}"
        )
        for i, cell in enumerate(cells, start=1):
            cell_dir = self.out / "cells" / cell.key
            if (cell_dir / "cell.json").is_file():
                self.log(f"[lab] cell {i}/{len(cells)} {cell.key}: done already, skipped")
                continue
            self.log(
                f"[lab] cell {i}/{len(cells)} {cell.key} ({cell.arm.method}, {cell.arm.format}, k={cell.arm.k})"
            )
            result = self.run_cell(cell, cell_dir)
            if self.acc.is_main_process:
                result["wandb_dir"] = tracker.log_cell(
                    result["cell"],
                    result["metrics"],
                    result.pop("_predictions"),
                    result["train"].get("losses", []),
                )
                atomic_write_json(cell_dir / "cell.json", result)
            self.acc.wait_for_everyone()
        rows = self.collect()
        if self.acc.is_main_process:
            atomic_write_jsonl(self.out / "results.jsonl", rows)
            table = report.write_report(self.out, r, rows, self._study_info())
            tracker.log_summary(table.columns, table.rows, report.figures(self.out))
            print(table.render())
        return rows

    def _study_info(self) -> dict[str, Any]:
        r = self.recipe
        return {
            "name": r.name,
            "recipe": r.model_dump(mode="json"),
            "recipe_hash": r.hash(),
            "model": vars(self.model),
            "task": {"name": r.task.name, "splits": describe_task(r.task.name)},
            "split_sizes": {k: len(v) for k, v in self.splits.items()},
            "eval_splits": self.eval_splits,
        }

    def collect(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for cell in plan_cells(self.recipe):
            path = self.out / "cells" / cell.key / "cell.json"
            if path.is_file():
                rows.extend(read_json(path)["rows"])
        return rows

    # -- one cell ---------------------------------------------------------------------------
    def base(self) -> tuple[Any, Any]:
        if self._base is None:
            self._base = load_model(self.model.path, device=self.acc.device)
        return self._base

    def run_cell(self, cell: Cell, cell_dir: Path) -> dict[str, Any]:
        r, arm = self.recipe, cell.arm
        demos, ft_data = select_data(r, self.splits["train"], cell)
        train_info: dict[str, Any] = {}
        t0 = time.time()
        if arm.method == "icl":
            model, tok = self.base()
            spec = PromptSpec(arm.format, tuple(demos), arm.trigger)
        else:
            from train.finetune import finetune, load_finetuned

            cfg = r.train_for(arm)
            ckpt = cell_dir / "checkpoint"
            res = finetune(
                self.model.path,
                ft_data,
                arm.format,
                arm.method,
                cfg,
                cell.seed,
                ckpt,
                accelerator=self.acc,
                progress=self.progress,
            )
            train_info = res.to_dict()
            train_info["n_train"] = len(ft_data)
            train_info["train_flops_est"] = (
                (6 if arm.method == "full" else 4) * res.total_params * res.train_tokens
            )
            if not self.acc.is_main_process:
                return {}
            model, tok = load_finetuned(self.model.path, str(ckpt), arm.method)
            model.to(self.acc.device)
            train_info["output_delta"] = self._output_delta(model, tok)
            spec = PromptSpec(arm.format, (), arm.trigger)  # same template, k = 0
        if not self.acc.is_main_process:
            return {}
        lm = LM(model, tok, batch_size=r.eval.batch_size, progress=self.progress)
        metrics, preds = {}, {}
        t_eval = time.time()
        for split in self.eval_splits:
            p, m = evaluate_split(
                lm,
                self.splits[split],
                spec,
                r.eval.max_new_tokens[arm.format],
                r.eval.code_timeout_s,
                desc=f"eval {arm.name}/{split}",
            )
            atomic_write_jsonl(cell_dir / "predictions" / f"{split}.jsonl", p)
            metrics[split], preds[split] = m, p
            self.log(
                f"[lab]   {split:>13}: exact match {m['exact_match']:.3f} (n={m['n']}, no answer {m['no_answer']:.2f})"
            )
        eval_s = time.time() - t_eval
        if arm.method != "icl":
            del model, lm
        info = {
            "study": r.name,
            "model": r.model,
            "arm": arm.name,
            "method": arm.method,
            "format": arm.format,
            "k": arm.k,
            "seed": cell.seed,
        }
        rows = [
            {
                **info,
                "split": s,
                "ood": is_ood(s),
                "metric": "exact_match",
                "n": m["n"],
                "value": m["exact_match"],
                "no_answer": m["no_answer"],
            }
            for s, m in metrics.items()
        ]
        return {
            "cell": {**info, "demo_ids": [d.id for d in demos], "trigger": arm.trigger},
            "rows": rows,
            "metrics": metrics,
            "train": train_info,
            "eval_s": eval_s,
            "wall_s": time.time() - t0,
            "_predictions": preds,
        }

    def _output_delta(self, model: Any, tok: Any) -> float:
        """Max |logit difference| between the FT model and its base on probe prompts.

        An evaluated adapter must change the outputs; 0 means it was not applied."""
        texts = [prompt(ex) for ex in self.splits[ID_EVAL_SPLIT][:4]]
        if self._probe is None:
            base, btok = self.base()
            self._probe = _probe_logits(base, btok, texts)
        delta = float((_probe_logits(model, tok, texts) - self._probe).abs().max())
        if delta == 0.0:
            raise RuntimeError(
                "the fine-tuned model's outputs equal the base model's: the "
                "adapter or weights were not applied"
            )
        return delta


def run_study(
    recipe: Recipe,
    out: str | Path,
    force: bool = False,
    progress: bool = True,
    cache_dir: str | None = None,
) -> list[dict[str, Any]]:
    return Runner(recipe, out, force=force, progress=progress, cache_dir=cache_dir).run()
