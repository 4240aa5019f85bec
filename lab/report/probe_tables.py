"""The probe tables of the report: per arm (compared variant, mean over cells), exact match on
each probe split and the macro average of each probe family. BBH (generic reasoning) and the
cross-task probes (the eval splits of other tasks of the lab) get one table each."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

BBH = "bbh"


def _column(split: str, family: str, macro: bool) -> str:
    """'bbh_date_understanding', 'bbh macro'; 'gsm8k test', 'mnli_hans ood_hans', 'gsm8k macro'."""
    if macro:
        return f"{family} macro"
    if family == BBH:
        return split.removeprefix("probe_")
    return f"{family} {split.removeprefix(f'probe_{family}_')}"


def probe_table(
    rows: list[dict[str, Any]], arm_order: list[str], cross_task: bool = False
) -> tuple[list[str], list[list]]:
    """(columns, rows) of the BBH probes, or with `cross_task` of the cross-task probes; no
    rows when the study has none. Per-split columns (BBH: sorted; cross-task: in the
    recipe's order, probed task by probed task), then the macro averages."""
    vals: dict[tuple[str, str], list[float]] = defaultdict(list)
    splits: dict[str, tuple[str, bool]] = {}  # split -> (family, is the macro row)
    for r in rows:
        if not r.get("probe") or r["metric"] != "exact_match":
            continue
        if (r["probe"] != BBH) != cross_task:
            continue
        compared = r["variant"] == ("prompted" if r["method"] == "icl" else r.get("selected"))
        if not compared:
            continue
        vals[(r["arm"], r["split"])].append(r["value"])
        splits.setdefault(r["split"], (r["probe"], r.get("aggregate") == "macro"))
    if not vals:
        return [], []
    macros = [s for s, (_f, macro) in splits.items() if macro]
    per_split = [s for s in splits if s not in macros]
    if not cross_task:
        per_split.sort()
    order = per_split + macros
    columns = ["arm", *[_column(s, *splits[s]) for s in order]]
    arms = [a for a in arm_order if any(k[0] == a for k in vals)]
    out = [
        [a, *[statistics.fmean(vals[(a, s)]) if vals[(a, s)] else None for s in order]]
        for a in arms
    ]
    return columns, out
