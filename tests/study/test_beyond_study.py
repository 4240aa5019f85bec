"""recipes/beyond.yaml with --smoke: every arm beyond k demos vs fine-tuning runs end to end
through the CLI (tiny random model), its rows count exactly the budget, and the report
carries them.

The tiny random model writes no correct rationale, so on its own it would exercise only the
"nothing kept" path of `format: cot_self`. At budget 6 the study's rationale store
(OUT/rationales/, lab/core/layout.py) is therefore written beforehand, as a cell of a
stronger model would leave it (half of the examples with the gold answer): the cot_self arms
then demonstrate and train on those. At budget 5 the tiny model writes its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab.core.io import atomic_write_json, read_jsonl
from lab.core.layout import StudyDir
from lab.core.recipe import load_recipe
from lab.study.cli import main
from lab.study.models import resolve_model
from lab.study.plan import cell_data, plan_cells, study_data

ROOT = Path(__file__).resolve().parents[2]
BEYOND = ROOT / "recipes" / "beyond.yaml"


def _seed_rationales(out: Path, cache: str) -> list[str]:
    """Store rationales for budget 6 (seed 0): the 1st and 3rd correct; the kept ids."""
    recipe = load_recipe(BEYOND, smoke=True)
    data = study_data(recipe)
    cell = next(c for c in plan_cells(recipe) if c.budget == 6 and c.arm.format == "cot_self")
    budget, ft = cell_data(recipe, data.pool, cell, data.splits)
    budget = budget or ft
    written = [
        {
            "id": ex.id,
            "generation": f"Step by step: {ex.answer if i % 2 == 0 else 'no'}. "
            f"The answer is {ex.answer if i % 2 == 0 else 'none'}.",
            "pred": None,
            "correct": i % 2 == 0,
            "stopped": "stop",
        }
        for i, ex in enumerate(budget)
    ]
    path = StudyDir(out).cell(cell.key).rationales("d0__n6")
    fingerprint = resolve_model("tiny-random", cache).fingerprint
    atomic_write_json(
        path, {"ids": [e.id for e in budget], "model_fingerprint": fingerprint, "written": written}
    )
    return [w["id"] for w in written if w["correct"]]


@pytest.fixture(scope="module")
def beyond(tmp_path_factory, tiny_cache):
    cache = str(tiny_cache)
    out = tmp_path_factory.mktemp("beyond") / "out"
    kept = _seed_rationales(out, cache)
    code = main(["run", str(BEYOND), "--smoke", "--out", str(out), "--cache-dir", cache])
    assert code == 0
    return out, kept


def _cell(out: Path, key: str) -> dict:
    return json.loads((out / "cells" / key / "cell.json").read_text())


def test_every_arm_has_its_rows_and_counts_exactly_the_budget(beyond):
    out, _kept = beyond
    spec = yaml.safe_load(BEYOND.read_text())
    budgets = spec["smoke"]["budgets"]
    rows = [r for r in read_jsonl(out / "results.jsonl") if r["metric"] == "exact_match"]
    main_rows = [r for r in rows if r["variant"] in ("prompted", r.get("selected"))]
    arms = {a["name"] for a in spec["arms"]}
    splits = {"test", "ood_digits", "ood_steps", "ood_phrasing"}
    got = {(r["arm"], r["budget"], r["split"]) for r in main_rows}
    want = {("zero_shot", None, s) for s in splits} | {
        (a, b, s) for a in arms - {"zero_shot"} for b in budgets for s in splits
    }
    assert got == want
    for r in main_rows:
        assert r["labelled_examples"] == (r["budget"] or 0), (r["arm"], r["budget"])


def test_self_written_rationales_are_shared_kept_and_trained_on(beyond):
    out, kept = beyond
    icl, lora = _cell(out, "icl_cot_self__b6__d0"), _cell(out, "lora_cot_self__b6__d0")
    for c in (icl, lora):
        assert c["cell"]["rationales_written"] == 6 and c["cell"]["rationale_ids"] == kept
    assert icl["cell"]["demo_ids"] == kept  # the kept ones are the demos
    assert lora["train"]["n_train"] == len(kept) and lora["train"]["output_delta"] > 0
    # budget 5: the tiny model wrote its own (stored once, for both arms of the budget)
    assert (out / "rationales" / "d0__n5.json").is_file()
    two = _cell(out, "lora_cot_self__b5__d0")["cell"]
    assert two["rationales_written"] == 5 and two["rationales_kept"] <= 5
    report = (out / "report" / "report.md").read_text()
    assert "rationales kept" in report and "| ttt" in report


def test_test_time_training_counts_its_adapters_per_query(beyond):
    out, _kept = beyond
    ttt, icl = _cell(out, "ttt__b6__d0"), _cell(out, "icl_kshot__b6__d0")
    assert ttt["cell"]["demo_ids"] == icl["cell"]["demo_ids"]  # the same budget's demos
    for split in ("test", "ood_digits"):
        preds = read_jsonl(out / "cells" / "ttt__b6__d0" / "predictions" / "ttt" / f"{split}.jsonl")
        assert all(p["ttt_flops"] > 0 for p in preds)
        per_query = ttt["metrics"][f"ttt/{split}"]["flops_per_example"]
        assert per_query > icl["metrics"][f"prompted/{split}"]["flops_per_example"]
        assert not {p["id"] for p in preds} & set(ttt["cell"]["demo_ids"])


def test_a_ttt_arm_without_demos_is_refused_before_anything_runs(splits):
    from lab.core.errors import LabError
    from lab.core.recipe import parse_recipe
    from lab.study.plan import validate

    arm = {"name": "t", "method": "ttt", "k": 0}
    recipe = parse_recipe({"name": "r", "model": "m", "arms": [arm]})
    with pytest.raises(LabError, match="trains on its demos but has none"):
        validate(recipe, splits)
