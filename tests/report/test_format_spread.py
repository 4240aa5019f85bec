"""The format spread's analysis (lab/report/format_spread.py) and words (lab/report/verdict.py)
on hand-made rows and predictions: per-arm mean/min/max over formats, the paired verdict
under each format, and whether the answer's verdict holds under every format."""

from __future__ import annotations

from pathlib import Path

from lab.core.formats import MAIN, format_variant
from lab.core.layout import StudyDir
from lab.report import verdict
from lab.report.analysis import Scores, matched_pairs
from lab.report.format_spread import over_formats, pair_spread, prompt_formats, spread
from lab.report.format_tables import holds_table, spread_table, verdicts_table

N = 60  # examples per split
SPLITS = ["test", "ood_x"]
CELLS = {"ft": ("lora_answer", "lora", "last"), "p": ("icl_kshot", "icl", "prompted")}


def _study(tmp: Path, correct: dict[tuple[str, str, str], list[int]]) -> list[dict]:
    """Rows and predictions of one FT cell and one 8-shot cell in formats default and s1;
    `correct[(cell, format, split)]`: per-example correctness."""
    study, rows = StudyDir(tmp), []
    for cell, (arm, method, variant) in CELLS.items():
        for fmt in (MAIN, "s1"):
            name = format_variant(variant, fmt)
            for split in SPLITS:
                got = correct[(cell, fmt, split)]
                preds = [
                    {"id": f"{split}-{i}", "correct": bool(c), "pred": str(c), "gold": "1"}
                    for i, c in enumerate(got)
                ]
                study.cell(cell).write_predictions(name, split, preds)
                rows.append(
                    {
                        "cell": cell,
                        "arm": arm,
                        "method": method,
                        "budget": 8,
                        "k": 8,
                        "format": "answer",
                        "variant": name,
                        "selected": "last" if method != "icl" else None,
                        "labelled_examples": 8,
                        "split": split,
                        "metric": "exact_match",
                        "prompt_format": fmt,
                        "value": sum(got) / N,
                        "data_seed": 0,
                        "train_seed": 0,
                    }
                )
    return rows


class _Recipe:
    budgets = [8]


def _run(tmp: Path, s1_ft_id: list[int]):
    ones, zeros, half = [1] * N, [0] * N, [i % 2 for i in range(N)]
    correct = {
        ("ft", MAIN, "test"): ones,
        ("p", MAIN, "test"): zeros,
        ("ft", MAIN, "ood_x"): half,
        ("p", MAIN, "ood_x"): half,
        ("ft", "s1", "test"): s1_ft_id,
        ("p", "s1", "test"): zeros,
        ("ft", "s1", "ood_x"): half,
        ("p", "s1", "ood_x"): half,
    }
    rows = _study(tmp, correct)
    pairs = matched_pairs(_Recipe(), Scores(tmp, rows))
    return rows, pairs, spread(tmp, rows, SPLITS, pairs)


def test_the_verdict_that_flips_under_one_format_does_not_hold(tmp_path):
    rows, pairs, data = _run(tmp_path, [0] * N)  # in s1 the FT arm loses its ID gain
    assert prompt_formats(rows) == [MAIN, "s1"] and pairs == [
        (("lora_answer", 8), ("icl_kshot", 8))
    ]
    ft = next(a for a in data["arms"] if a["group"] == ("lora_answer", 8))
    assert ft["acc"] == {MAIN: {"id": 1.0, "ood": 0.5}, "s1": {"id": 0.0, "ood": 0.5}}
    assert ft["id"]["mean"] == 0.5 and (ft["id"]["min"], ft["id"]["min_format"]) == (0.0, "s1")
    assert (ft["id"]["max"], ft["id"]["max_format"]) == (1.0, MAIN) and ft["shift"]
    (p,) = data["pairs"]
    assert p["words"][MAIN].startswith("fine-tuning improves ID accuracy")
    assert (
        p["words"]["s1"] == "no significant difference between fine-tuning and prompting, ID or OOD"
    )
    assert p["holds"] is False
    assert p["results"][MAIN]["id"]["diff"] == 1.0 and p["results"]["s1"]["id"]["diff"] == 0.0
    clause = verdict.formats_clause(p["words"], MAIN)
    assert clause.startswith(
        "This verdict does not hold under every prompt format: it holds under 1 of the 2"
    )
    assert "under s1: no significant difference" in clause
    assert pair_spread(data, {"ft": ("lora_answer", 8), "icl": ("icl_kshot", 8)}) is p
    t = verdicts_table(data)
    by = {r[3]: dict(zip(t.columns, r, strict=True)) for r in t.rows}
    assert by[MAIN]["same_as_main"] and not by["s1"]["same_as_main"]
    assert holds_table(data).rows[0][-1] == "no"
    assert spread_table(data).rows[0][:4] == ["lora_answer", 8, "lora", 2]


def test_a_verdict_unchanged_in_every_format_holds(tmp_path):
    _rows, _pairs, data = _run(tmp_path, [1] * N)
    (p,) = data["pairs"]
    assert p["holds"] is True and p["words"]["s1"] == p["words"][MAIN]
    assert verdict.formats_clause(p["words"], MAIN).startswith(
        "This verdict holds under every one of the 2 prompt formats"
    )


def test_no_spread_without_format_rows(tmp_path):
    rows, pairs, _ = _run(tmp_path, [1] * N)
    plain = [{k: v for k, v in r.items() if k != "prompt_format"} for r in rows]
    assert prompt_formats(plain) == [] and spread(tmp_path, plain, SPLITS, pairs) is None
    assert pair_spread(None, {"ft": 1, "icl": 2}) is None


def test_decision_words_and_stats_of_untested_and_id_only_pairs():
    sig = {"diff": 0.3, "lo": 0.1, "hi": 0.5, "p_value": 0.01}
    assert verdict.decision({"equal": False}) == "not tested"
    assert verdict.decision({"equal": True, "id": sig}) == "fine-tuning is better in distribution"
    assert verdict.decision({"equal": True, "id": {**sig, "p_value": 0.2}}) == (
        "no significant ID difference"
    )
    assert over_formats({"a": None}) is None
    got = over_formats({"a": 0.2, "b": 0.6, "c": None})
    assert got == {
        "mean": 0.4,
        "min": 0.2,
        "min_format": "a",
        "max": 0.6,
        "max_format": "b",
        "n_formats": 2,
    }
