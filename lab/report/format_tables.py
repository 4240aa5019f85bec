"""The format spread (lab/report/format_spread.py's data) as tables, numbers as numbers (W&B
sorts and plots them; the report renders them):

- `formats`: each prompt format at a glance (its sketch, lab/core/formats.py);
- `format_spread`: per arm and budget, ID and OOD accuracy as the mean, minimum and maximum
  over the formats (with the format of each extreme) and whether the other formats are a
  prompt-format shift for it (fine-tuned arms: trained in the main format only);
- `format_scores`: long, one row per arm, budget and format;
- `format_verdicts`: long, one row per compared pair and format: the paired quantities and
  the verdict, and whether it is the main format's.
"""

from __future__ import annotations

from typing import Any

from lab.core.formats import MAIN, PromptFormat
from lab.report.table import Table

SPREAD = [
    "arm",
    "budget",
    "method",
    "formats",
    "id_mean",
    "id_min",
    "id_min_format",
    "id_max",
    "id_max_format",
    "ood_mean",
    "ood_min",
    "ood_min_format",
    "ood_max",
    "ood_max_format",
    "format_shift",
]
VERDICTS = [
    "arm",
    "baseline",
    "budget",
    "prompt_format",
    "id_gain",
    "id_p",
    "ood_gain",
    "ood_p",
    "gap",
    "gap_p",
    "verdict",
    "same_as_main",
]


def formats_table(names: list[str], known: list[PromptFormat]) -> Table:
    """The study's formats at a glance (a format the recipe no longer names: its name only)."""
    by = {f.name: f for f in known}
    return Table(
        ["prompt_format", "sketch"],
        [[n, repr(by[n].sketch()) if n in by else None] for n in names],
    )


def _stats(x: dict[str, Any] | None) -> list[Any]:
    if x is None:
        return [None] * 5
    return [x["mean"], x["min"], x["min_format"], x["max"], x["max_format"]]


def spread_table(data: dict[str, Any]) -> Table:
    rows = [
        [
            a["group"][0],
            a["group"][1],
            a["method"],
            len(data["formats"]),
            *_stats(a["id"]),
            *_stats(a["ood"]),
            "trained in the main format: the others are a prompt-format shift"
            if a["shift"]
            else "prompted in each format",
        ]
        for a in data["arms"]
    ]
    return Table(list(SPREAD), rows)


def scores_table(data: dict[str, Any]) -> Table:
    rows = [
        [a["group"][0], a["group"][1], a["method"], n, acc["id"], acc["ood"]]
        for a in data["arms"]
        for n, acc in a["acc"].items()
    ]
    return Table(["arm", "budget", "method", "prompt_format", "id", "ood"], rows)


def verdicts_table(data: dict[str, Any]) -> Table:
    rows = []
    for p in data["pairs"]:
        for n, res in p["results"].items():
            nums: list[Any] = []
            for q in ("id", "ood", "gap"):
                x = res.get(q) if res["equal"] else None
                nums += [float(x["diff"]), float(x["p_value"])] if x else [None, None]
            rows.append(
                [
                    p["ft"][0],
                    p["icl"][0],
                    p["ft"][1],
                    n,
                    *nums,
                    p["words"][n],
                    p["words"][n] == p["words"][MAIN],
                ]
            )
    return Table(list(VERDICTS), rows)


def holds_table(data: dict[str, Any]) -> Table:
    """One row per pair: its verdict under each format (columns) and whether it holds."""
    names = data["formats"]
    rows = [
        [
            p["ft"][0] + (f" @ {p['ft'][1]}" if p["ft"][1] is not None else ""),
            p["icl"][0],
            *[p["words"][n] for n in names],
            "yes" if p["holds"] else "no",
        ]
        for p in data["pairs"]
    ]
    return Table(["fine-tuned", "vs ICL", *names, "holds under every format"], rows)


def markdown(data: dict[str, Any], known: list[PromptFormat]) -> list[str]:
    """The report's section on the spread (lines of report.md)."""
    n = len(data["formats"])
    return [
        "## Prompt-format spread (eval.formats)",
        "",
        f"Every arm evaluated in {n} prompt formats: the main one (`{MAIN}`, the lab's template) "
        "and the others of `eval.formats` (lab/core/formats.py). Prompted arms see demos and "
        "question in each format; fine-tuned arms were trained in the main format only, so "
        "their other formats are also a prompt-format shift. Accuracy: mean over the study's "
        "cells; min and max name their format.",
        "",
        formats_table(data["formats"], known).render(),
        "",
        spread_table(data).render(),
        "",
        "Paired verdict (the same paired bootstrap as above) under each format:",
        "",
        holds_table(data).render() if data["pairs"] else "(no FT/ICL pair in this study)",
        "",
    ]
