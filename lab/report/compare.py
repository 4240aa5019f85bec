"""`python -m lab compare OUT1 OUT2 ... [--to DIR] [--wandb MODE]`: many studies on one page.

Reads each study's paired FT-minus-ICL gains (the typed `paired` table its report wrote to
OUT/report/summary.json; for a model ladder, each model's) and writes DIR/index.html (default
runs/compare): one forest plot per block of comparable studies (the same task and model),
the ID gain, the OOD gain and their difference with 95% CIs, one row per study x arm x budget,
and a table of the same. Studies on another model or task are another block, never mixed in
one plot; a pair with unequal labelled examples is marked "not tested" and not drawn, and a
study whose budget grid differs from the others of its block is marked. With `--wandb`
(offline, online or auto), the same table, plots and page go to a W&B run of their own group.

A folder that is missing, holds no study, or has no report with paired gains yet: one line
naming the fix, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import LabError
from lab.core.io import atomic_write_json, atomic_write_text, read_json
from lab.core.layout import StudyDir
from lab.report import forest
from lab.report.summary_tables import PAIRED
from lab.report.table import CSS, Table

COLUMNS = ["block", "study", "out", "model", "task", *PAIRED[:17], "budgets", "mark"]


@dataclass
class Study:
    out: Path
    study_id: str
    model: str
    task: str
    budgets: list[Any] | None
    project: str
    paired: list[dict[str, Any]]  # typed paired rows (lab/report/summary_tables.py)


def _summaries(out: Path) -> list[Path]:
    """The report summaries of a study: one, or one per model of a ladder."""
    report = StudyDir(out).report
    ladder = sorted(report.glob("models/*/summary.json"))
    return ladder or ([report / "summary.json"] if (report / "summary.json").is_file() else [])


def load(path: str) -> list[Study]:
    """The study (a ladder: one per model) in folder `path`; a LabError names what is wrong."""
    out = Path(path)
    if not out.is_dir():
        raise LabError(f"{out} does not exist; pass the --out folder of a study run")
    study = StudyDir(out)
    if not study.study_json.is_file():
        raise LabError(
            f"{out} holds no study (no study.json); pass the --out folder of a study run"
        )
    info = read_json(study.study_json)
    found = []
    for f in _summaries(out):
        s = read_json(f)
        if "paired" not in s:
            raise LabError(
                f"{out}: its report predates `lab compare`; rebuild it with "
                f"`python -m lab report {out}`"
            )
        cols = s["paired"]["columns"]
        found.append(
            Study(
                out,
                s.get("study_id") or info.get("study_id") or out.name,
                s["model"],
                s["task"],
                s.get("budgets"),
                ((info.get("recipe") or {}).get("tracking") or {}).get("project", "ft-vs-icl"),
                [dict(zip(cols, r, strict=True)) for r in s["paired"]["rows"]],
            )
        )
    if not found:
        raise LabError(
            f"{out}: no report yet; finish the study or run `python -m lab report {out}`"
        )
    return found


def blocks(studies: list[Study]) -> dict[tuple[str, str], list[Study]]:
    """(task, model) -> its studies, in the order given: what may share a plot."""
    out: dict[tuple[str, str], list[Study]] = {}
    for s in studies:
        out.setdefault((s.task, s.model), []).append(s)
    return out


def table(studies: list[Study]) -> Table:
    """One row per study x FT arm x budget, numbers as numbers, blocks lettered A, B..."""
    rows = []
    for i, ((task, model), group) in enumerate(blocks(studies).items()):
        grids = {json.dumps(s.budgets) for s in group}
        for s in group:
            for p in s.paired:
                marks = []
                if not p["equal_budget"]:
                    marks.append("unequal labelled examples: not tested")
                if len(grids) > 1:
                    marks.append("budget grid differs within the block: compare equal budgets")
                rows.append(
                    [
                        chr(65 + i % 26),
                        s.study_id,
                        str(s.out),
                        model,
                        task,
                        *[p.get(c) for c in PAIRED[:17]],
                        json.dumps(s.budgets),
                        "; ".join(marks) or None,
                    ]
                )
    return Table(list(COLUMNS), rows)


def _img(path: Path) -> str:
    return f"<img alt='{path.stem}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"


def write(studies: list[Study], dest: Path) -> tuple[Path, Table, dict[str, Path]]:
    """DIR/index.html, DIR/compare.json and the blocks' plots; returns the page, the table
    and the plots."""
    t = table(studies)
    figs: dict[str, Path] = {}
    parts = []
    for letter, ((task, model), group) in zip(
        (chr(65 + i % 26) for i in range(99)), blocks(studies).items(), strict=False
    ):
        rows = [r for r in t.rows if r[0] == letter]
        fr = forest.rows_from_paired(PAIRED[:17], [r[5:22] for r in rows])
        for f, r in zip(fr, rows, strict=True):
            f["label"] = f"{Path(r[2]).name}: {f['label']}"
        title = f"block {letter}: {model} on {task}"
        figs[letter] = forest.forest(fr, dest / f"forest_{letter}.png", f"{title} (FT - ICL)")
        names = ", ".join(html.escape(s.study_id) for s in group)
        parts.append(f"<h2>{html.escape(title)}</h2><p>studies: {names}</p>{_img(figs[letter])}")
    n_blocks = len(figs)
    note = (
        "One block per task and model: gains are compared within a block, never across. "
        "Each row: a fine-tuned arm at one budget vs its matched k-shot arm (same labelled "
        "examples, same eval examples), paired bootstrap, 95% CIs; gap = ID gain - OOD gain."
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>FT vs ICL: {len(studies)} "
        f"studies</title><style>{CSS}</style></head><body><h1>FT vs ICL across "
        f"{len(studies)} studies ({n_blocks} block{'s' * (n_blocks != 1)})</h1>"
        f"<p>{html.escape(note)}</p>{''.join(parts)}<h2>All rows</h2>{t.html()}</body></html>"
    )
    atomic_write_json(dest / "compare.json", {"columns": t.columns, "rows": t.rows})
    atomic_write_text(dest / "index.html", page)
    return dest / "index.html", t, figs


def log_wandb(mode: str, studies: list[Study], page: Path, t: Table, figs: dict[str, Path]) -> str:
    """A W&B run in its own group (`compare-<hash of the studies>`); returns its directory."""
    import wandb

    from lab.report.wandb_tables import summary_table

    ids = sorted(f"{s.study_id}|{s.out.resolve()}" for s in studies)
    group = "compare-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:8]
    run = wandb.init(
        project=studies[0].project,
        group=group,
        job_type="compare",
        name=group,
        mode=mode,
        dir=str(page.parent),
        reinit="create_new",
        settings=wandb.Settings(console="off", silent=True),
        config={
            "studies": [
                {
                    "study_id": s.study_id,
                    "out_dir": str(s.out.resolve()),
                    "model": s.model,
                    "task": s.task,
                    "budgets": s.budgets,
                }
                for s in studies
            ]
        },
        tags=["compare", *sorted({f"task:{s.task}"[:64] for s in studies})],
    )
    run.log({"compare": summary_table(t.columns, t.rows)})
    run.log({f"forest_{k}": wandb.Image(str(v)) for k, v in figs.items()})
    run.log({"page": wandb.Html(page.read_text(encoding="utf-8"))})
    run_dir = str(Path(run.dir).parent)
    run.finish()
    return run_dir


def add_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="one page of many studies' paired FT-minus-ICL gains")
    p.add_argument("outs", nargs="+", metavar="OUT", help="study output folders")
    p.add_argument(
        "--to", default="runs/compare", help="where the page goes (default runs/compare)"
    )
    p.add_argument(
        "--wandb", choices=["offline", "online", "auto"], help="also log it to a W&B run"
    )


def main(args: argparse.Namespace) -> int:
    studies = [s for out in args.outs for s in load(out)]  # every folder checked first
    page, t, figs = write(studies, Path(args.to))
    print(f"{len(t.rows)} rows from {len(studies)} studies: {page}")
    if args.wandb:
        from lab.core.recipe import TrackingCfg
        from lab.report.tracking import resolve_mode

        mode = resolve_mode(TrackingCfg(mode=args.wandb))
        print(f"W&B ({mode}): {log_wandb(mode, studies, page, t, figs)}")
    return 0
