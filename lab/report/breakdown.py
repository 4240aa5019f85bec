"""Breakdown tables from the per-example predictions: accuracy per value of a meta field
(HANS heuristic, subcase and label; the gold label of every classification split), and
the Brier score of classification / multiple-choice splits.

The HANS failure mode is "always entailment": near-perfect accuracy on its entailment
examples and near-zero on non-entailment; the per-label table shows it directly.
Each cell of a table is the mean over the group's cells (seeds) and examples; the expected
calibration error is computed per cell (eval/calibration.py) and averaged over the cells.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from eval.calibration import ece, ece_mass

BREAKDOWN_KEYS = ("heuristic", "subcase", "label")

Group = tuple[str, Any]  # (arm, budget)
Preds = Callable[[str, str], list[dict[str, Any]]]  # (cell, split) -> predictions


def group_name(group: Group) -> str:
    return group[0] if group[1] is None else f"{group[0]} @ {group[1]}"


def breakdowns(
    cells: dict[Group, list[str]], preds: Preds, splits: Sequence[str]
) -> list[tuple[str, list[str], list[list[Any]]]]:
    """[(title, columns, rows)]: one table per split and meta key in BREAKDOWN_KEYS that the
    split's predictions carry; rows = the key's values, columns = arms (accuracy, n)."""
    groups = list(cells)
    if not groups:
        return []
    out = []
    for split in splits:
        sample = preds(cells[groups[0]][0], split)
        keys = [k for k in BREAKDOWN_KEYS if sample and all(k in p["meta"] for p in sample)]
        for key in keys:
            acc: dict[tuple[Group, str], list[float]] = defaultdict(list)
            count: dict[str, int] = defaultdict(int)
            for g in groups:
                for cell in cells[g]:
                    for p in preds(cell, split):
                        acc[(g, str(p["meta"][key]))].append(float(p["correct"]))
            for p in sample:
                count[str(p["meta"][key])] += 1
            columns = [key, "n", *[group_name(g) for g in groups]]
            rows = [
                [
                    v,
                    count[v],
                    *[statistics.fmean(acc[(g, v)]) if acc[(g, v)] else None for g in groups],
                ]
                for v in sorted(count)
            ]
            out.append((f"`{split}` accuracy per {key}", columns, rows))
    return out


def choice_splits(
    cells: dict[Group, list[str]], preds: Preds, splits: Sequence[str], key: str
) -> list[str]:
    """The splits some arm scored by choices (its predictions carry `key`): an arm that
    generates on a choice split (format cot_self) has none, whatever the arms' order."""
    return [
        s
        for s in splits
        if any(key in p for cs in cells.values() for c in cs[:1] for p in preds(c, s))
    ]


def brier_table(
    cells: dict[Group, list[str]], preds: Preds, splits: Sequence[str]
) -> tuple[list[str], list[list[Any]]] | None:
    """Mean Brier score (probabilities normalised over the choices) per arm and split, for
    the splits scored by choices; None when there are none."""
    groups, scored = list(cells), choice_splits(cells, preds, splits, "brier")
    if not scored:
        return None
    rows = []
    for g in groups:
        row: list[Any] = [group_name(g)]
        for s in scored:
            # an arm that generates on a choice split (format cot_self) has no Brier score
            vals = [p["brier"] for c in cells[g] for p in preds(c, s) if "brier" in p]
            row.append(statistics.fmean(vals) if vals else None)
        rows.append(row)
    return ["arm", *scored], rows


def calibration_table(
    cells: dict[Group, list[str]], preds: Preds, splits: Sequence[str]
) -> tuple[list[str], list[list[Any]]] | None:
    """Expected calibration error per arm and choice-scored split: top-label confidence
    (the predicted choice's probability over the choices), 15 equal-width bins and 15
    equal-mass bins, each cell's ECE averaged over the group's cells (seeds); None when no
    split is scored by choices."""
    groups, scored = list(cells), choice_splits(cells, preds, splits, "choice_probs")
    if not scored:
        return None
    rows = []
    for g in groups:
        row: list[Any] = [group_name(g)]
        for s in scored:
            per_cell = []
            for c in cells[g]:
                ps = [p for p in preds(c, s) if "choice_probs" in p]  # cot_self generates
                conf = [p["choice_probs"][p["pred_index"]] for p in ps]
                hits = [bool(p["correct"]) for p in ps]
                if ps:
                    per_cell.append((ece(conf, hits), ece_mass(conf, hits)))
            row += [
                statistics.fmean(e for e, _m in per_cell) if per_cell else None,
                statistics.fmean(m for _e, m in per_cell) if per_cell else None,
            ]
        rows.append(row)
    return ["arm", *[f"{s} {kind}" for s in scored for kind in ("ECE", "ECE (mass)")]], rows
