"""The conductor: a recipe -> cells -> train (FT arms) -> eval on every split -> results
rows, per-example predictions, W&B runs and the report. Resumable, and any number of
workers may run one study together (they claim cells: lab/study/claims.py).

plan.py plans the cells and their data (a `CellPlan` per cell), cells.py runs one,
store.py keeps the output folder (its layout: lab/core/layout.py), publish.py writes the
report.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lab.core import fairness
from lab.core.errors import LabError
from lab.core.example import ID_EVAL_SPLIT
from lab.core.io import atomic_write_jsonl, remove_stale_tmp
from lab.core.layout import StudyDir
from lab.core.precision import for_eval
from lab.core.recipe import Recipe
from lab.report.tracking import Tracker, study_id
from lab.report.wandb_keys import cell_config
from lab.study import claims, preflight, store
from lab.study.base_model import StudyBase
from lab.study.cells import CellRunner
from lab.study.context import ContextFit
from lab.study.models import ResolvedModel, resolve_model
from lab.study.plan import (
    Cell,
    check_batch_sizes,
    check_sandbox,
    data_order,
    plan_cell,
    plan_cells,
    study_data,
    validate,
)
from lab.study.publish import print_summary, write_any_report, write_wandb_definition
from lab.tasks import build_task, describe_task
from lab.tasks.probes import describe_probes
from train.sharded import from_main


class Runner:
    """A study in this process: checks everything a user can get wrong before anything is
    written, then claims and runs cells until every cell is done, then the report."""

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
        self.study = StudyDir(Path(out))
        self.out = self.study.root
        self.progress = progress
        self.force = force
        self.lease_s = claims.lease_seconds()  # of this worker's claims on cells
        self._lock: claims.Lock | None = None  # the claim held now (main process)
        self.log = tqdm.write if progress else (lambda *a, **k: None)
        # Everything a user can get wrong is checked before anything is written; a host that
        # cannot contain the programs of code-format arms, before the task is built.
        check_sandbox(recipe)
        self.splits = build_task(recipe.task)
        validate(recipe, self.splits)
        self.data = study_data(recipe, self.splits)
        self.models: dict[str, ResolvedModel] = {
            m: resolve_model(m, cache_dir) for m in recipe.models
        }
        self.model: ResolvedModel = self.models[recipe.models[0]]
        head = max(1, recipe.eval.ft_then_icl_k)
        orders = {ds: data_order(recipe, self.data.pool, ds)[:head] for ds in recipe.seeds}
        self.fits = {spec: ContextFit(recipe, self.data, m.path) for spec, m in self.models.items()}
        for fit in self.fits.values():
            fit.check(orders)
            fit.check_in_context()
        from lab.core import precision
        from train import zero3
        from train.sharded import accelerator

        # (before any accelerate PartialState: it would pin 1 process and the default timeout)
        self.acc = accelerator(recipe.distributed.timeout_s)
        self.precision = precision.resolve(recipe.precision)  # bf16 | fp32, for every arm
        self.eval_precision = for_eval(recipe.eval.precision, self.precision)
        precision.check_launch(self.acc.mixed_precision, self.precision)
        if not self.acc.is_main_process:  # logs and progress bars: the main process only
            self.progress, self.log = False, (lambda *a, **k: None)
        check_batch_sizes(recipe, self.acc.num_processes)
        zero3.check(
            self.acc,
            [recipe.train_for(a) for a in recipe.arms if a.method != "icl"],
            self.precision,
        )
        preflight.check_writable(self.out)
        if force and (live := claims.live_holders(self.study.locks, self.lease_s)):
            who = ", ".join(f"{h.get('host')} pid {h.get('pid')}" for h in live[:3])
            raise LabError(
                f"--force would delete {self.out} under the workers running it ({who}); stop "
                "them first or choose another --out"
            )
        main = self.acc.is_main_process
        self.study_hash = store.prepare_out(self.study, recipe, force, main=main)
        self.study_id = study_id(recipe.name, profile, smoke, self.study_hash)  # the W&B group
        self.profile = profile  # a tag of its W&B runs

    def cell_runner(self, spec: str, tracker: Tracker) -> CellRunner:
        """The runner of the cells of base model `spec` (a ladder loads one at a time)."""
        self.model = self.models[spec]
        base = StudyBase(
            self.model, self.acc.device, self.eval_precision, self.splits[ID_EVAL_SPLIT]
        )
        return CellRunner(
            self.recipe,
            self.data,
            self.acc,
            self.precision,
            base,
            tracker,
            self.progress,
            self.log,
            fit_demos=self.fits[spec].fit_demos,
        )

    # -- the study --------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        r, study = self.recipe, self.study
        if self.acc.is_main_process:
            # Temp files a killed writer left: in cells/ once a cell is claimed, in report/
            # by the report's writer (another worker may be writing them right now), other
            # ones (study.json's) once they are old.
            for p in remove_stale_tmp(self.out, skip=("cells", "report"), min_age_s=60):
                self.log(f"[lab] removed {p} (left by an interrupted run)")
            store.write_study_json(study, self._study_info(), self.recipe, self.force)
        self.acc.wait_for_everyone()  # every process sees the cleaned, current OUT
        tracker = Tracker(
            r.tracking,
            self.study_id,
            self.out,
            r.model_dump(mode="json"),
            id_salt=self.study_hash,
            main=self.acc.is_main_process,
            profile=self.profile,
            precision=self.precision,
        )
        cells = plan_cells(r)
        models = ", ".join(f"{m.spec} ({m.source})" for m in self.models.values())
        self.log(
            f"[lab] study '{r.name}': model {models}, {len(r.arms)} arms, "
            f"{len(cells)} cells; eval splits {self.data.eval_splits}; W&B {tracker.mode}; "
            f"out {self.out}"
        )
        runner = None
        with frozen_heap():  # the cells' models are freed quickly (frozen_heap)
            for i, cell in self._claimed_cells(cells):  # claimed: lab/study/claims.py
                cell_dir = study.cell(cell.key)
                self.log(
                    f"[lab] cell {i}/{len(cells)} {cell.key} ({cell.arm.method}, {cell.arm.format})"
                )
                spec = cell.model or r.models[0]
                if runner is None or spec != self.model.spec:
                    runner = None
                    gc.collect()
                    runner = self.cell_runner(spec, tracker)
                fit = self.fits[spec]
                plan = plan_cell(r, self.data, cell, fit.fit_demos, fit.fit_retrieved)
                if self.acc.is_main_process:
                    config = cell_config(r, cell, self.model, self.study_id)
                    tracker.start_cell(cell.key, cell.arm.method, config, [vars(self.model)])
                try:
                    result = runner.run(plan, cell_dir)
                except BaseException as e:  # the cell's W&B run is marked failed, then re-raised
                    tracker.end_cell(130 if isinstance(e, KeyboardInterrupt) else 1)  # W&B: failed
                    raise
                if result is not None:  # the main process
                    result.wandb_dir = tracker.log_cell(
                        result.cell, result.metrics, result.train, cell_dir.root, [vars(self.model)]
                    )
                    cell_dir.write(result.to_dict())
                    shutil.rmtree(cell_dir.resume, ignore_errors=True)
                self.acc.wait_for_everyone()
        rows = [row.to_dict() for row in store.collect_rows(study, r)]  # every cell is done
        if not from_main(self.acc, lambda: self._claim_key("report")):
            self.log(f"[lab] all {len(cells)} cells done; another worker writes the report")
            return rows
        if self.acc.is_main_process:
            for p in store.remove_stale_report_tmp(study):
                self.log(f"[lab] removed {p} (left by an interrupted run)")
            atomic_write_jsonl(study.results, rows)
            summary = write_any_report(study, r, rows, self._study_info(), self.splits)
            if tracker.enabled:
                from lab.report import wandb_report

                sid = self.study_id
                path = write_wandb_definition(study, r, self.data.eval_splits, summary, sid)
                models = [vars(m) for m in self.models.values()]
                tracker.log_summary(summary, r.model_dump(mode="json"), models)
                if tracker.mode == "online":
                    wandb_report.publish(path)
                else:
                    print(
                        f"W&B offline: `wandb sync {study.wandb}/offline-run-*`, then `python {path}`"
                    )
            print_summary(summary, study)
        self._release()
        return rows

    # -- workers sharing the study: claims (lab/study/claims.py; the main process claims) ---------
    def _claimed_cells(self, cells: list[Cell]) -> Iterator[tuple[int, Cell]]:
        """(number, cell) for each cell this worker claimed; the claim is released when the
        loop asks for the next one (or stops). Cells other workers hold are skipped, then
        waited for: this worker stays until every cell is done, and takes over the cell of
        a worker that is gone. The processes of one accelerate launch are one worker: the
        main one decides, and broadcasts."""
        pending, first, waited = list(enumerate(cells, start=1)), True, False
        while pending:
            busy = []
            for i, cell in pending:
                status = from_main(self.acc, lambda c=cell: self._claim(c))
                if status == "busy":
                    busy.append((i, cell))
                elif status == "done" and first:
                    self.log(f"[lab] cell {i}/{len(cells)} {cell.key}: done already, skipped")
                elif status == "run":
                    try:
                        yield i, cell
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
        self._lock = claims.claim(self.study.locks, key, self.lease_s)
        return self._lock is not None

    def _release(self) -> None:
        if self._lock is not None:
            if self._lock.lost:  # suspended past the lease: another worker ran it too
                self.log(f"[lab] the claim on {self._lock.key} was taken over by another worker")
            self._lock.release()
            self._lock = None

    def _claim(self, cell: Cell) -> str:
        """ "done" for a done cell, "busy" for one a live worker runs, else "run" with the
        cell claimed."""
        cell_dir = self.study.cell(cell.key)
        if cell_dir.is_done():
            return "done"
        if not self._claim_key(cell.key):
            return "busy"
        if cell_dir.is_done():  # again: finished just before the claim?
            self._release()
            return "done"
        for p in remove_stale_tmp(cell_dir.root):  # left by a worker that died in this cell
            self.log(f"[lab] removed {p} (left by an interrupted run)")
        return "run"

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
            "pool_size": len(self.data.pool),
            "eval_splits": self.data.eval_splits,
            "probe_splits": self.data.probe_splits,
            "selection": fairness.SELECTION,
            "precision": self.precision,
            "eval_precision": self.eval_precision,
            "eval_invariant": r.eval.invariant,
        }


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
    same study into the same `out`: they claim cells as they go (lab/study/claims.py). `profile` and
    `smoke` (how the recipe was loaded) name the study in W&B (its study id)."""
    return Runner(
        recipe,
        out,
        force=force,
        progress=progress,
        cache_dir=cache_dir,
        profile=profile,
        smoke=smoke,
    ).run()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """What exists when the cells start (imported modules, the study's data, the recipe)
    outlives them: frozen (gc.freeze), the garbage collector no longer scans it, so each full
    collection that frees a cell's models (the runner, eval/merge.py, accelerate's
    free_memory) takes ~0.02 s instead of ~0.27 s (a 26-cell smoke study: 21 s of its 55 s).
    Collected first (no garbage is frozen for good) and unfrozen after, for a process that
    runs several studies. A heap the process froze itself (the test session after each test
    file, a server after its imports) is left as it is: unfreezing would undo that freeze too."""
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
