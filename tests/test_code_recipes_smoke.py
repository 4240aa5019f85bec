"""recipes/gsm8k_reasoning.yaml and recipes/mbpp_humaneval.yaml end to end with --smoke:
fixed demo sets, BBH probe rows on every arm (per subtask and macro), test-scored code."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.options import MATCH_KINDS
from lab.cli import main
from lab.io import read_json, read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _run(name: str, tmp_path_factory, cache) -> Path:
    out = tmp_path_factory.mktemp(name) / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    try:
        code = main(["run", str(ROOT / "recipes" / f"{name}.yaml"), "--smoke", "--out", str(out),
                     "--cache-dir", cache, "--force"])  # fmt: skip
    finally:
        mp.undo()
    assert code == 0
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def gsm(tmp_path_factory, cache):
    return _run("gsm8k_reasoning", tmp_path_factory, cache)


@pytest.fixture(scope="module")
def mbpp(tmp_path_factory, cache):
    return _run("mbpp_humaneval", tmp_path_factory, cache)


def test_gsm8k_reasoning_smoke_fixed_demos_and_bbh_on_every_arm(gsm):
    rows = read_jsonl(gsm / "results.jsonl")
    arms = {r["arm"] for r in rows}
    assert len(arms) == 6
    icl = [r for r in rows if r["arm"] == "icl_8shot_cot"]
    assert icl and all(r["demos"] == "wei" and r["demos_fixed"] for r in icl)
    assert all(r["budget"] is None and r["data_seed"] == 0 for r in icl)
    cell = read_json(gsm / "cells" / "icl_8shot_cot__d0" / "cell.json")
    assert cell["cell"]["demo_ids"] == ["demos_wei-0", "demos_wei-1"]  # smoke: k = 2
    subtasks = {"sports_understanding", "date_understanding", "object_counting", "word_sorting"}
    probe = [r for r in rows if r.get("probe") == "bbh"]
    for arm in arms:  # prompted and fine-tuned arms alike
        mine = {r["split"] for r in probe if r["arm"] == arm}
        assert mine == {f"probe_bbh_{t}" for t in subtasks} | {"probe_bbh"}, arm
    macro = [r for r in probe if r["split"] == "probe_bbh"]
    assert all(r["aggregate"] == "macro" and r["n"] == 8 for r in macro)
    preds = read_jsonl(gsm / "cells" / "lora_cot__d0" / "predictions" / "best" /
                       "probe_bbh_date_understanding.jsonl")  # fmt: skip
    assert len(preds) == 2 and "prefix" not in preds[0]["meta"]
    assert preds[0]["prompt_tokens"] > 500  # the 3-shot CoT prompt was in front
    report = (gsm / "report" / "report.md").read_text()
    assert "Generic-reasoning probes" in report and "bbh macro" in report
    assert "fixed set 'wei', not from the pool" in report
    assert "demos_wei" in report  # described in the Splits section
    # probes are not ID or OOD splits: the main table has no probe column
    assert "probe_bbh" not in read_json(gsm / "study.json")["eval_splits"]


def test_gsm8k_reasoning_smoke_scores_aqua_two_ways_and_counts_it_once(gsm):
    """ood_aqua_gen (generation + option extraction) is evaluated on every arm and shown as
    a column, but the OOD mean pools the other OOD splits only (AQuA once, as ood_aqua)."""
    splits = read_json(gsm / "study.json")["eval_splits"]
    assert {"ood_aqua", "ood_aqua_gen"} <= set(splits)
    rows = read_jsonl(gsm / "results.jsonl")
    gen = [r for r in rows if r["split"] == "ood_aqua_gen"]
    assert {r["arm"] for r in gen} == {r["arm"] for r in rows}
    assert {r["metric"] for r in gen} == {"exact_match", "gold_logprob"}
    files = sorted(gsm.glob("cells/*/predictions/*/ood_aqua_gen.jsonl"))
    assert len(files) >= 6
    for path in files:
        for p in read_jsonl(path):
            assert p["match"] in MATCH_KINDS and p["gold"] in "ABCDE"
            assert p["pred"] is None or p["pred"] in "ABCDE"
            assert p["correct"] == (p["pred"] == p["gold"])
    table = read_json(gsm / "report" / "summary.json")
    cols, by_arm = table["columns"], {r[0]: r for r in table["rows"]}
    assert "ood_aqua_gen" in cols and "ood_aqua" in cols
    in_mean = [s for s in splits if s.startswith("ood_") and s != "ood_aqua_gen"]
    for arm in ("zero_shot", "zero_shot_cot"):  # one cell each: the mean is easy to redo
        preds = [p for s in in_mean for p in read_jsonl(
            gsm / "cells" / f"{arm}__d0" / "predictions" / "prompted" / f"{s}.jsonl")]  # fmt: skip
        mean = sum(p["correct"] for p in preds) / len(preds)
        assert by_arm[arm][cols.index("OOD mean")].startswith(f"{mean:.3f} ")
    report = (gsm / "report" / "report.md").read_text()
    assert "`ood_aqua_gen` has its column but is not in the mean" in report


def test_mbpp_humaneval_smoke(mbpp):
    rows = read_jsonl(mbpp / "results.jsonl")
    em = [r for r in rows if r["metric"] == "exact_match" and not r.get("probe")]
    assert {r["split"] for r in em} == {"test", "ood_humaneval"}
    assert {r["arm"] for r in em} == {"zero_shot", "icl_3shot_mbpp", "icl_3shot", "lora_code"}
    preds = read_jsonl(mbpp / "cells" / "zero_shot__d0" / "predictions" / "prompted" /
                       "ood_humaneval.jsonl")  # fmt: skip
    assert all(p["correct"] is False and p["error"] for p in preds)  # a random model fails
    fixed = read_json(mbpp / "cells" / "icl_3shot_mbpp__d0" / "cell.json")["cell"]
    assert fixed["demo_ids"] == ["demos_mbpp-0002", "demos_mbpp-0003", "demos_mbpp-0004"]
    report = (mbpp / "report" / "report.md").read_text()
    assert "| lora_code" in report and "Generic-reasoning probes" in report
