"""The typed tables' pieces that a smoke study (all answers wrong) does not reach: the
examples on which a fine-tuned and a prompted arm disagree, joined on example id; the
Markdown of the notes as HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.report.analysis import Scores
from lab.report.markup import bullets, inline
from lab.report.summary_tables import disagreements, paired_rows, results_long

ROWS = [
    {
        "cell": c,
        "arm": a,
        "budget": 4,
        "method": m,
        "format": "answer",
        "variant": v,
        "selected": "last" if m != "icl" else None,
        "labelled_examples": 4,
        "data_seed": d,
        "train_seed": d,
    }
    for c, a, m, v, d in (
        ("ft0", "lora", "lora", "last", 0),
        ("ft1", "lora", "lora", "last", 1),
        ("p0", "kshot", "icl", "prompted", 0),
        ("p1", "kshot", "icl", "prompted", 1),
    )
]
# (id, correct) per cell, in another order than the ids': the join is on ids
CORRECT = {
    "ft0": {"b": 1, "a": 1, "c": 0},
    "ft1": {"c": 0, "a": 1, "b": 0},
    "p0": {"a": 1, "b": 0, "c": 0},
    "p1": {"a": 1, "c": 1, "b": 0},
}


class MemoryScores(Scores):
    """Scores whose predictions are given, not read from a study folder."""

    def preds(self, cell: str, split: str) -> list[dict[str, Any]]:
        got = [
            {"id": i, "correct": bool(v), "pred": f"{cell}-{i}", "gold": "7", "question": f"q {i}"}
            for i, v in CORRECT[cell].items()
        ]
        return sorted(got, key=lambda p: p["id"])


def test_disagreements_join_the_arms_on_example_id():
    scores = MemoryScores(Path("."), ROWS)
    res = [{"ft": ("lora", 4), "icl": ("kshot", 4), "equal": True, "labelled": (4, 4)}]
    t = disagreements(scores, res, ["test"])
    rows = [dict(zip(t.columns, r, strict=True)) for r in t.rows]
    # a: both right on both seeds; b: FT 1/2 vs ICL 0/2; c: FT 0/2 vs ICL 1/2
    assert [(r["id"], r["correct"], r["baseline_correct"]) for r in rows] == [
        ("b", 0.5, 0.0),
        ("c", 0.0, 0.5),
    ]
    assert rows[0]["pred"] == "ft0-b" and rows[0]["baseline_pred"] == "p0-b"
    assert all(r["arm"] == "lora" and r["baseline"] == "kshot" and r["budget"] == 4 for r in rows)


def test_paired_rows_are_numbers_and_an_untested_pair_is_empty_not_text():
    scores = MemoryScores(Path("."), ROWS)
    q = {"diff": 0.25, "lo": -0.1, "hi": 0.6, "p_value": 0.02}
    tested = {
        "ft": ("lora", 4),
        "icl": ("kshot", 4),
        "equal": True,
        "labelled": (4, 4),
        "has_ood": True,
        "id": q,
        "ood": q,
        "gap": {**q, "p_value": 0.3},
    }
    untested = {**tested, "equal": False, "labelled": (4, 2)}
    t = paired_rows([tested, untested], scores)
    a, b = (dict(zip(t.columns, r, strict=True)) for r in t.rows)
    assert a["id_gain"] == 0.25 and a["gap_p"] == 0.3 and a["holm_p"] == pytest.approx(0.3)
    assert a["equal_budget"] is True and "lora vs kshot @ 4" in a["verdict"]
    assert b["id_gain"] is None and b["equal_budget"] is False and b["holm_p"] is None
    assert "unequal budgets (4 vs 2)" in b["verdict"]


def test_notes_markdown_renders_as_html():
    assert inline("a `x<y` and **b** [r](m/r.md)") == (
        'a <code>x&lt;y</code> and <b>b</b> <a href="m/r.md">r</a>'
    )
    assert inline("p(gold) * 2 and a_b") == "p(gold) * 2 and a_b"  # no stray emphasis
    assert bullets(["", "- `train`: ID", "text"]) == "<ul><li><code>train</code>: ID</li></ul>"


def test_results_long_pools_the_seeds_and_gives_each_seed_its_row():
    scores = MemoryScores(Path("."), ROWS)
    t = results_long(scores, [("lora", 4), ("kshot", 4)], ["test"])
    rows = [dict(zip(t.columns, r, strict=True)) for r in t.rows]
    lora = [(r["seed"], r["mean"], r["n"]) for r in rows if r["arm"] == "lora"]
    # pooled (seed empty): 3 right of 6; seed 0: a, b right; seed 1: a right
    assert lora == [(None, 0.5, 3), (0, pytest.approx(2 / 3), 3), (1, pytest.approx(1 / 3), 3)]
    for r in rows:
        assert r["metric"] == "exact_match" and r["split"] == "test"  # no gold_logprob recorded
        assert r["lo"] <= r["mean"] <= r["hi"] and r["labelled"] == 4 and r["budget"] == 4
