"""A W&B Report for a study, built with `wandb-workspaces` from the same analysis as
report.md (the lab.report.table.Summary the runner wrote it from): the one-sentence answer, the
results table with CIs, the paired tests, budget curves, compute, contamination, and for a
ladder the scaling panels; then the cells' runs: accuracy per arm and the live training
curves. Both runsets filter on the study id (name, profile, smoke or not, recipe hash).

Online, the runner saves it right away. Offline (or if saving fails), the definition is
written to OUT/report/wandb_report.py: run it after `wandb sync` to publish the report; it
first declares the base model (by fingerprint) an input of every run of the study, which
offline W&B cannot record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core.io import atomic_write_text

# (title, tables of the summary run, figures of the summary run), in the order of report.md
SECTIONS: list[tuple[str, list[str], list[str]]] = [
    ("Results: means with 95% bootstrap CIs", ["comparison"], ["id_vs_ood", "per_split"]),
    ("Fine-tuning vs prompting: paired bootstrap tests", ["paired"], []),
    ("Budget curves", [], ["vs_budget"]),
    ("Compute", ["compute"], ["cost_matched"]),
    ("Contamination (8-gram overlap with the train pool)", ["contamination"], []),
    ("Scaling (model ladder)", ["scaling_metrics", "cot_gain"], ["vs_params", "cot_gain"]),
]


def sections(tables: list[str], figures: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """The report's sections for a study with these summary tables and figures: the fixed
    ones it has (a ladder's per-model `<table>_m<i>-<model>` in its table's section), then
    the rest (breakdowns, probes)."""
    out, used_t, used_f = [], set(), set()
    for title, names, fs in SECTIONS:
        ts = [t for n in names for t in tables if t == n or t.startswith(f"{n}_m")]
        fs = [f for f in fs if f in figures]
        if ts or fs:
            out.append((title, ts, fs))
            used_t |= set(ts)
            used_f |= set(fs)
    rest_t, rest_f = [t for t in tables if t not in used_t], [f for f in figures if f not in used_f]
    if rest_t or rest_f:
        out.append(("More tables and plots", rest_t, rest_f))
    return out


_HEAD = '''"""The W&B Report of study {study!r}. After `wandb sync {out}/wandb/offline-run-*`:

    python {path}             # links lineage, builds the report, saves it to W&B, prints its URL
    python {path} --dry-run   # builds it offline (checks the definition), saves nothing
"""
import sys

import wandb_workspaces.reports.v2 as wr

ENTITY, PROJECT, STUDY = {entity!r}, {project!r}, {study!r}
TITLE, DESCRIPTION = {title!r}, {description!r}
ANSWER = {headline!r}
SPLITS = {splits!r}
SECTIONS = {sections!r}
'''

_BODY = '''

def default_entity() -> str:
    """The recipe's `tracking.entity`, else the API key's default entity."""
    import wandb

    return ENTITY or wandb.Api().default_entity


def build(entity: str = ENTITY or "<your-entity>") -> wr.Report:
    cells = wr.Runset(entity=entity, project=PROJECT, name=STUDY,
                      filters=f"Config('cell.study_id') == '{STUDY}'")
    summary = wr.Runset(entity=entity, project=PROJECT, name=f"{STUDY} summary",
                        filters=f"Config('summary_of') == '{STUDY}'")
    blocks = [wr.H1("Fine-tune or prompt?"), wr.P(ANSWER)]
    for title, tables, figures in SECTIONS:
        panels = [wr.WeavePanelSummaryTable(table_name=t) for t in tables]
        if figures:
            panels.append(wr.MediaBrowser(media_keys=figures))
        blocks += [wr.H2(title), wr.PanelGrid(runsets=[summary], panels=panels)]
    ood = [s for s in SPLITS if s.startswith("ood_")]
    bars = [wr.BarPlot(title=f"{s}: {m}", metrics=[f"main/{s}/{m}"], groupby="cell.arm",
                       groupby_aggfunc="mean", groupby_rangefunc="stderr")
            for m in ("exact_match", "gold_logprob") for s in SPLITS]
    scatter = [wr.ScatterPlot(title="ID vs OOD mean (one point per cell)",
                              x="main/test/exact_match", y="main/ood_mean/exact_match")] if ood else []
    curves = [wr.LinePlot(title=y, x="train/step", y=[y], groupby="cell.arm")
              for y in ("train/loss", "dev/loss", "train/lr", "train/grad_norm",
                        "train/tokens_per_s")]
    blocks += [
        wr.H2("Cells: accuracy and log p(gold) per arm and split (selected checkpoint / prompt)"),
        wr.PanelGrid(runsets=[cells], panels=scatter + bars),
        wr.H2("Cells: training curves (logged live) and the ID-dev loss"),
        wr.PanelGrid(runsets=[cells], panels=curves),
    ]
    return wr.Report(entity=entity, project=PROJECT, title=TITLE, description=DESCRIPTION,
                     blocks=blocks)


def link_lineage(entity: str) -> int:
    """Declare each run's base model (artifact `base-model-<fingerprint>`) its input: offline
    runs could not. Logs the artifact once if the project lacks it; returns the runs linked."""
    import wandb

    api = wandb.Api()
    path = f"{entity}/{PROJECT}"
    linked = 0
    for run in api.runs(path, filters={"group": STUDY}):
        for m in run.config.get("base_models", []):
            name = f"{path}/{m['artifact']}:latest"
            try:
                art = api.artifact(name)
            except Exception:  # noqa: BLE001 - not logged yet
                with wandb.init(entity=entity, project=PROJECT, group=STUDY,
                                job_type="base-model", name=m["artifact"]) as r:
                    a = wandb.Artifact(m["artifact"], type="base-model", metadata=m)
                    with a.new_file("model.json") as f:
                        f.write(repr(m))
                    r.log_artifact(a).wait()
                art = api.artifact(name)
            run.use_artifact(art)
            linked += 1
    return linked


if __name__ == "__main__":
    if "--dry-run" in sys.argv:
        report = build()
        print(f"built report {report.title!r}: {len(report.blocks)} blocks (not saved)")
    else:
        print(f"lineage: {link_lineage(default_entity())} run inputs linked")
        report = build(default_entity())
        report.save()
        print(report.url)
'''


def write_definition(out: Path, recipe: Any, study: str, splits: list[str], summary: Any) -> Path:
    """OUT/report/wandb_report.py for `recipe` (lab.core.recipe.Recipe) and the `summary`
    (lab.report.table.Summary) that report.md was written from."""
    path = out / "report" / "wandb_report.py"
    tables = ["comparison", *summary.extra]
    text = _HEAD.format(
        study=study,
        out=out,
        path=path,
        entity=recipe.tracking.entity,
        project=recipe.tracking.project,
        title=f"FT vs ICL: {study}",
        description=recipe.description.strip()[:500],
        headline=summary.headline or "(no FT/ICL pair in this study)",
        splits=splits,
        sections=sections(tables, list(summary.figures)),
    )
    atomic_write_text(path, text + _BODY)
    return path


def publish(path: Path) -> str | None:
    """Run the definition now (online mode). Returns the URL, or None (with a warning)."""
    import runpy

    try:
        defs = runpy.run_path(str(path))
        report = defs["build"](defs["default_entity"]())
        report.save()
        return str(report.url)
    except Exception as e:  # noqa: BLE001 - never lose the study over the report
        print(f"[lab] warning: W&B Report not saved ({type(e).__name__}: {e}); publish later "
              f"with `python {path}`")  # fmt: skip
        return None
