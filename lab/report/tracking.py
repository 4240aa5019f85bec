"""Weights & Biases tracking: one run per cell (grouped by study) and one summary run.

The W&B group is the study id (recipe name, profile, --smoke or not, recipe hash: see
`study_id`), and every run gets its full config at `wandb.init`, so running and failed
cells show in the workspace with their arm, budget and seeds. While a cell runs, its run
gets the training loss, learning rate, gradient norm, tokens/s and the ID-dev loss at
every step (`log_train`, the training loop's `on_log`) and each split's metrics and typed
prediction table as the split finishes (`log_split`); at its end, the comparison's
metrics as summary values and its artifacts (lab/report/wandb_artifacts.py). System metrics
(CPU, memory; GPU utilisation and memory on GPU nodes) are sampled by wandb. Only the
main process logs (`main=False` on the other processes of `accelerate launch`).

Mode `auto` is online when an API key is configured (WANDB_API_KEY or a netrc entry) and
offline otherwise; offline runs land in OUT/wandb/ and upload later with `wandb sync`.
`disabled` turns tracking off. W&B never decides a result: everything it logs is also in
OUT/ as plain files.

Reliability: a cell's run is opened when the cell starts and finished with exit code 0 when
its results are logged; a cell that raises (or is stopped with Ctrl-C) finishes its run with
a non-zero exit code, so W&B shows it failed. Run ids are deterministic (study out dir,
recipe hash, cell key) and runs are opened with `resume="allow"`: a rerun of a crashed cell
continues the same W&B run instead of creating a second one. When online W&B is unreachable
(or `wandb.init` fails or times out), tracking falls back to offline with a warning.
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

from lab.core.example import ood_mean_splits
from lab.core.layout import CellDir, StudyDir
from lab.core.recipe import Recipe, TrackingCfg
from lab.report import wandb_artifacts


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


def cell_config(recipe: Recipe, cell: Any, model: Any, study: str) -> dict[str, Any]:
    """A cell's full config at `wandb.init` (`cell` a lab.study.plan.Cell, `model` its base
    lab.study.models.ResolvedModel): its arm, budget and seeds, the arm's training and the eval
    settings; the rest of the cell's record is added when it finishes."""
    arm = cell.arm
    cfg = {
        "study_id": study, "cell": cell.key, "arm": arm.name, "method": arm.method,
        "format": arm.format, "budget": cell.budget, "data_seed": cell.data_seed,
        "train_seed": cell.train_seed, "model": model.spec,
        "model_fingerprint": model.fingerprint, "arm_cfg": arm.model_dump(mode="json"),
        "eval": recipe.eval.model_dump(mode="json"),
    }  # fmt: skip
    if arm.method != "icl":
        cfg["train"] = recipe.train_for(arm).model_dump(mode="json")
    return cfg


def main_ood_mean(flat: dict[str, Any]) -> float | None:
    """`main/ood_mean/exact_match`: the mean over OOD splits of `main/<split>/exact_match`,
    a split that scores another's problems a second way not counted
    (lab.core.example.ood_mean_splits); None without OOD splits."""
    splits = [k.split("/")[1] for k in flat if k.startswith("main/") and k.endswith("/exact_match")]
    ood = [flat[f"main/{s}/exact_match"] for s in ood_mean_splits(splits)]
    return sum(ood) / len(ood) if ood else None


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
    ):
        self.cfg = cfg
        self.study = study  # the study id: the W&B group
        self.out = out
        self.config = config
        self.id_salt = id_salt  # the recipe hash: another recipe in the same out, other runs
        self.mode = resolve_mode(cfg) if main else "disabled"  # rank 0 logs, the rest not
        self._run: Any = None
        self._eval_step = 0
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
        self, name: str, job_type: str, extra: dict[str, Any], models: Sequence[dict[str, Any]]
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
                **self.config,
                "study_id": self.study,
                "base_models": _models_config(models),
                **extra,
            },  # fmt: skip
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
        # Step axes: training curves over optimizer steps, eval metrics over finished splits.
        run.define_metric("train/step")
        run.define_metric("train/*", step_metric="train/step")
        run.define_metric("dev/*", step_metric="train/step")
        run.define_metric("dev/loss", step_metric="train/step", summary="min")
        run.define_metric("eval/step")
        run.define_metric("eval/*", step_metric="eval/step")
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
            self._run = self._init(key, job_type, {"cell": config, "cell_key": key}, models)
            self._eval_step, self._trained_live = 0, False

    def end_cell(self, exit_code: int) -> None:
        """Finish the open cell run; a non-zero exit code marks it failed in W&B."""
        if self._run is not None:
            run, self._run = self._run, None
            run.finish(exit_code=exit_code)

    def log_train(self, metrics: dict[str, float]) -> None:
        """The training loop's `on_log`: one optimizer step's (or ID-dev evaluation's)
        metrics, with `train/step`, to the open cell run."""
        if self._run is not None:
            run = self._run
            self._safely("logging training metrics", lambda: run.log(metrics))
            self._trained_live = True

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
        """A split that just finished: its metrics (`eval/<variant>/<split>/<metric>`) and its
        typed predictions table; `prefix` (the demos before every prompt) goes to the
        summary once per variant."""
        if self._run is None:
            return
        from lab.report.wandb_tables import predictions_table

        self._eval_step += 1
        data: dict[str, Any] = {
            f"eval/{variant}/{split}/{k}": v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        data["eval/step"] = self._eval_step
        table = self._safely("the predictions table", lambda: predictions_table(preds, prompts))
        if table is not None:
            data[f"predictions/{variant}/{split}"] = table
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
        if run is None:
            run = self._init(cell["cell"], cell["method"], {"cell": cell}, models)
        else:
            run.config.update({"cell": {**dict(run.config.get("cell") or {}), **cell}},
                              allow_val_change=True)  # fmt: skip
        train = train or {}
        if not self._trained_live:  # trained before an interruption: the curves replayed
            for step, loss in enumerate(train.get("losses", []), start=1):
                run.log({"train/loss": loss, "train/step": step})
            for step, loss in train.get("dev_losses", []):
                run.log({"dev/loss": loss, "train/step": step})
        run.summary.update(self._flat(cell, metrics))
        if train.get("checkpoint") and cell.get("selected"):
            ckpt = Path(
                train["best_checkpoint"] if cell["selected"] == "best" else train["checkpoint"]
            )
            meta = {k: cell.get(k) for k in ("cell", "arm", "method", "format", "budget",
                    "data_seed", "train_seed", "selected", "model", "model_fingerprint")}  # fmt: skip
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

    @staticmethod
    def _flat(cell: dict[str, Any], metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
        flat = {f"{split}/{k}": v for split, m in metrics.items() for k, v in m.items()}
        # The comparison's variant (ICL: the prompt; FT: the selected checkpoint) also under
        # `main/`, so W&B panels can compare every arm with one key.
        main = "prompted" if cell["method"] == "icl" else cell.get("selected", "best")
        flat |= {
            f"main/{key.split('/', 1)[1]}/{k}": v
            for key, m in metrics.items()
            if key.startswith(f"{main}/")
            for k, v in m.items()
        }
        mean = main_ood_mean(flat)
        if mean is not None:
            flat["main/ood_mean/exact_match"] = mean
        return flat

    @_staged
    def log_summary(
        self, summary: Any, recipe: dict[str, Any], models: Sequence[dict[str, Any]] = ()
    ) -> None:
        """The summary run: the report's tables (the comparison with CIs, paired tests,
        compute, contamination, breakdowns; ladders: scaling metrics), its figures, the
        one-sentence answer, the HTML report, and the study's artifact. `summary` is the
        lab.report.table.Summary that report.md was written from."""
        if not self.enabled:
            return
        import wandb

        from lab.report.wandb_tables import summary_table

        run = self._init("summary", "summary", {"summary_of": self.study}, models)
        tables = {"comparison": summary.table, **summary.extra}
        for name, t in tables.items():
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
        art = self._safely("the study artifact", lambda: wandb_artifacts.study(
            self.study, self.out, recipe))  # fmt: skip
        if art is not None:
            self._safely("logging the study artifact", lambda: run.log_artifact(art))
        run.finish()
