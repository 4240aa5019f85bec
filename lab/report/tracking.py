"""Weights & Biases tracking: one run per cell (grouped by study) and one summary run.

The W&B group is the study id (recipe name, profile, --smoke or not, recipe hash: see
`study_id`), and every run gets its config, tags and notes at `wandb.init`, so running and
failed cells show in the workspace with their arm, budget and seeds. Keys, config, tags and
notes follow lab/report/wandb_keys.py (one key scheme for every arm). While a cell runs, its
run gets the training loss, learning rate, gradient norm, tokens/s, epoch and the ID-dev
loss at every step (`train_logger`, the training loop's `on_log`) and each split's metrics
and typed prediction table as the split finishes (`log_split`), on the training-step axis;
at its end, the same metrics as summary values and its artifacts
(lab/report/wandb_artifacts.py). System metrics
(CPU, memory; GPU utilisation and memory on GPU nodes) are sampled by wandb. Only the
main process logs (`main=False` on the other processes of `accelerate launch`).

Mode `auto` is online when an API key is configured (WANDB_API_KEY or a netrc entry) and
offline otherwise; offline runs land in OUT/wandb/ and upload later with `wandb sync`.
`disabled` turns tracking off. W&B never decides a result: everything it logs is also in
OUT/ as plain files.

Reliability: a cell's run is finished with exit code 0 when its results are logged, non-zero
when the cell raises (or is stopped), so W&B shows it failed. Run ids are deterministic (out
dir, recipe hash, cell key) and runs are opened with `resume="allow"`: a rerun of a crashed
cell continues the same W&B run. When online W&B is unreachable (or `wandb.init` fails or
times out), tracking falls back to offline with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import netrc
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lab.core.layout import CellDir, StudyDir
from lab.core.recipe import TrackingCfg
from lab.report import wandb_artifacts, wandb_keys


def resolve_mode(cfg: TrackingCfg) -> str:
    if cfg.mode != "auto":
        return cfg.mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


INIT_TIMEOUT_S = 30.0  # wandb.init gives up after this (its default is 90 s)
PROBE_TIMEOUT_S = 5.0


def reachable(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the W&B server answers HTTP at all (any status code counts)."""
    try:
        urllib.request.urlopen(base_url.rstrip("/") + "/healthz", timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def study_id(name: str, profile: str | None, smoke: bool, recipe_hash: str) -> str:
    """The study's W&B group and Report filter: `<name>-<profile or default>[-smoke]-<hash8>`,
    so smoke, demo and full runs of one recipe are told apart."""
    parts = [name, profile or "default", *(["smoke"] if smoke else []), recipe_hash[:8]]
    return "-".join(parts)


def _models_config(models: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"spec": m["spec"], "fingerprint": m["fingerprint"],
         "artifact": wandb_artifacts.artifact_name("base-model", m["fingerprint"])}
        for m in models
    ]  # fmt: skip


def _staged(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a Tracker method that logs files with W&B's staging folder in OUT/wandb/data/."""

    @functools.wraps(method)
    def wrapper(self: Tracker, *a: Any, **k: Any) -> Any:
        with wandb_artifacts.staged_in(self.out):
            return method(self, *a, **k)

    return wrapper


class Tracker:
    def __init__(
        self,
        cfg: TrackingCfg,
        study: str,
        out: Path,
        config: dict[str, Any],
        id_salt: str = "",
        main: bool = True,
        profile: str | None = None,
        precision: str | None = None,
    ):
        self.cfg = cfg
        self.profile = profile  # the recipe profile: a tag of every run
        self.precision = precision  # the precision every cell runs in (bf16 | fp32)
        self.study = study  # the study id: the W&B group
        self.out = out
        self.config = config  # the study's recipe: every run's config under `study`
        self.id_salt = id_salt  # the recipe hash: another recipe in the same out, other runs
        self.mode = resolve_mode(cfg) if main else "disabled"  # rank 0 logs, the rest not
        self._run: Any = None
        self._compared = "prompted"  # the open cell's compared variant (wandb_keys)
        self._steps: dict[str, int] = {}  # checkpoint -> its optimizer step
        self._per_epoch = 0.0  # optimizer steps per epoch of the open cell's training set
        self._trained_live = False  # log_train reached the open run
        if self.enabled and importlib.util.find_spec("wandb") is None:
            warn("wandb is not installed; W&B tracking is off (results are in OUT/ as files)")
            self.mode = "disabled"
        if self.mode == "online":
            url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
            if not reachable(url):
                self._go_offline(f"W&B server {url} is unreachable")

    @classmethod
    def off(cls) -> Tracker:
        """A tracker that logs nothing."""
        return cls(TrackingCfg(mode="disabled"), "", Path("."), {})

    def _go_offline(self, why: str) -> None:
        warn(
            f"{why}; logging to W&B offline in {self.out / 'wandb'} instead "
            f"(upload later with `wandb sync {self.out}/wandb/offline-run-*`)"
        )
        self.mode = "offline"

    def run_id(self, key: str) -> str:
        """Deterministic W&B run id of a cell (or 'summary') of this study."""
        src = f"{Path(self.out).resolve()}|{self.id_salt}|{key}"
        return hashlib.sha256(src.encode()).hexdigest()[:16]

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def _safely(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run a W&B call that must not cost the study: a failure is a warning."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - W&B never decides a result
            warn(f"W&B: {what} failed ({type(e).__name__}: {e}); the files in {self.out} have it")
            return None

    def _init(
        self,
        name: str,
        job_type: str,
        extra: dict[str, Any],
        models: Sequence[dict[str, Any]],
        notes: str | None = None,
    ) -> Any:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        kw = dict(
            project=self.cfg.project,
            entity=self.cfg.entity,
            group=self.study,
            job_type=job_type,
            name=name,
            id=self.run_id(name),
            resume="allow",
            config={
                "study": self.config,
                "study_id": self.study,
                "out_dir": wandb_keys.out_dir(self.out),
                "base_models": _models_config(models),
                **extra,
            },  # fmt: skip
            tags=wandb_keys.tags({"task": self.config.get("task"), **extra}, self.profile),
            notes=notes,
            dir=str(self.out),
            reinit="create_new",
        )
        settings = dict(console="off", silent=True)  # system metrics on (GPU on GPU nodes)
        try:
            run = wandb.init(
                mode=self.mode,
                settings=wandb.Settings(**settings, init_timeout=INIT_TIMEOUT_S),
                **kw,
            )
        except Exception as e:  # noqa: BLE001 - any failure online has the same fallback
            if self.mode != "online":
                raise
            self._go_offline(f"wandb.init failed online ({type(e).__name__})")
            run = wandb.init(mode="offline", settings=wandb.Settings(**settings), **kw)
        # One step axis, as HF's Trainer callback: training curves over optimizer steps, each
        # evaluation at its checkpoint's step (0 for a prompted arm).
        run.define_metric("train/step")
        run.define_metric("train/*", step_metric="train/step")
        run.define_metric("dev/*", step_metric="train/step")
        run.define_metric("dev/loss", step_metric="train/step", summary="min")
        run.define_metric("eval/*", step_metric="train/step")
        if self.mode == "online":  # lineage: the base weights are every run's input
            for m in models:
                art = wandb_artifacts.base_model(
                    m["spec"], m["path"], m["source"], m["fingerprint"]
                )
                self._safely("declaring the base model as input", lambda a=art: run.use_artifact(a))
        return run

    def start_cell(
        self, key: str, job_type: str, config: dict[str, Any], models: Sequence[dict[str, Any]]
    ) -> None:
        """Open the cell's run now, with its full config, so that it shows (running, then
        finished or failed) in the workspace and training can log to it live."""
        if self.enabled:
            self.end_cell(0)  # a run left open by a cell that logged nothing
            if self.precision:
                config = {**config, "precision": self.precision}
            notes = wandb_keys.describe_arm(config)
            self._run = self._init(key, job_type, config, models, notes)
            self._compared = wandb_keys.compared_variant(config)
            self._steps, self._per_epoch, self._trained_live = {}, 0.0, False

    def end_cell(self, exit_code: int) -> None:
        """Finish the open cell run; a non-zero exit code marks it failed in W&B."""
        if self._run is not None:
            run, self._run = self._run, None
            run.finish(exit_code=exit_code)

    def log_train(self, metrics: dict[str, float]) -> None:
        """One optimizer step's (or ID-dev evaluation's) metrics, with `train/step`, to the
        open cell run, with `train/epoch` once `train_logger` gave the training set's size."""
        if self._run is not None:
            run = self._run
            if self._per_epoch and "train/step" in metrics:
                metrics = {**metrics, "train/epoch": metrics["train/step"] / self._per_epoch}
            self._safely("logging training metrics", lambda: run.log(metrics))
            self._trained_live = True

    def train_logger(self, n_train: int, batch_size: int) -> Callable[[dict[str, float]], None]:
        """The training loop's `on_log` for a training set of `n_train` examples read
        `batch_size` per optimizer step (for `train/epoch`)."""
        self._per_epoch = n_train / batch_size if n_train and batch_size else 0.0
        return self.log_train

    def checkpoint_steps(self, last: int, best: int | None) -> None:
        """The optimizer steps of the open cell's checkpoints: its evaluations' x."""
        self._steps = {"last": last, "best": best if best is not None else last}

    def _eval_axis(self, variant: str) -> dict[str, float]:
        step = self._steps.get(variant.split("@")[0].split("+")[0], 0)  # best+icl2, best@s1: best
        axis: dict[str, float] = {"train/step": step}
        if self._per_epoch:
            axis["train/epoch"] = step / self._per_epoch
        return axis

    @_staged
    def log_split(
        self,
        variant: str,
        split: str,
        metrics: dict[str, Any],
        preds: Sequence[dict[str, Any]],
        prompts: dict[str, str] | None = None,
        prefix: str = "",
    ) -> None:
        """A split that just finished: its metrics (`eval/<split>/<metric>` for the
        comparison's variant, `eval/variants/<variant>/<split>/<metric>` for the others) at
        the checkpoint's `train/step` and its typed predictions table; `prefix` (the demos
        before every prompt) goes to the summary once per variant."""
        if self._run is None:
            return
        from lab.report.wandb_tables import predictions_table

        data: dict[str, Any] = wandb_keys.split_metrics(variant, split, metrics, self._compared)
        data |= self._eval_axis(variant)
        table = self._safely(
            "the predictions table", lambda: predictions_table(preds, prompts, variant)
        )
        if table is not None:
            data[wandb_keys.table_key(variant, split, self._compared)] = table
        run = self._run
        self._safely(f"logging split {variant}/{split}", lambda: run.log(data))
        if prefix:
            self._run.summary[f"prompt_prefix/{variant}"] = prefix

    @_staged
    def log_cell(
        self,
        cell: dict[str, Any],
        metrics: dict[str, dict[str, float]],
        train: dict[str, Any] | None = None,
        cell_dir: Path | None = None,
        models: Sequence[dict[str, Any]] = (),
    ) -> str | None:
        """Finish a (model, arm, seed) cell's run: the comparison's metrics as summary
        values, the fine-tuned weights and the predictions as artifacts; returns the run's
        local directory."""
        if not self.enabled:
            return None
        run, self._run = self._run, None
        used = {k: v for k, v in cell.items() if k != "study"}  # `study`: the recipe's name
        compared = wandb_keys.compared_variant(cell)
        if run is None:
            run = self._init(cell["cell"], cell["method"], used, models)
        else:
            run.config.update(used, allow_val_change=True)
        train = train or {}
        if not self._trained_live:  # trained before an interruption: the curves replayed
            for step, loss in enumerate(train.get("losses", []), start=1):
                run.log({"train/loss": loss, "train/step": step})
            for step, loss in train.get("dev_losses", []):
                run.log({"dev/loss": loss, "train/step": step})
        flat = wandb_keys.summary_metrics(metrics, compared)
        run.summary.update(flat)
        if train.get("checkpoint") and cell.get("selected"):
            ckpt = Path(
                train["best_checkpoint"] if cell["selected"] == "best" else train["checkpoint"]
            )
            meta = {k: cell.get(k) for k in ("cell", "arm", "method", "format", "budget",
                    "data_seed", "train_seed", "selected", "model", "model_fingerprint")}  # fmt: skip
            meta["metrics"] = {k: v for k, v in flat.items() if not k.startswith("eval/variants/")}
            art = self._safely("the fine-tuned weights artifact", lambda: wandb_artifacts.weights(
                self.study, cell["cell"], cell["method"], ckpt, self.cfg.max_upload_mb, meta))  # fmt: skip
            if art is not None:
                self._safely("logging the weights", lambda: run.log_artifact(art))
        preds = CellDir(cell_dir).predictions_root if cell_dir is not None else None
        if preds is not None and preds.is_dir():
            art = self._safely("the predictions artifact", lambda: wandb_artifacts.predictions(
                self.study, cell["cell"], preds))  # fmt: skip
            if art is not None:
                self._safely("logging the predictions", lambda: run.log_artifact(art))
        run_dir = str(Path(run.dir).parent)
        run.finish(exit_code=0)
        return run_dir

    @_staged
    def log_summary(
        self, summary: Any, recipe: dict[str, Any], models: Sequence[dict[str, Any]] = ()
    ) -> None:
        """The summary run: the report's typed tables (results per arm, budget, seed and
        split; the paired FT-vs-ICL gains; compute, contamination, breakdowns; ladders:
        scaling metrics), its figures (the forest plot of paired gains first), the answer
        (its sentence as the notes and `answer`, its numbers as `answer/*` scalars), the HTML
        report, the study's artifact, and the cells' prediction artifacts as inputs.
        `summary` is the lab.report.table.Summary that report.md was written from."""
        if not self.enabled:
            return
        import wandb

        from lab.report.wandb_tables import summary_table

        inputs = [
            wandb_artifacts.artifact_name(self.study, c, "predictions") for c in summary.cells
        ]
        extra = {"summary_of": self.study, "model": recipe.get("model"), "inputs": inputs}
        run = self._init("summary", "summary", extra, models, summary.headline)
        for name, t in summary.extra.items():
            tab = self._safely(f"table {name}", lambda t=t: summary_table(t.columns, t.rows))
            if tab is not None:
                run.log({name: tab})
        for name, fig in summary.figures.items():
            run.log({name: wandb.Image(fig)})
        html = StudyDir(self.out).html_report
        if html.is_file():
            run.log({"report": wandb.Html(html.read_text(encoding="utf-8"))})
        if summary.headline:
            run.summary["answer"] = summary.headline
        run.summary.update(summary.values or {})
        if self.mode == "online":  # lineage; offline W&B cannot: the Report script links them
            for name in inputs:
                self._safely(f"using {name}", lambda n=name: run.use_artifact(f"{n}:latest"))
        art = self._safely("the study artifact", lambda: wandb_artifacts.study(
            self.study, self.out, recipe))  # fmt: skip
        if art is not None:
            self._safely("logging the study artifact", lambda: run.log_artifact(art))
        run.finish()
