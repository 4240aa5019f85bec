"""The study's results as typed tables, numbers as numbers (W&B sorts, filters and plots
them; `lab compare` reads them back):

- `results`, long: one row per (arm, budget, seed, split, metric): mean, 95% CI (lo, hi)
  and n (eval examples); `seed` empty on the row that pools every seed of the group (the
  bootstrap resamples seeds and examples, as the report's table does), one row per seed
  besides when the group has several;
- `paired`: one row per FT arm and budget against its matched k-shot arm: the ID gain, the
  OOD gain and their difference (the gap), each with CI and p-value, `holm_p` (the gap's
  p-value Holm-adjusted over the pairs tested at that budget: the family the answer's
  exploratory sentence uses), `equal_budget`, and the pair's verdict in words;
- `answer/*`: the numbers of the answer's sentence as scalars;
- `disagreements`: per pair and split, the examples on which the FT and ICL arms disagree,
  joined on example id, with both predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eval.stats import bootstrap_ci
from lab.core.errors import LabError
from lab.core.example import ID_EVAL_SPLIT, ood_mean_splits
from lab.report import verdict
from lab.report.analysis import Group, Scores, ood_columns
from lab.report.table import Table

LONG = [
    "arm",
    "budget",
    "seed",
    "train_seed",
    "split",
    "metric",
    "mean",
    "lo",
    "hi",
    "n",
    "method",
    "format",
    "labelled",
]
PAIRED = [
    "arm",
    "baseline",
    "budget",
    "id_gain",
    "id_lo",
    "id_hi",
    "id_p",
    "ood_gain",
    "ood_lo",
    "ood_hi",
    "ood_p",
    "gap",
    "gap_lo",
    "gap_hi",
    "gap_p",
    "holm_p",
    "equal_budget",
    "labelled_ft",
    "labelled_icl",
    "format",
    "baseline_format",
    "verdict",
]
# paired quantity -> its column prefix in PAIRED and in the `answer/*` scalars
NAMES = {"id": ("id", "id_gain"), "ood": ("ood", "ood_gain"), "gap": ("gap", "gap")}
OOD_MEAN = "ood_mean"


def _pools(splits: list[str]) -> list[tuple[str, list[str]]]:
    """(split name in the table, the eval splits it pools): ID, each OOD split, the OOD mean."""
    in_mean = ood_mean_splits(splits)
    pools = [(ID_EVAL_SPLIT, [ID_EVAL_SPLIT]), *[(s, [s]) for s in ood_columns(splits)]]
    return pools + ([(OOD_MEAN, in_mean)] if in_mean else [])


def _cell_matrix(scores: Scores, cell: str, splits: list[str], metric: str) -> np.ndarray:
    return np.array([[float(p[metric]) for s in splits for p in scores.preds(cell, s)]])


def results_long(scores: Scores, groups: list[Group], splits: list[str]) -> Table:
    """The long results table of `groups` (in report order) on the eval `splits`."""
    rows = []
    for group in groups:
        arm, budget = group
        cells = scores.cells[group]
        meta = scores.meta[cells[0]]
        labelled = scores.labelled(group)
        common = [meta["method"], meta["format"], labelled if isinstance(labelled, int) else None]
        for name, pooled in _pools(splits):
            for metric, field in (("exact_match", "correct"), ("gold_logprob", "gold_logprob")):
                try:
                    whole = scores.matrix(group, pooled, field)
                except (TypeError, KeyError):  # not recorded (gold_logprob off)
                    continue
                runs = [(None, None, whole)]  # every seed pooled
                if len(cells) > 1:
                    runs += [
                        (
                            scores.meta[c]["data_seed"],
                            scores.meta[c]["train_seed"],
                            _cell_matrix(scores, c, pooled, field),
                        )
                        for c in cells
                    ]
                for seed, train_seed, m in runs:
                    mean, lo, hi = bootstrap_ci(m)
                    rows.append(
                        [
                            arm,
                            budget,
                            seed,
                            train_seed,
                            name,
                            metric,
                            float(mean),
                            float(lo),
                            float(hi),
                            int(m.shape[1]),
                            *common,
                        ]
                    )
    return Table(list(LONG), rows)


def _holm_by_budget(results: list[dict[str, Any]]) -> dict[int, float]:
    """index in `results` -> the gap's (else the ID gain's) Holm-adjusted p-value over the
    tested pairs of its budget."""
    out: dict[int, float] = {}
    budgets = {r["ft"][1] for r in results}
    for b in budgets:
        idx = [i for i, r in enumerate(results) if r["ft"][1] == b and r["equal"]]
        q = [("gap" if "gap" in results[i] else "id") for i in idx]
        adj = verdict.holm([results[i][k]["p_value"] for i, k in zip(idx, q, strict=True)])
        out |= dict(zip(idx, adj, strict=True))
    return out


def paired_rows(results: list[dict[str, Any]], scores: Scores) -> Table:
    """The typed paired table of `analysis.paired_table`'s results."""
    holm = _holm_by_budget(results)
    rows = []
    for i, r in enumerate(results):
        (arm, budget), (icl, _b) = r["ft"], r["icl"]
        n_ft, n_icl = r["labelled"]
        nums: list[Any] = []
        for q in ("id", "ood", "gap"):
            x = r.get(q) if r["equal"] else None
            nums += [x["diff"], x["lo"], x["hi"], x["p_value"]] if x else [None] * 4
        fmt = [scores.meta[scores.cells[g][0]]["format"] for g in (r["ft"], r["icl"])]
        rows.append(
            [
                arm,
                icl,
                budget,
                *[None if v is None else float(v) for v in nums],
                holm.get(i),
                bool(r["equal"]),
                n_ft if isinstance(n_ft, int) else None,
                n_icl if isinstance(n_icl, int) else None,
                *fmt,
                verdict.one_line(r),
            ]
        )
    return Table(list(PAIRED), rows)


def answer_values(pair: dict[str, Any] | None) -> dict[str, Any]:
    """The answer's pair as `answer/*` scalars (the numbers its sentence prints)."""
    if pair is None:
        return {}
    out: dict[str, Any] = {
        "answer/arm": pair["ft"][0],
        "answer/baseline": pair["icl"][0],
        "answer/budget": pair["ft"][1],
        "answer/equal_budget": bool(pair["equal"]),
        "answer/verdict": verdict.one_line(pair),
    }
    if pair["equal"]:
        for q, (_col, name) in NAMES.items():
            if q in pair:
                x = pair[q]
                out |= {
                    f"answer/{name}": float(x["diff"]),
                    f"answer/{name}_lo": float(x["lo"]),
                    f"answer/{name}_hi": float(x["hi"]),
                    f"answer/{name}_p": float(x["p_value"]),
                }
    return out


def disagreements(
    scores: Scores, results: list[dict[str, Any]], splits: list[str], limit: int = 200
) -> Table:
    """Per compared pair and eval split, the examples (joined on id) whose correctness the
    FT and ICL arms disagree on (mean over seeds), at most `limit` per pair and split."""
    cols = [
        "arm",
        "baseline",
        "budget",
        "split",
        "id",
        "question",
        "gold",
        "pred",
        "baseline_pred",
        "correct",
        "baseline_correct",
    ]
    rows = []
    for r in results:
        ft, icl = r["ft"], r["icl"]
        for split in splits:
            try:
                a, b = scores.paired(ft, icl, [split])
            except LabError:  # other examples: no join (paired_table says so)
                continue
            ids = scores.ids(ft, [split])
            first_ft = scores.preds(scores.cells[ft][0], split)
            first_icl = scores.preds(scores.cells[icl][0], split)
            ca, cb = a.mean(axis=0), b.mean(axis=0)
            idx = [j for j in range(len(ids)) if ca[j] != cb[j]][:limit]
            for j in idx:
                p, q = first_ft[j], first_icl[j]
                rows.append(
                    [
                        ft[0],
                        icl[0],
                        ft[1],
                        split,
                        ids[j],
                        str(p.get("question") or "")[:300],
                        str(p.get("gold")),
                        str(p.get("pred")),
                        str(q.get("pred")),
                        float(ca[j]),
                        float(cb[j]),
                    ]
                )
    return Table(cols, rows)
