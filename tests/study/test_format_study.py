"""A smoke study with `eval.formats: 2` (tiny random model): every arm's comparison variant
is evaluated in the main format and 2 sampled ones, rows and predictions per format, the
report's spread section and answer clause, W&B-typed spread tables, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab.core.formats import sample_formats
from lab.core.io import read_jsonl
from lab.study.cli import main

RECIPE = {
    "name": "fspread",
    "model": "tiny-random",
    "task": {"n_train": 16, "n_dev": 4, "n_test": 3},
    "seeds": [0],
    "budgets": [2],
    "train": {"steps": 2, "batch_size": 2},
    "arms": [
        {"name": "kshot", "method": "icl", "k": 2},
        {"name": "lora", "method": "lora"},
    ],
    "eval": {
        "batch_size": 4,
        "max_new_tokens": {"answer": 3, "cot": 4, "code": 4},
        "formats": 2,
    },
    "tracking": {"mode": "disabled"},
}
SPLITS = {"test", "ood_digits", "ood_steps", "ood_phrasing"}


def _run(tmp: Path, cache: str) -> int:
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    argv = ["run", str(path), "--smoke", "--out", str(tmp / "out"), "--cache-dir", cache, "--quiet"]
    return main(argv)


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_cache) -> Path:
    tmp = tmp_path_factory.mktemp("fspread")
    assert _run(tmp, str(tiny_cache)) == 0
    return tmp


def test_rows_and_predictions_per_format(study):
    out = study / "out"
    rows = [r for r in read_jsonl(out / "results.jsonl") if r["metric"] == "exact_match"]
    names = ["default", *[f.name for f in sample_formats(2, 0)]]  # task.seed 0
    assert names == ["default", "s1", "s2"]
    got = {(r["arm"], r["variant"], r["prompt_format"], r["split"]) for r in rows}
    want = {
        (a, v if f == "default" else f"{v}@{f}", f, s)
        for a, v in (("kshot", "prompted"), ("lora", "last"))
        for f in names
        for s in SPLITS
    }
    assert got == want and len(rows) == len(want)
    for cell, variant in (("kshot__b2__d0", "prompted"), ("lora__b2__d0", "last")):
        pred_dir = out / "cells" / cell / "predictions"
        assert sorted(p.name for p in pred_dir.iterdir()) == [
            variant,
            f"{variant}@s1",
            f"{variant}@s2",
        ]
        main_ids = [p["id"] for p in read_jsonl(pred_dir / variant / "test.jsonl")]
        for f in ("s1", "s2"):
            got_ids = [p["id"] for p in read_jsonl(pred_dir / f"{variant}@{f}" / "test.jsonl")]
            assert got_ids == main_ids and len(got_ids) > 0
    lab = [r for r in rows if r["arm"] == "lora"]
    assert all(r["labelled_examples"] == 2 for r in lab)


def test_report_has_the_spread_and_the_answer_says_whether_it_holds(study):
    report = (study / "out" / "report" / "report.md").read_text()
    section = report.split("## Prompt-format spread (eval.formats)", 1)[1].split("\n## ", 1)[0]
    assert "| s1 " in section and "| s2 " in section and "prompt-format shift" in section
    assert "holds under every format" in section
    answer = report.split("**Answer.**", 1)[1].split("\n", 1)[0]
    assert "prompt formats" in answer and (
        "holds under every one of the 3" in answer or "does not hold under every" in answer
    )
    summary = json.loads((study / "out" / "report" / "summary.json").read_text())
    assert "prompt formats" in summary["headline"]
    html = (study / "out" / "report" / "index.html").read_text()
    assert "Verdict under each prompt format" in html


def test_a_resumed_spread_reevaluates_only_what_is_missing(study, tiny_cache):
    out = study / "out"
    before = read_jsonl(out / "results.jsonl")
    cell = out / "cells" / "lora__b2__d0"
    (cell / "cell.json").unlink()  # the cell is unfinished again, one format's split lost
    (cell / "predictions" / "last@s2" / "ood_steps.jsonl").unlink()
    kept = (cell / "predictions" / "last@s1" / "test.jsonl").stat().st_mtime_ns
    assert _run(study, str(tiny_cache)) == 0
    assert (cell / "predictions" / "last@s2" / "ood_steps.jsonl").is_file()
    assert (cell / "predictions" / "last@s1" / "test.jsonl").stat().st_mtime_ns == kept
    after = read_jsonl(out / "results.jsonl")
    key = lambda r: (r["cell"], r["variant"], r["split"], r["metric"])  # noqa: E731
    assert sorted((key(r), r["value"]) for r in after) == sorted(
        (key(r), r["value"]) for r in before
    )
