"""A W&B Report for a study, built with `wandb-workspaces`.

Online, the runner saves it right away. Offline (or if saving fails), the definition is
written to OUT/report/wandb_report.py: run it after `wandb sync` to publish the report.
"""

from __future__ import annotations

from pathlib import Path

from lab.io import atomic_write_text

_TEMPLATE = '''"""Publish the W&B Report of study {study!r}. Run after `wandb sync {out}/wandb/offline-run-*`:

    python {path}
"""
import wandb_workspaces.reports.v2 as wr

ENTITY, PROJECT, GROUP = {entity!r}, {project!r}, {study!r}
runs = wr.Runset(entity=ENTITY, project=PROJECT, name=GROUP, filters=f"Config('cell.study') == '{{GROUP}}'")
splits = {splits!r}
report = wr.Report(
    entity=ENTITY,
    project=PROJECT,
    title={title!r},
    description={description!r},
    blocks=[
        wr.H1("Fine-tune or prompt?"),
        wr.P({headline!r}),
        wr.H2("Accuracy per arm (exact match, selected checkpoint / prompt)"),
        wr.PanelGrid(
            runsets=[runs],
            panels=[wr.BarPlot(title=f"{{s}}", metrics=[f"main/{{s}}/exact_match"], groupby="cell.arm")
                    for s in splits]
            + [wr.BarPlot(title=f"{{s}} log p(gold)", metrics=[f"main/{{s}}/gold_logprob"], groupby="cell.arm")
               for s in splits],
        ),
        wr.H2("Training curves"),
        wr.PanelGrid(runsets=[runs], panels=[wr.LinePlot(x="train/step", y=["train/loss"])]),
        wr.H2("Comparison table, paired tests and plots"),
        wr.P("See the study's summary run: tables `comparison`, `paired`, `contamination` and the plots."),
    ],
)
report.save()
print(report.url)
'''


def write_definition(out: Path, study: str, project: str, entity: str | None, splits: list[str],
                     headline: str | None, description: str) -> Path:  # fmt: skip
    path = out / "report" / "wandb_report.py"
    atomic_write_text(
        path,
        _TEMPLATE.format(
            study=study,
            out=out,
            path=path,
            entity=entity or "<your-entity>",
            project=project,
            splits=splits,
            title=f"FT vs ICL: {study}",
            description=description.strip()[:500],
            headline=headline or "(no FT/ICL pair in this study)",
        ),  # fmt: skip
    )
    return path


def publish(path: Path) -> str | None:
    """Run the definition now (online mode). Returns the URL, or None (with a warning)."""
    import runpy

    try:
        ns = runpy.run_path(str(path))
        return str(ns["report"].url)
    except Exception as e:  # noqa: BLE001 - never lose the study over the report
        print(f"[lab] warning: W&B Report not saved ({type(e).__name__}: {e}); publish later "
              f"with `python {path}`")  # fmt: skip
        return None
