"""The NLI / paraphrase recipes end to end with --smoke (tiny random model): metric rows
(accuracy, log p(gold), Brier), per-choice predictions, the HANS breakdown tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.core.io import read_jsonl
from lab.study.cli import main

ROOT = Path(__file__).resolve().parents[2]

CHOICE_METRICS = {"exact_match", "gold_logprob", "brier", "ece", "ece_mass"}


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return str(tiny_cache)  # the session's model cache: the tiny models are built once


def _smoke(name: str, out: Path, cache: str) -> Path:
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    try:
        recipe = str(ROOT / "recipes" / f"{name}.yaml")
        code = main(["run", recipe, "--smoke", "--out", str(out), "--cache-dir", cache])
    finally:
        mp.undo()
    assert code == 0
    return out


@pytest.fixture(scope="module")
def mnli(tmp_path_factory, cache):
    return _smoke("mnli_hans", tmp_path_factory.mktemp("mnli") / "out", cache)


def test_mnli_hans_smoke_rows_predictions_and_breakdowns(mnli):
    rows = read_jsonl(mnli / "results.jsonl")
    assert {r["metric"] for r in rows} == CHOICE_METRICS
    assert {r["split"] for r in rows} == {"test", "ood_hans", "ood_mnli_mm"}
    assert {r["arm"] for r in rows} == {"zero_shot", "icl_16shot", "lora_16", "lora_128"}
    for r in rows:
        if r["metric"] == "brier":
            assert 0.0 <= r["value"] <= 2.0
        if r["metric"] in ("ece", "ece_mass"):
            assert 0.0 <= r["value"] <= 1.0
    study = json.loads((mnli / "study.json").read_text())
    preds = read_jsonl(
        mnli / "cells" / "icl_16shot__d0" / "predictions" / "prompted" / "ood_hans.jsonl"
    )
    assert len(preds) == study["split_sizes"]["ood_hans"]
    for p in preds:
        assert p["choices"] == [" Yes", " No"] and len(p["choice_logprobs"]) == 2
        assert p["gold_logprob"] == p["choice_logprobs"][p["gold_index"]]
        assert {"heuristic", "subcase", "label"} <= set(p["meta"])
    cell = json.loads((mnli / "cells" / "lora_16__d0" / "cell.json").read_text())
    # select: best_dev holds 1 of the arm's 4 examples out to select on (inside its budget)
    assert cell["cell"]["n_train"] == 3 and cell["cell"]["n_select"] == 1
    assert cell["train"]["dev_losses"] and len(cell["train"]["held_out_ids"]) == 1
    assert {r["labelled_examples"] for r in cell["rows"]} == {4}
    report = (mnli / "report" / "report.md").read_text()
    for title in (
        "Brier score",
        "Expected calibration error",
        "`ood_hans` accuracy per heuristic",
        "`ood_hans` accuracy per subcase",
        "`ood_hans` accuracy per label",
        "`test` accuracy per label",
        "`ood_mnli_mm` accuracy per label",
    ):
        assert title in report, title
    assert "non-entailment" in report and "lexical_overlap" in report


@pytest.mark.parametrize("name", ["rte_hans", "qqp_paws"])
def test_rte_and_qqp_smoke(name, tmp_path, cache):
    out = _smoke(name, tmp_path / "out", cache)
    rows = read_jsonl(out / "results.jsonl")
    assert {r["metric"] for r in rows} == CHOICE_METRICS
    assert any(r["ood"] for r in rows) and any(r["method"] == "lora" for r in rows)
