"""The conductor: a recipe -> cells -> train (FT arms) -> eval on every split -> results
rows, per-example predictions, W&B runs and the report. Resumable.

A cell is (arm, budget, data seed, train seed), and in a ladder study (`model:` a list) also
the base model: every model runs the same cells (same data, seeds, budgets). Fairness is a
property of this module:
- every arm starts from the same base weights (fingerprint and parameter count recorded in
  every row; in a ladder, the same per model);
- per data seed, one permutation of the study's train pool: at budget b the k-shot arms'
  demos are its first b examples and the FT arms' training set the same first b examples;
- FT arms are evaluated with the ICL template at k = 0 (only the weights differ), on the
  last checkpoint or (`train.select: best_dev`) the one chosen on examples held out from
  inside the arm's own budget, which then trains on the rest (lab/fairness.py);
- every results row counts the labelled examples behind it (`labelled_examples`);
- nothing is selected on an evaluation split.

OUT/
  study.json                 resolved recipe, its hash, model, task and split sizes
  cells/<key>/               (ladder: <key> = m<i>-<model>__<arm>...) cell.json (the cell's done marker: rows, metrics, compute)
                             predictions/<variant>/<split>.jsonl, checkpoint/ (FT arms),
                             resume/ (FT arms, while training: the last training checkpoint)
  results.jsonl              one row per cell x variant x split x metric
  report/                    the comparison a reviewer reads

A cell is done when its cell.json exists (written atomically, last) and holds every eval and
probe split of the task (a lab upgrade may add one: then only that split is evaluated);
a rerun skips done cells. Inside an unfinished cell a rerun resumes: training from its last checkpoint in
resume/ (or not at all once checkpoint/train_result.json exists), evaluation per split (a
split whose predictions file exists is read back, not regenerated). A rerun with a changed
recipe is refused unless --force (which starts over).
"""

from __future__ import annotations

import gc
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from eval.evaluate import PromptSpec, summarize
from eval.lm import LM, context_length
from eval.parallel import evaluate_split_parallel, sum_across
from eval.probes import (
    evaluate_probe,
    evaluate_task_probe,
    macro_average,
    probe_prompt,
    task_probe_max_new_tokens,
    task_probe_spec,
)
from eval.prompts import demos_prefix, prompt
from eval.sandbox import require_sandbox
from lab import claims, fairness, ladder, preflight, report
from lab.compute import flop_counter
from lab.errors import LabError
from lab.io import (
    atomic_write_json,
    atomic_write_jsonl,
    create_json_exclusive,
    read_json,
    read_jsonl,
    remove_stale_tmp,
)
from lab.models import ResolvedModel, load_model, resolve_model
from lab.recipe import ArmCfg, Recipe, parse_recipe
from lab.tasks import build_task, describe_task
from lab.tasks.base import ID_EVAL_SPLIT, Example, check_formats, is_ood, usable
from lab.tasks.probes import describe_probes, is_probe
from lab.tasks.task_probes import is_task_probe
from lab.tracking import Tracker, cell_config, study_id

Budget = int | str | None


@dataclass(frozen=True)
class Cell:
    arm: ArmCfg
    budget: Budget  # None: the study has no budget axis, or the arm does not use data
    data_seed: int
    train_seed: int | None  # None for prompted arms
    model: str | None = None  # the base model of a ladder study; None: the study's only model
    model_tag: str | None = None  # m<i>-<name>: the model's place in the ladder, for the key

    @property
    def key(self) -> str:
        parts = [self.model_tag] if self.model_tag else []
        parts.append(self.arm.name)
        if self.budget is not None:
            parts.append(f"b{self.budget}")
        parts.append(f"d{self.data_seed}")
        if self.train_seed is not None and self.train_seed != self.data_seed:
            parts.append(f"t{self.train_seed}")
        return "__".join(parts)


def uses_data(arm: ArmCfg) -> bool:
    """Zero-shot prompted arms and arms with a fixed demo set (`demos: wei`) see no example
    of the budgeted pool: seeds and budgets do not apply to them."""
    return arm.method != "icl" or (arm.k > 0 and arm.demos is None)


def plan_cells(recipe: Recipe) -> list[Cell]:
    """Every cell of the study. A ladder repeats the single-model plan for each model, in
    the recipe's order (one base model in memory at a time)."""
    cells = _plan_one_model(recipe)
    if not recipe.is_ladder:
        return cells
    return [
        replace(c, model=m, model_tag=ladder.model_tag(i, m))
        for i, m in enumerate(recipe.models)
        for c in cells
    ]


def _plan_one_model(recipe: Recipe) -> list[Cell]:
    budgets: list[Budget] = list(recipe.budgets) if recipe.budgets else [None]
    cells = [Cell(a, None, recipe.seeds[0], None) for a in recipe.arms if not uses_data(a)]
    for ds in recipe.seeds:
        for b in budgets:
            for arm in recipe.arms:
                if not uses_data(arm):
                    continue
                if arm.method == "icl":
                    cells.append(Cell(arm, b, ds, None))
                else:
                    for ts in recipe.train_seeds or [ds]:
                        cells.append(Cell(arm, b, ds, ts))
    return cells


def eval_splits(splits: dict[str, list[Example]]) -> list[str]:
    return [s for s in splits if s == ID_EVAL_SPLIT or is_ood(s)]


def study_pool(recipe: Recipe, train: list[Example]) -> list[Example]:
    """The train examples usable in every format the study uses (e.g. GSM8K problems whose
    program could not be verified are dropped for all arms), so that every arm draws its
    demos and training data from the same pool."""
    for fmt in sorted({arm.format for arm in recipe.arms}):
        train = usable(train, fmt)
    return train


def data_order(recipe: Recipe, pool: list[Example], data_seed: int) -> list[Example]:
    """The data seed's permutation of the pool: demos and FT data are prefixes of it.

    With `sampling: balanced` (classification tasks, as Mosbach et al. 2023 sample their
    demos) the labels take turns in the order of their first appearance in the
    permutation, each label's examples keeping their permuted order: every prefix is
    class-balanced to within one example, and prefixes still nest across budgets."""
    order = list(range(len(pool)))
    random.Random(f"data-{recipe.task.seed}-{data_seed}").shuffle(order)
    ordered = [pool[i] for i in order]
    if recipe.sampling == "random":
        return ordered
    if not all(ex.choices for ex in pool):
        raise LabError(
            f"sampling: balanced needs a classification task (examples with labels); task "
            f"'{recipe.task.name}' generates its answers; use sampling: random"
        )
    by_label: dict[str, list[Example]] = {}
    for ex in ordered:
        by_label.setdefault(ex.answer, []).append(ex)
    queues = list(by_label.values())
    out: list[Example] = []
    for i in range(max(len(q) for q in queues)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def metric_rows(base: dict[str, Any], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The results rows of one split: exact match, and log p(gold) and Brier (classification
    splits) where the split has them."""
    return [
        {**base, "metric": k, "value": metrics[k]}
        for k in ("exact_match", "gold_logprob", "brier")
        if k in metrics
    ]


def budget_size(budget: Budget, default: int | None, pool: int) -> int:
    if budget is None:
        return min(default, pool) if default is not None else pool
    return pool if budget == "full" else int(budget)


def fixed_split(arm: ArmCfg) -> str:
    return f"demos_{arm.demos}"


def cell_data(
    recipe: Recipe,
    pool: list[Example],
    cell: Cell,
    splits: dict[str, list[Example]] | None = None,
) -> tuple[list[Example], list[Example]]:
    """(requested demos, FT training set) of a cell: prefixes of the data seed's permutation,
    so at budget b the k-shot arms' demos and the FT arms' data are the same b examples.
    An arm with a fixed demo set (`demos: wei`) takes the first k of the task's split
    `demos_wei` instead: not from the pool, the same for every seed and budget."""
    arm = cell.arm
    if arm.demos is not None:
        return list((splits or {}).get(fixed_split(arm), []))[: arm.k], []
    ordered = data_order(recipe, pool, cell.data_seed)
    if arm.method == "icl":
        k = budget_size(cell.budget, arm.k, len(pool)) if uses_data(arm) else 0
        return ordered[:k], []
    n = budget_size(cell.budget, recipe.train_for(arm).n_train, len(pool))
    return [], ordered[:n]


def validate(recipe: Recipe, splits: dict[str, list[Example]]) -> None:
    check_formats(recipe.arms, recipe.task.name, splits["train"])
    n_pool = len(study_pool(recipe, splits["train"]))
    formats = sorted({arm.format for arm in recipe.arms})
    if n_pool == 0:
        has = [f for f in ("answer", "cot", "code") if usable(splits["train"], f)]
        raise LabError(
            f"no train example of task '{recipe.task.name}' has a target in every format the "
            f"arms use ({formats}); the task has targets for {has}: change the arms' format"
        )
    for arm in recipe.arms:
        if arm.demos is not None:
            fixed = splits.get(fixed_split(arm), [])
            if arm.k > len(fixed):
                known = sorted(s.removeprefix("demos_") for s in splits if s.startswith("demos_"))
                raise LabError(
                    f"arm '{arm.name}' asks for k={arm.k} demos of the fixed set "
                    f"'{arm.demos}', which has {len(fixed)}; lower k or use one of the task's "
                    f"fixed demo sets {known}"
                )
            continue
        if arm.k > n_pool:
            raise LabError(
                f"arm '{arm.name}' asks for k={arm.k} demos but the train pool has {n_pool} "
                "usable examples; lower k or raise task.n_train"
            )
        if arm.method != "icl":
            n = recipe.train_for(arm).n_train
            if n is not None and n > n_pool:
                raise LabError(
                    f"arm '{arm.name}' trains on n_train={n} examples but the train pool has "
                    f"{n_pool}; lower train.n_train or raise task.n_train"
                )
            sizes = [budget_size(b, n, n_pool) for b in recipe.budgets or [None]]
            fairness.check_selection(arm.name, recipe.train_for(arm), sizes)
    for b in recipe.budgets or []:
        if b != "full" and int(b) > n_pool:
            raise LabError(
                f"budget {b} is larger than the train pool ({n_pool} usable examples); lower "
                "it, use 'full', or raise task.n_train"
            )
    if recipe.eval.ft_icl_probe_k > n_pool:
        raise LabError(
            f"eval.ft_icl_probe_k={recipe.eval.ft_icl_probe_k} is larger than the train pool "
            f"({n_pool}); lower it"
        )
    if "code" in formats or any("tests" in ex.meta for xs in splits.values() for ex in xs[:1]):
        require_sandbox()  # model-written programs will run: refuse now if none can be contained


def check_batch_sizes(recipe: Recipe, processes: int) -> None:
    """Every FT arm's global batch must split evenly over grad_accum x processes."""
    for arm in recipe.arms:
        if arm.method == "icl":
            continue
        cfg = recipe.train_for(arm)
        if cfg.batch_size % (cfg.grad_accum * processes):
            raise LabError(
                f"arm '{arm.name}': train.batch_size ({cfg.batch_size}) is not a multiple of "
                f"grad_accum x processes ({cfg.grad_accum} x {processes}); change "
                "train.batch_size or train.grad_accum"
            )


def same_study(old: dict[str, Any], recipe: Recipe) -> bool:
    """Whether the study recorded in `old` (a study.json) runs what `recipe` runs: the same
    hash, or a recipe written by an older lab that only lacks fields added since with
    their defaults (its stored resolved recipe, re-read now, hashes the same) and selects
    checkpoints the same way (lab/fairness.py)."""
    if not fairness.same_selection(old, recipe):
        return False
    if old.get("recipe_hash") == recipe.hash():
        return True
    try:
        return parse_recipe(old["recipe"], where="study.json").hash() == recipe.hash()
    except (LabError, KeyError, TypeError, ValueError):
        return False


def _prepare_out(out: Path, recipe: Recipe, force: bool, main: bool = True) -> str:
    """Check or clear `out` for this recipe; the study's hash (W&B run ids derive from it):
    the recorded one when an older lab started this study, else the recipe's."""
    study = out / "study.json"
    if study.is_file():
        old = read_json(study)
        if same_study(old, recipe):
            return str(old.get("recipe_hash"))
        if not force:
            raise LabError(
                f"{out} holds results of a different recipe (hash {old.get('recipe_hash')} "
                f"!= {recipe.hash()}); pass --force to start over or choose another --out"
            )
        if main:  # under accelerate launch: one process deletes
            for name in ("cells", "locks", "results.jsonl", "report", "wandb"):
                p = out / name
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return recipe.hash()


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
        profile: str | None = None,
        smoke: bool = False,
    ):
        self.recipe = recipe
        self.out = Path(out)
        self.progress = progress
        self.force = force
        self.lease_s = claims.lease_seconds()  # of this worker's claims on cells
        self._lock: claims.Lock | None = None  # the claim held now (main process)
        self.log = tqdm.write if progress else (lambda *a, **k: None)
        # Everything a user can get wrong is checked before anything is written.
        self.splits = build_task(recipe.task)
        validate(recipe, self.splits)
        self.models: dict[str, ResolvedModel] = {
            m: resolve_model(m, cache_dir) for m in recipe.models
        }
        self.model: ResolvedModel = self.models[recipe.models[0]]
        self.pool = study_pool(recipe, self.splits["train"])
        self.eval_splits = eval_splits(self.splits)
        head = max(1, recipe.eval.ft_icl_probe_k)
        orders = {ds: data_order(recipe, self.pool, ds)[:head] for ds in recipe.seeds}
        for m in self.models.values():
            preflight.check_context(recipe, self.splits, self.eval_splits, orders, m.path)
        from accelerate import Accelerator

        from lab import precision

        self.acc = Accelerator()  # (before any accelerate PartialState: it would pin 1 process)
        self.precision = precision.resolve(recipe.precision)  # bf16 | fp32, for every arm
        precision.check_launch(self.acc.mixed_precision, self.precision)
        if not self.acc.is_main_process:  # logs and progress bars: the main process only
            self.progress, self.log = False, (lambda *a, **k: None)
        check_batch_sizes(recipe, self.acc.num_processes)
        preflight.check_writable(self.out)
        if force and (live := claims.live_holders(self.out / "locks", self.lease_s)):
            who = ", ".join(f"{h.get('host')} pid {h.get('pid')}" for h in live[:3])
            raise LabError(
                f"--force would delete {self.out} under the workers running it ({who}); stop "
                "them first or choose another --out"
            )
        self.study_hash = _prepare_out(self.out, recipe, force, main=self.acc.is_main_process)
        self.study_id = study_id(recipe.name, profile, smoke, self.study_hash)  # the W&B group
        self.tracker = Tracker.off()  # run() opens the study's
        self.probe_splits = [s for s in self.splits if is_probe(s)]
        self._base: tuple[Any, Any] | None = None
        self._probe: torch.Tensor | None = None
        self._params: dict[str, int] | None = None
        self._counter: Any = None

    def use_model(self, spec: str) -> None:
        """Make `spec` the base model of the next cells (a ladder loads one at a time)."""
        if spec == self.model.spec:
            return
        self.model = self.models[spec]
        self._base, self._probe, self._params, self._counter = None, None, None, None
        gc.collect()

    # -- the study --------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        r = self.recipe
        self._check_probe_lengths()
        if self.acc.is_main_process:
            # Temp files a killed writer left: in cells/ once a cell is claimed, in report/
            # by the report's writer (another worker may be writing them right now), other
            # ones (study.json's) once they are old.
            for p in remove_stale_tmp(self.out, skip=("cells", "report"), min_age_s=60):
                self.log(f"[lab] removed {p} (left by an interrupted run)")
            self._write_study_json()
        self.acc.wait_for_everyone()  # every process sees the cleaned, current OUT
        tracker = self.tracker = Tracker(
            r.tracking, self.study_id, self.out, r.model_dump(mode="json"),
            id_salt=self.study_hash, main=self.acc.is_main_process,
        )  # fmt: skip
        cells = plan_cells(r)
        models = ", ".join(f"{m.spec} ({m.source})" for m in self.models.values())
        self.log(
            f"[lab] study '{r.name}': model {models}, {len(r.arms)} arms, "
            f"{len(cells)} cells; eval splits {self.eval_splits}; W&B {tracker.mode}; "
            f"out {self.out}"
        )
        for i, cell, missing in self._claimed_cells(cells):  # claimed: lab/claims.py
            cell_dir = self.out / "cells" / cell.key
            if missing:  # done by an older lab whose task had fewer splits
                self.log(
                    f"[lab] cell {i}/{len(cells)} {cell.key}: done without splits {missing} "
                    "(added since); evaluating them, the rest is reused"
                )
            self.log(
                f"[lab] cell {i}/{len(cells)} {cell.key} ({cell.arm.method}, {cell.arm.format})"
            )
            self.use_model(cell.model or r.models[0])
            if self.acc.is_main_process:
                config = cell_config(r, cell, self.model, self.study_id)
                tracker.start_cell(cell.key, cell.arm.method, config, [vars(self.model)])
            try:
                result = self.run_cell(cell, cell_dir)
            except BaseException as e:  # the cell's W&B run is marked failed, then re-raised
                tracker.end_cell(130 if isinstance(e, KeyboardInterrupt) else 1)  # W&B: failed
                raise
            if self.acc.is_main_process:
                result.pop("_predictions")  # logged to W&B per split, as each finished
                result["wandb_dir"] = tracker.log_cell(
                    result["cell"], result["metrics"], result["train"], cell_dir, [vars(self.model)]
                )
                atomic_write_json(cell_dir / "cell.json", result)
                shutil.rmtree(cell_dir / "resume", ignore_errors=True)
            self.acc.wait_for_everyone()
        rows = collect_rows(self.out, r)  # every cell is done
        if not claims.from_main(self.acc, lambda: self._claim_key("report")):
            self.log(f"[lab] all {len(cells)} cells done; another worker writes the report")
            return rows
        if self.acc.is_main_process:
            self._remove_stale_report_tmp()
            atomic_write_jsonl(self.out / "results.jsonl", rows)
            summary = write_any_report(self.out, r, rows, self._study_info(), self.splits)
            if tracker.enabled:
                from lab import wandb_report

                sid = self.study_id
                path = _write_wandb_definition(self.out, r, self.eval_splits, summary, sid)
                models = [vars(m) for m in self.models.values()]
                tracker.log_summary(summary, r.model_dump(mode="json"), models)
                if tracker.mode == "online":
                    wandb_report.publish(path)
                else:
                    print(
                        f"W&B offline: `wandb sync {self.out}/wandb/offline-run-*`, then `python {path}`"
                    )
            _print_summary(summary, self.out)
        self._release()
        return rows

    # -- workers sharing the study: claims (lab/claims.py; the main process claims) ---------
    def _claimed_cells(self, cells: list[Cell]) -> Iterator[tuple[int, Cell, list[str] | None]]:
        """(number, cell, the splits it lacks: None all) for each cell this worker claimed;
        the claim is released when the loop asks for the next one (or stops). Cells other
        workers hold are skipped, then waited for: this worker stays until every cell is
        done, and takes over the cell of a worker that is gone. The processes of one
        accelerate launch are one worker: the main one decides, and broadcasts."""
        pending, first, waited = list(enumerate(cells, start=1)), True, False
        while pending:
            busy = []
            for i, cell in pending:
                status, missing = claims.from_main(self.acc, lambda c=cell: self._claim(c))
                if status == "busy":
                    busy.append((i, cell))
                elif status == "done" and first:
                    self.log(f"[lab] cell {i}/{len(cells)} {cell.key}: done already, skipped")
                elif status == "run":
                    try:
                        yield i, cell, missing
                    finally:
                        self._release()
            pending, first = busy, False
            if pending:
                if not waited:
                    self.log(
                        f"[lab] waiting: {len(pending)} cells are run by other workers; this "
                        "one takes over any whose worker stops"
                    )
                    waited = True
                time.sleep(min(5.0, self.lease_s / 4))

    def _claim_key(self, key: str) -> bool:
        self._lock = claims.claim(self.out / "locks", key, self.lease_s)
        return self._lock is not None

    def _release(self) -> None:
        if self._lock is not None:
            if self._lock.lost:  # suspended past the lease: another worker ran it too
                self.log(f"[lab] the claim on {self._lock.key} was taken over by another worker")
            self._lock.release()
            self._lock = None

    def _claim(self, cell: Cell) -> tuple[str, list[str] | None]:
        """("done", []) for a done cell, ("busy", None) for one a live worker runs, else
        ("run", the splits the cell lacks: None all) with the cell claimed."""
        cell_dir = self.out / "cells" / cell.key
        if self._missing_splits(cell_dir) == []:
            return "done", []
        if not self._claim_key(cell.key):
            return "busy", None
        missing = self._missing_splits(cell_dir)  # again: finished just before the claim?
        if missing == []:
            self._release()
            return "done", []
        for p in remove_stale_tmp(cell_dir):  # left by a worker that died in this cell
            self.log(f"[lab] removed {p} (left by an interrupted run)")
        return "run", missing

    def _remove_stale_report_tmp(self) -> None:
        """Temp files of a report writer killed before (with the report claim: no one
        else's)."""
        stale = [*self.out.glob(".results.jsonl.*.tmp"), *remove_stale_tmp(self.out / "report")]
        for p in stale:
            p.unlink(missing_ok=True)
            self.log(f"[lab] removed {p} (left by an interrupted run)")

    def _write_study_json(self) -> None:
        """study.json, created race-free: of workers starting together on an empty OUT, one
        creates it, and the others find the same study there (or a different recipe's)."""
        study, info = self.out / "study.json", self._study_info()
        if create_json_exclusive(study, info):
            return
        old = read_json(study)
        if not (self.force or same_study(old, self.recipe)):
            raise LabError(
                f"{self.out} holds results of a different recipe (hash {old.get('recipe_hash')} "
                f"!= {self.recipe.hash()}); pass --force to start over or choose another --out"
            )
        atomic_write_json(study, info)  # the same study: refresh its record

    def _study_info(self) -> dict[str, Any]:
        r = self.recipe
        return {
            "name": r.name,
            "recipe": r.model_dump(mode="json"),
            "recipe_hash": self.study_hash,
            "study_id": self.study_id,
            "model": [vars(m) for m in self.models.values()] if r.is_ladder else vars(self.model),
            "task": {
                "name": r.task.name,
                "splits": {**describe_task(r.task), **describe_probes(self.splits)},
            },
            "split_sizes": {k: len(v) for k, v in self.splits.items()},
            "pool_size": len(self.pool),
            "eval_splits": self.eval_splits,
            "probe_splits": self.probe_splits,
            "selection": fairness.SELECTION,
            "precision": self.precision,
        }

    # -- one cell ---------------------------------------------------------------------------
    def base(self) -> tuple[Any, Any]:
        if self._base is None:
            self._base = load_model(self.model.path, self.acc.device, self.precision)
        return self._base

    def counter(self) -> Any:
        """The base model's FLOP counter (kept when the base model is freed)."""
        if self._counter is None:
            self._counter = flop_counter(self.base()[0])
        return self._counter

    def release_base(self) -> None:
        """Free the base model: one base model per process in memory at a time (an FT cell
        trains, then evaluates, its own copies). What the cell needs of it is kept."""
        if self._base is None:
            return
        self.params(), self.counter(), self._base_probe()
        self._base = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def params(self) -> dict[str, int]:
        """The base model's parameter count (all, and the decoder body without embeddings
        and LM head: the N of the FLOP accounting)."""
        if self._params is None:
            base = self.base()[0]
            self._params = {
                "n_params": sum(p.numel() for p in base.parameters()),
                "n_params_body": self.counter().body,
            }
        return self._params

    def run_cell(self, cell: Cell, cell_dir: Path) -> dict[str, Any]:
        r, arm = self.recipe, cell.arm
        wanted_demos, ft_data = cell_data(r, self.pool, cell, self.splits)
        info: dict[str, Any] = {
            "study": r.name, "model": self.model.spec, "model_fingerprint": self.model.fingerprint,
            **self.params(),
            "arm": arm.name, "method": arm.method, "format": arm.format,
            "budget": cell.budget, "data_seed": cell.data_seed, "train_seed": cell.train_seed,
            "cell": cell.key, "precision": self.precision,
        }  # fmt: skip
        t0 = time.time()
        variants: list[tuple[str, Any, Any, PromptSpec]] = []  # (name, model, tok, spec)
        train_info: dict[str, Any] = {}
        used: list[Example] = []  # the labelled examples training and selection touched
        if arm.method == "icl":
            model, tok = self.base()
            k = len(wanted_demos)
            demos = self._fit_demos(tok, wanted_demos, arm, cell)
            info.update(k=len(demos), k_requested=k, demos_truncated=len(demos) < k)
            # fixed demo sets are not drawn from the budgeted pool: said in every row
            info.update(demos=arm.demos or "pool", demos_fixed=arm.demos is not None)
            info["demo_ids"] = [d.id for d in demos]
            variants.append(
                ("prompted", model, tok, PromptSpec(arm.format, tuple(demos), arm.trigger))
            )
        else:
            from train.finetune import finetune, finished, load_finetuned

            cfg = r.train_for(arm)
            train_set, held_out = fairness.split_budget(ft_data, cfg)  # both inside the budget
            used = [*train_set, *held_out]
            n = len(train_set)
            self.release_base()
            res = finished(cell_dir / "checkpoint")  # trained before an interruption
            if res is None:
                res = finetune(
                    self.model.path, train_set, arm.format, arm.method, cfg, cell.train_seed,
                    cell_dir / "checkpoint", accelerator=self.acc, progress=self.progress,
                    dev_examples=held_out or None, precision=self.precision,
                    resume_dir=cell_dir / "resume", log=self.log, on_log=self.tracker.log_train,
                )  # fmt: skip
            else:
                self.log(f"[lab]   {cell.key}: trained before; evaluating {res.checkpoint}")
            train_info = res.to_dict() | {
                "n_train": n,
                "train_ids_head": [e.id for e in train_set[:8]],
                "held_out_ids": [e.id for e in held_out],
            }
            info.update(k=0, n_train=n, n_select=len(held_out), examples_seen=res.examples_seen)
            ckpts = {"last": res.checkpoint, "best": res.best_checkpoint or res.checkpoint}
            chosen = "best" if cfg.select == "best_dev" else "last"
            other = "last" if chosen == "best" else "best"
            info["selected"] = chosen
            model, tok = load_finetuned(self.model.path, ckpts[chosen], arm.method, self.precision)
            model.to(self.acc.device)
            # every evaluated checkpoint must differ from the base model (the other one is
            # checked when it is loaded, below)
            deltas = {chosen: self._output_delta(model, tok)}
            train_info |= {"output_delta": deltas[chosen], "output_deltas": deltas}
            variants.append((chosen, model, tok, PromptSpec(arm.format, (), arm.trigger)))
            if r.eval.ft_icl_probe_k:
                ordered = data_order(r, self.pool, cell.data_seed)  # same prefix as the data
                demos = tuple(ordered[: r.eval.ft_icl_probe_k])
                variants.append(
                    (
                        f"{chosen}+icl{len(demos)}",
                        model,
                        tok,
                        PromptSpec(arm.format, demos, arm.trigger),
                    )
                )
            if ckpts[other] != ckpts[chosen]:  # loaded when its turn comes (model None)
                variants.append((other, None, None, PromptSpec(arm.format, (), arm.trigger)))
        # Every process evaluates its shard of each split (eval/parallel.py); the main one writes.
        main = self.acc.is_main_process
        counter = self.counter()
        rows, metrics, preds, compute = [], {}, {}, {"train_flops": train_info.get("flops", 0.0)}
        t_eval = time.time()
        lm = model = None
        for v, (name, model, tok, spec) in enumerate(variants):
            variants[v] = (name, None, None, spec)  # the list keeps no model alive
            if model is None:  # the other checkpoint, once the chosen one is freed
                lm = None
                gc.collect()
                torch.cuda.empty_cache() if torch.cuda.is_available() else None
                model, tok = load_finetuned(
                    self.model.path, ckpts[name], arm.method, self.precision
                )
                model.to(self.acc.device)
                train_info["output_deltas"][name] = self._output_delta(model, tok)
            lm = LM(model, tok, batch_size=r.eval.batch_size, progress=self.progress)
            ran = {"tokens": 0, "head": 0}  # forward tokens of this variant, over all splits
            for split in self.eval_splits:
                path = cell_dir / "predictions" / name / f"{split}.jsonl"
                counts_path = path.with_suffix(".counts.json")
                p = read_jsonl(path) if path.is_file() and counts_path.is_file() else None
                if p is not None and not fairness.same_ids(p, self.splits[split]):
                    p = None  # stored for other examples (the split changed): recomputed
                    self.log(f"[lab]   {name} {split}: stored predictions are of other examples")
                if p is not None:  # evaluated before an interruption
                    counts = read_json(counts_path)
                    m = summarize(p)
                    if main:
                        self.log(
                            f"[lab]   {name} {split}: predictions of an interrupted run reused"
                        )
                else:
                    before = dict(lm.counts)
                    p, m = evaluate_split_parallel(
                        lm, self.splits[split], spec, r.eval.max_new_tokens[arm.format],
                        r.eval.code_timeout_s, desc=f"eval {arm.name}/{name}/{split}",
                        gold_logprob=r.eval.gold_logprob,
                    )  # fmt: skip
                    counts = {k: sum_across(lm.counts[k] - before[k]) for k in ran}
                    if main:
                        atomic_write_json(counts_path, counts)
                        atomic_write_jsonl(path, p)  # last: the split's done marker
                ran = {k: ran[k] + counts[k] for k in ran}
                m["flops_per_example"] = sum(
                    counter.generate(x["prompt_tokens"], x["new_tokens"]) for x in p
                ) / len(p)
                if main:
                    self.log(
                        f"[lab]   {name:>10} {split:>13}: exact match {m['exact_match']:.3f} "
                        f"(n={m['n']}, no answer {m['no_answer']:.2f})"
                    )
                metrics[f"{name}/{split}"], preds[f"{name}/{split}"] = m, p
                prompts = {ex.id: prompt(ex, spec.trigger) for ex in self.splits[split]}
                self.tracker.log_split(name, split, m, p, prompts, spec.prefix)
                probe_k = len(spec.demos) if arm.method != "icl" else 0
                base_row = {**{k: v for k, v in info.items() if k != "demo_ids"},
                            "variant": name, "probe_k": probe_k, "split": split,
                            "ood": is_ood(split), "n": m["n"],
                            "labelled_examples": fairness.count_labelled(used, spec.demos)}  # fmt: skip
                rows += metric_rows(base_row, m)
            if not (arm.method != "icl" and spec.demos):  # probes ignore the arm's demos
                probe_info = {**info, "labelled_examples": fairness.count_labelled(used)}
                rows += self._eval_probes(lm, name, probe_info, cell_dir, metrics, preds, counter)
            compute[f"{name}/eval_flops_as_run"] = counter.forward(ran["tokens"], ran["head"])
        if not main:
            return {}
        compute["eval_s"] = time.time() - t_eval
        compute["train_s"] = train_info.get("wall_s", 0.0)
        return {
            "cell": info,
            "rows": rows,
            "metrics": metrics,
            "train": train_info,
            "compute": compute,
            "wall_s": time.time() - t0,
            "_predictions": preds,
        }

    def _missing_splits(self, cell_dir: Path) -> list[str] | None:
        """None: the cell is not done. Else the eval and probe splits its cell.json lacks
        ([] when complete): a study resumed after a lab upgrade that added splits (e.g.
        `ood_aqua_gen`) evaluates just those; training and finished splits are reused
        (their checkpoint and predictions files)."""
        path = cell_dir / "cell.json"
        if not path.is_file():
            return None
        have = {row["split"] for row in read_json(path)["rows"]}
        return [s for s in [*self.eval_splits, *self.probe_splits] if s not in have]

    def _check_probe_lengths(self) -> None:
        """Every probe prompt (its fixed prefix or demos, the question, the generation
        budget) must fit the context: checked before the first cell, not when a probe is
        reached."""
        if not self.probe_splits:
            return
        model, tok = self.base()
        limit = context_length(model)

        def n_tokens(text: str) -> int:
            return len(tok(text, add_special_tokens=False).input_ids)

        for split in self.probe_splits:
            xs = self.splits[split]
            if is_task_probe(xs[0]):
                m = xs[0].meta
                prefix = len(tok(task_probe_spec(xs).prefix).input_ids)
                longest = max(n_tokens(prompt(x)) + max(map(n_tokens, x.choices), default=0)
                              for x in xs)  # fmt: skip
                need = prefix + longest + self._probe_max_new(xs)
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

    def _probe_max_new(self, xs: list[Example]) -> int:
        return task_probe_max_new_tokens(xs, self.recipe.eval.max_new_tokens)

    def _eval_probes(
        self, lm: LM, name: str, info: dict[str, Any], cell_dir: Path,
        metrics: dict[str, Any], preds: dict[str, Any], counter: Any,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Probe splits, each with its own fixed prompt (BBH: CoT answer extraction;
        cross-task probes: the probed task's own scoring): one row per split and metric,
        and one macro-average exact-match row per probe family (split `probe_<family>`:
        `probe_bbh`, `probe_gsm8k`...)."""
        r = self.recipe
        rows: list[dict[str, Any]] = []
        families: dict[str, dict[str, dict[str, float]]] = {}
        base_row = {k: v for k, v in info.items() if k != "demo_ids"}
        base_row.update(variant=name, probe_k=0, ood=False)
        for split in self.probe_splits:
            xs, desc = self.splits[split], f"probe {info['arm']}/{name}/{split}"
            if is_task_probe(xs[0]):
                p, m = evaluate_task_probe(
                    lm, xs, self._probe_max_new(xs), r.eval.code_timeout_s, desc=desc,
                    gold_logprob=r.eval.gold_logprob,
                )  # fmt: skip
            else:  # BBH (sharded across processes, like the rest)
                p, m = evaluate_probe(lm, xs, desc=desc)
            m["flops_per_example"] = sum(
                counter.generate(x["prompt_tokens"], x["new_tokens"]) for x in p
            ) / len(p)
            if self.acc.is_main_process:
                atomic_write_jsonl(cell_dir / "predictions" / name / f"{split}.jsonl", p)
            metrics[f"{name}/{split}"], preds[f"{name}/{split}"] = m, p
            task = is_task_probe(xs[0])
            self.tracker.log_split(
                name, split, m, p, {x.id: prompt(x) if task else probe_prompt(x) for x in xs}
            )
            family = xs[0].meta["probe"]
            families.setdefault(family, {})[split] = m
            rows += metric_rows({**base_row, "split": split, "probe": family, "n": m["n"],
                                 "probe_demos": fairness.fixed_demo_count(xs)}, m)  # fmt: skip
        for family, per in families.items():
            macro = macro_average(per)
            metrics[f"{name}/probe_{family}"] = macro
            self.log(
                f"[lab]   {name:>10} {'probe_' + family:>13}: macro exact match "
                f"{macro['exact_match']:.3f} ({macro['subtasks']} splits, n={macro['n']})"
            )
            rows.append({**base_row, "split": f"probe_{family}", "probe": family,
                         "aggregate": "macro", "n": macro["n"], "metric": "exact_match",
                         "value": macro["exact_match"]})  # fmt: skip
        return rows

    def _fit_demos(self, tok: Any, demos: list[Example], arm: ArmCfg, cell: Cell) -> list[Example]:
        """The longest prefix of `demos` whose prompt fits the context with every eval
        example and the generation budget. Fewer demos than asked are recorded (k vs
        k_requested, demos_truncated) and reported; nothing is cut silently."""
        if not demos:
            return demos
        limit = context_length(self.base()[0])
        longest = max(
            len(tok(prompt(ex, arm.trigger), add_special_tokens=False).input_ids)
            for s in self.eval_splits
            for ex in self.splits[s]
        )
        room = limit - longest - self.recipe.eval.max_new_tokens[arm.format] - 8

        def fits(k: int) -> bool:
            return len(tok(demos_prefix(demos[:k], arm.format)).input_ids) <= room

        if fits(len(demos)):
            return demos
        lo, hi = 0, len(demos)  # fits(lo) holds, fits(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        if lo == 0:
            raise LabError(
                f"arm '{arm.name}': not even one demo fits the model's context ({limit} tokens); "
                "use shorter examples or a model with a longer context"
            )
        self.log(f"[lab]   {cell.key}: only {lo} of {len(demos)} demos fit the context; using {lo}")
        return demos[:lo]

    def _probe_texts(self) -> list[str]:
        return [prompt(ex) for ex in self.splits[ID_EVAL_SPLIT][:4]]

    def _base_probe(self) -> torch.Tensor:
        """The base model's next-token logits on the probe prompts (computed once)."""
        if self._probe is None:
            base, btok = self.base()
            self._probe = _probe_logits(base, btok, self._probe_texts())
        return self._probe

    def _output_delta(self, model: Any, tok: Any) -> float:
        """Max |logit difference| between the FT model and its base on probe prompts.

        An evaluated adapter must change the outputs; 0 means it was not applied."""
        delta = float(
            (_probe_logits(model, tok, self._probe_texts()) - self._base_probe()).abs().max()
        )
        if delta == 0.0:
            raise RuntimeError(
                "the fine-tuned model's outputs equal the base model's: the adapter or weights "
                "were not applied"
            )
        return delta


def write_any_report(
    out: Path,
    recipe: Recipe,
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    splits: dict[str, list[Example]],
) -> report.Summary:
    """The study's report: the ladder report for a list of models, else the single-model one."""
    if recipe.is_ladder:
        return ladder.write_ladder_report(out, recipe, rows, info, splits)
    return report.write_report(out, recipe, rows, info, splits)


def collect_rows(out: Path, recipe: Recipe) -> list[dict[str, Any]]:
    """The results rows of a study's finished cells, in plan order."""
    rows: list[dict[str, Any]] = []
    for cell in plan_cells(recipe):
        path = out / "cells" / cell.key / "cell.json"
        if path.is_file():
            rows.extend(read_json(path)["rows"])
    return rows


def _write_wandb_definition(
    out: Path, recipe: Recipe, eval_splits: list[str], summary: report.Summary, study: str
) -> Path:
    from lab import wandb_report

    return wandb_report.write_definition(out, recipe, study, eval_splits, summary)


def _print_summary(summary: report.Summary, out: Path, note: str = "") -> None:
    print(summary.table.render())
    if summary.probes:
        print(f"\nprobes:\n{summary.probes.render()}")
    if summary.task_probes:
        print(f"\ncross-task probes:\n{summary.task_probes.render()}")
    if summary.headline:
        print(f"\n{summary.headline}")
    print(f"\nreport{note}: {out / 'report' / 'index.html'}")


def rebuild_report(out: str | Path) -> report.Summary:
    """Rewrite OUT/report/ from a study's finished cells (e.g. after a report change, or of
    a study still running): nothing is trained or evaluated again."""
    out = Path(out)
    if not (out / "study.json").is_file():
        raise LabError(f"{out} holds no study (no study.json); pass the --out of a study run")
    info = read_json(out / "study.json")
    recipe = parse_recipe(info["recipe"], where=str(out / "study.json"))
    splits = build_task(recipe.task)
    rows = collect_rows(out, recipe)
    if not rows:
        raise LabError(f"{out}: no finished cell yet; wait for the study or rerun it")
    summary = write_any_report(out, recipe, rows, info, splits)
    if (out / "report" / "wandb_report.py").is_file():  # keep the W&B Report in step
        study = info.get("study_id") or study_id(recipe.name, None, False, info["recipe_hash"])
        _write_wandb_definition(out, recipe, info["eval_splits"], summary, study)
    done = sum((out / "cells" / c.key / "cell.json").is_file() for c in plan_cells(recipe))
    _print_summary(summary, out, f" ({done}/{len(plan_cells(recipe))} cells)")
    return summary


def run_study(
    recipe: Recipe,
    out: str | Path,
    force: bool = False,
    progress: bool = True,
    cache_dir: str | None = None,
    profile: str | None = None,
    smoke: bool = False,
) -> list[dict[str, Any]]:
    """Run (or resume) a study. Any number of workers (processes, cluster jobs) may run the
    same study into the same `out`: they claim cells as they go (lab/claims.py). `profile` and
    `smoke` (how the recipe was loaded) name the study in W&B (its study id)."""
    return Runner(
        recipe, out, force=force, progress=progress, cache_dir=cache_dir,
        profile=profile, smoke=smoke,
    ).run()  # fmt: skip
