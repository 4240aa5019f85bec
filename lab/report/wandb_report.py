"""A W&B Report for a study, built with `wandb-workspaces` from the same analysis as
report.md (the lab.report.table.Summary the runner wrote it from): a one-line verdict per
compared pair and the forest plot of the paired gains, the one-sentence answer, the
fairness and split notes, the typed results and paired tables, the examples the arms
disagree on, budget curves, compute, contamination, and for a ladder the scaling panels;
then the cells' runs grouped by arm and budget: their metrics, predictions and live
training curves, with panels only for what was logged (`logged`). Both runsets filter on
the study id and the output folder, so a rerun of the recipe elsewhere is not mixed in.

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
    ("Results: means with 95% bootstrap CIs (per arm, budget, seed, split)", ["results"],
     ["id_vs_ood", "per_split"]),
    ("Fine-tuning vs prompting: paired bootstrap tests", ["paired"], []),
    ("Where the fine-tuned and prompted arms disagree (joined on example id)",
     ["disagreements"], []),
    ("Budget curves", [], ["vs_budget"]),
    ("Compute", ["compute"], ["cost_matched"]),
    ("Contamination (8-gram overlap with the train pool)", ["contamination"], []),
    ("Scaling (model ladder)", ["scaling_metrics", "cot_gain"], ["vs_params", "cot_gain"]),
]  # fmt: skip
TOP_FIGURE = "forest"  # the paired gains, at the top with the verdicts


def sections(tables: list[str], figures: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """The report's sections for a study with these summary tables and figures: the fixed
    ones it has (a ladder's per-model `<table>_m<i>-<model>` in its table's section), then
    the rest (breakdowns, probes)."""
    out, used_t, used_f = [], set(), {TOP_FIGURE}
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


def logged(recipe: Any) -> dict[str, Any]:
    """What the cells' runs log, so that the Report has no empty panel: the eval metrics
    (log p(gold) only when `eval.gold_logprob` is on), the training curves (with an FT arm)
    and the ID-dev loss (with an FT arm that selects `best_dev`)."""
    ft = [recipe.train_for(a) for a in recipe.arms if a.method != "icl"]
    curves = ["train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"] if ft else []
    if any(t.select == "best_dev" for t in ft):
        curves.insert(1, "dev/loss")
    metrics = ["exact_match"] + (["gold_logprob"] if recipe.eval.gold_logprob else [])
    return {"metrics": metrics, "curves": curves}


_HEAD = '''"""The W&B Report of study {study!r} in {out_dir}. After `wandb sync {out}/wandb/offline-run-*`:

    python {path}             # links lineage, builds the report, saves it to W&B, prints its URL
    python {path} --dry-run   # builds it offline (checks the definition), saves nothing
"""
import sys

import wandb_workspaces.reports.v2 as wr

ENTITY, PROJECT, STUDY = {entity!r}, {project!r}, {study!r}
OUT_DIR = {out_dir!r}  # with STUDY, the filter: a rerun into another folder is another study
TITLE, DESCRIPTION = {title!r}, {description!r}
VERDICTS = {verdicts!r}
ANSWER = {headline!r}
NOTES = {notes!r}
SPLITS = {splits!r}
LOGGED = {logged!r}
SECTIONS = {sections!r}
TOP_FIGURE = {top!r}
'''

_BODY = '''

def default_entity() -> str:
    """The recipe's `tracking.entity`, else the API key's default entity."""
    import wandb

    return ENTITY or wandb.Api().default_entity


def _grid(runset, panels):
    return wr.PanelGrid(runsets=[runset], panels=panels)


def build(entity: str = ENTITY or "<your-entity>") -> wr.Report:
    where = f"Config('study_id') == '{STUDY}' and Config('out_dir') == '{OUT_DIR}'"
    cells = wr.Runset(entity=entity, project=PROJECT, name=STUDY, groupby=["config.arm", "config.budget"],
                      filters=f"{where} and Metric('JobType') != 'summary'")
    summary = wr.Runset(entity=entity, project=PROJECT, name=f"{STUDY} summary",
                        filters=f"{where} and Config('summary_of') == '{STUDY}'")
    blocks = [wr.H1("Fine-tune or prompt?")]
    if VERDICTS:
        blocks += [wr.UnorderedList(items=VERDICTS),
                   _grid(summary, [wr.MediaBrowser(media_keys=[TOP_FIGURE])])]
    blocks += [wr.P(ANSWER)]
    for title, lines in NOTES.items():
        blocks += [wr.H2(title), wr.MarkdownBlock(text="\\n".join(lines))]
    for title, tables, figures in SECTIONS:
        panels = [wr.WeavePanelSummaryTable(table_name=t) for t in tables]
        if figures:
            panels.append(wr.MediaBrowser(media_keys=figures))
        blocks += [wr.H2(title), _grid(summary, panels)]
    ood = [s for s in SPLITS if s.startswith("ood_")]
    by = wr.Config("arm_budget")  # one bar per arm and budget, mean and stderr over seeds
    bars = [wr.BarPlot(title=f"{s}: {m}", metrics=[f"eval/{s}/{m}"], groupby=by,
                       groupby_aggfunc="mean", groupby_rangefunc="stderr")
            for m in LOGGED["metrics"] for s in SPLITS]
    scatter = [wr.ScatterPlot(title="ID vs OOD mean (one point per cell)",
                              x="eval/test/exact_match", y="eval/ood_mean/exact_match")] if ood else []
    blocks += [
        wr.H2("Cells: the comparison's metrics per arm and budget (selected checkpoint / prompt)"),
        _grid(cells, scatter + bars),
        wr.H2("Cells: per-example predictions (one table per split; `variant` column)"),
        _grid(cells, [wr.WeavePanelSummaryTable(table_name=f"predictions/{s}") for s in SPLITS]),
    ]
    if LOGGED["curves"]:
        curves = [wr.LinePlot(title=y, x="train/step", y=[y], groupby=by) for y in LOGGED["curves"]]
        blocks += [wr.H2("Cells: training curves (logged live), on the optimizer-step axis"),
                   _grid(cells, curves)]
    return wr.Report(entity=entity, project=PROJECT, title=TITLE, description=DESCRIPTION,
                     blocks=blocks)


def link_lineage(entity: str) -> int:
    """Declare each run's inputs, which offline runs could not: its base model (artifact
    `base-model-<fingerprint>`, logged once if the project lacks it) and, for the summary
    run, the cells' prediction artifacts. Returns the inputs linked."""
    import wandb

    api = wandb.Api()
    path = f"{entity}/{PROJECT}"
    linked = 0
    for run in api.runs(path, filters={"group": STUDY, "config.out_dir": OUT_DIR}):
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
        for name in run.config.get("inputs", []):
            run.use_artifact(api.artifact(f"{path}/{name}:latest"))
            linked += 1
    return linked


if __name__ == "__main__":
    if "--dry-run" in sys.argv:
        report = build()
        print(f"built report {report.title!r}: {len(report.blocks)} blocks (not saved)")
        for b in report.blocks:
            head = getattr(b, "text", None) or getattr(b, "items", None)
            panels = [type(p).__name__ for p in getattr(b, "panels", [])]
            print(f"  {type(b).__name__}: " + (repr(head)[:110] if head else ", ".join(panels)))
    else:
        print(f"lineage: {link_lineage(default_entity())} run inputs linked")
        report = build(default_entity())
        report.save()
        print(report.url)
'''


def write_definition(out: Path, recipe: Any, study: str, splits: list[str], summary: Any) -> Path:
    """OUT/report/wandb_report.py for `recipe` (lab.core.recipe.Recipe) and the `summary`
    (lab.report.table.Summary) that report.md was written from."""
    from lab.report.wandb_keys import out_dir

    path = out / "report" / "wandb_report.py"
    tables = list(summary.extra)
    text = _HEAD.format(
        study=study,
        out=out,
        out_dir=out_dir(out),
        verdicts=summary.verdicts,
        notes=summary.notes,
        logged=logged(recipe),
        top=TOP_FIGURE,
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
        print(
            f"[lab] warning: W&B Report not saved ({type(e).__name__}: {e}); publish later "
            f"with `python {path}`"
        )
        return None
