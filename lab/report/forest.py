"""The forest plot of paired FT-minus-ICL gains: one row per compared pair (of one study or
of many), three estimates each (the ID gain, the OOD gain and their difference, the gap)
with 95% CIs, a line at zero; an untested pair (unequal budgets) is named, not drawn.
Also reads the typed paired table (lab/report/summary_tables.py) into those rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUANTITIES = [
    ("id", "ID gain", "tab:blue"),
    ("ood", "OOD gain", "tab:orange"),
    ("gap", "ID gain - OOD gain", "tab:gray"),
]
Row = dict[str, Any]  # label, note (None: tested), and per quantity (estimate, lo, hi) or None


def rows_from_paired(columns: list[str], rows: list[list[Any]], prefix: str = "") -> list[Row]:
    """Forest rows of a typed paired table: one per FT arm and budget."""
    out = []
    for r in rows:
        d = dict(zip(columns, r, strict=True))
        budget = "" if d["budget"] is None else f" @ {d['budget']}"
        row: Row = {"label": f"{prefix}{d['arm']} vs {d['baseline']}{budget}", "note": None}
        for q, col in (("id", "id_gain"), ("ood", "ood_gain"), ("gap", "gap")):
            v = d.get(col)
            row[q] = None if v is None else (v, d[f"{q}_lo"], d[f"{q}_hi"])
        if not d["equal_budget"]:
            row["note"] = "unequal budgets: not tested"
        out.append(row)
    return out


def forest(rows: list[Row], path: Path, title: str = "FT minus ICL (paired, 95% CI)") -> Path:
    """Draw `rows` (top to bottom) to `path` (PNG)."""
    n = max(1, len(rows))
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.55 * n))
    offsets = {"id": 0.2, "ood": 0.0, "gap": -0.2}
    drawn: set[str] = set()
    notes = []
    for i, row in enumerate(rows):
        y = n - 1 - i
        if row.get("note"):
            notes.append((y, row["note"]))
            continue
        for q, label, color in QUANTITIES:
            est = row.get(q)
            if est is None:
                continue
            d, lo, hi = est
            ax.errorbar(
                d,
                y + offsets[q],
                xerr=[[d - lo], [hi - d]],
                fmt="o",
                color=color,
                ms=4,
                capsize=2,
                label=None if q in drawn else label,
            )
            drawn.add(q)
    if not drawn:
        ax.set_xlim(-0.5, 0.5)
    ax.axvline(0.0, color="black", lw=0.8)
    mid = sum(ax.get_xlim()) / 2
    for y, note in notes:  # named where its estimates would be, not drawn
        ax.text(
            mid,
            y,
            note,
            ha="center",
            va="center",
            fontsize=8,
            color="dimgray",
            bbox={"facecolor": "white", "edgecolor": "none"},
        )
    ax.set_yticks(range(n))
    ax.set_yticklabels([r["label"] for r in reversed(rows)] or [""], fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("accuracy difference (exact match), FT - ICL")
    ax.set_title(title, fontsize=10)
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
