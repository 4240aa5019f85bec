"""Weights & Biases tracking: one run per cell (grouped by study) and one summary run.

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

import hashlib
import netrc
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.recipe import TrackingCfg
from lab.tasks.base import ood_mean_splits


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


def main_ood_mean(flat: dict[str, Any]) -> float | None:
    """`main/ood_mean/exact_match`: the mean over OOD splits of `main/<split>/exact_match`,
    a split that scores another's problems a second way not counted
    (lab.tasks.base.ood_mean_splits); None without OOD splits."""
    splits = [k.split("/")[1] for k in flat if k.startswith("main/") and k.endswith("/exact_match")]
    ood = [flat[f"main/{s}/exact_match"] for s in ood_mean_splits(splits)]
    return sum(ood) / len(ood) if ood else None


class Tracker:
    def __init__(
        self,
        cfg: TrackingCfg,
        study: str,
        out: Path,
        config: dict[str, Any],
        id_salt: str = "",
    ):
        self.cfg = cfg
        self.study = study
        self.out = out
        self.config = config
        self.id_salt = id_salt  # the recipe hash: another recipe in the same out, other runs
        self.mode = resolve_mode(cfg)
        self._run: Any = None
        if self.mode == "online":
            url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
            if not reachable(url):
                self._go_offline(f"W&B server {url} is unreachable")

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

    def _init(self, name: str, job_type: str, extra: dict[str, Any]) -> Any:
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
            config={**self.config, **extra},
            dir=str(self.out),
            reinit="create_new",
        )
        settings = dict(console="off", silent=True, x_disable_stats=True)
        try:
            return wandb.init(
                mode=self.mode,
                settings=wandb.Settings(**settings, init_timeout=INIT_TIMEOUT_S),
                **kw,
            )
        except Exception as e:  # noqa: BLE001 - any failure online has the same fallback
            if self.mode != "online":
                raise
            self._go_offline(f"wandb.init failed online ({type(e).__name__})")
            return wandb.init(mode="offline", settings=wandb.Settings(**settings), **kw)

    def start_cell(self, key: str, job_type: str) -> None:
        """Open the cell's run now, so that a crash in the cell is recorded on it."""
        if self.enabled:
            self.end_cell(0)  # a run left open by a cell that logged nothing
            self._run = self._init(key, job_type, {"cell_key": key})

    def end_cell(self, exit_code: int) -> None:
        """Finish the open cell run; a non-zero exit code marks it failed in W&B."""
        if self._run is not None:
            run, self._run = self._run, None
            run.finish(exit_code=exit_code)

    def log_cell(
        self,
        cell: dict[str, Any],
        metrics: dict[str, dict[str, float]],
        predictions: dict[str, list[dict[str, Any]]],
        losses: Sequence[float] = (),
    ) -> str | None:
        """One run for a (model, arm, seed) cell; returns the run's local directory."""
        if not self.enabled:
            return None
        import wandb

        run, self._run = self._run, None
        if run is None:
            run = self._init(cell["cell"], cell["method"], {"cell": cell})
        else:
            run.config.update({"cell": cell}, allow_val_change=True)
        for step, loss in enumerate(losses, start=1):
            run.log({"train/loss": loss, "train/step": step})
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
        run.summary.update(flat)
        cols = ["id", "question", "gold", "generation", "pred", "correct", "error", "stopped"]
        for split, rows in predictions.items():
            table = wandb.Table(columns=cols, data=[[str(r[c]) for c in cols] for r in rows])
            run.log({f"predictions/{split}": table})
        run_dir = str(Path(run.dir).parent)
        run.finish(exit_code=0)
        return run_dir

    def log_summary(
        self,
        columns: list[str],
        rows: list[list[Any]],
        figures: dict[str, Any],
        extra_tables: dict[str, tuple[list[str], list[list[Any]]]] | None = None,
        headline: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        if not self.enabled:
            return
        import wandb

        run = self._init("summary", "summary", {"summary_of": self.study})
        # W&B needs one type per column: floats stay numbers; ints and labels become text.
        table = [[v if isinstance(v, float) or v is None else str(v) for v in r] for r in rows]
        run.log({"comparison": wandb.Table(columns=columns, data=table)})
        for name, fig in figures.items():
            run.log({name: wandb.Image(fig)})
        for name, tab in (extra_tables or {}).items():
            run.log({name: wandb.Table(columns=tab[0], data=[[str(v) for v in r] for r in tab[1]])})
        if headline:
            run.summary["answer"] = headline
        run.summary.update(values or {})
        run.finish()
