"""The format spread of a study (`eval.formats`, lab/core/formats.py), as data: per arm its
accuracy in every prompt format and the mean, minimum and maximum over them; per compared
FT/ICL pair the paired test (analysis.paired_table's, on the same examples) under each
format, its verdict in words, and whether the verdict holds under every format. Nothing is
rendered here (lab/report/format_tables.py).

Fine-tuned arms are trained in the main format only, so their other formats are also a
prompt-format shift; prompted arms see their demos and question in each format.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from lab.core.example import ID_EVAL_SPLIT, ood_mean_splits
from lab.core.formats import MAIN
from lab.report import verdict
from lab.report.analysis import Group, Scores, paired_table


def prompt_formats(rows: list[dict[str, Any]]) -> list[str]:
    """The prompt formats of a study's rows, the main one first ([] without a spread)."""
    names = list(dict.fromkeys(r["prompt_format"] for r in rows if r.get("prompt_format")))
    return sorted(names, key=lambda n: n != MAIN)


def over_formats(values: dict[str, float | None]) -> dict[str, Any] | None:
    """mean, min and max of per-format values, with the formats of the min and the max."""
    got = {n: v for n, v in values.items() if v is not None}
    if not got:
        return None
    lo, hi = min(got, key=got.__getitem__), max(got, key=got.__getitem__)
    return {
        "mean": statistics.fmean(got.values()),
        "min": got[lo],
        "min_format": lo,
        "max": got[hi],
        "max_format": hi,
        "n_formats": len(got),
    }


def spread(
    out: Path, rows: list[dict[str, Any]], splits: list[str], pairs: list[tuple[Group, Group]]
) -> dict[str, Any] | None:
    """The study's format spread (None without `eval.formats`): {"formats": names, "arms":
    per arm and budget, "pairs": per compared pair}. `pairs`: analysis.matched_pairs's."""
    names = prompt_formats(rows)
    if len(names) < 2:
        return None
    per = {n: Scores(out, rows, n) for n in names}
    in_mean = ood_mean_splits(splits)
    arms = []
    for group, cells in per[MAIN].cells.items():
        meta = per[MAIN].meta[cells[0]]
        acc = {
            n: {
                "id": float(per[n].matrix(group, [ID_EVAL_SPLIT]).mean()),
                "ood": float(per[n].matrix(group, in_mean).mean()) if in_mean else None,
            }
            for n in names
        }
        arms.append(
            {
                "group": group,
                "method": meta["method"],
                "format": meta["format"],
                "acc": acc,
                "id": over_formats({n: a["id"] for n, a in acc.items()}),
                "ood": over_formats({n: a["ood"] for n, a in acc.items()}),
                "shift": meta["method"] != "icl",  # trained in the main format only
            }
        )
    tested = []
    for pair in pairs:
        results = {n: paired_table([pair], per[n], splits)[1][0] for n in names}
        words = {n: verdict.decision(r) for n, r in results.items()}
        tested.append(
            {
                "ft": pair[0],
                "icl": pair[1],
                "results": results,
                "words": words,
                "holds": len(set(words.values())) == 1,
            }
        )
    return {"formats": names, "arms": arms, "pairs": tested}


def pair_spread(data: dict[str, Any] | None, res: dict[str, Any] | None) -> dict[str, Any] | None:
    """The spread of the pair `res` (a paired_table result, e.g. the answer's), or None."""
    if data is None or res is None:
        return None
    return next((p for p in data["pairs"] if p["ft"] == res["ft"] and p["icl"] == res["icl"]), None)
