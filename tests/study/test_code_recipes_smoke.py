"""recipes/gsm8k_reasoning.yaml and recipes/mbpp_humaneval.yaml end to end with --smoke:
fixed demo sets, BBH probe rows on every arm (per subtask and macro), test-scored code,
cross-task probes (GSM8K and MNLI -> HANS on the code study, MBPP on the math study)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.options import MATCH_KINDS
from lab.core.io import read_json, read_jsonl
from lab.study.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run(name: str, tmp_path_factory, cache) -> Path:
    out = tmp_path_factory.mktemp(name) / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    try:
        code = main(
            [
                "run",
                str(ROOT / "recipes" / f"{name}.yaml"),
                "--smoke",
                "--out",
                str(out),
                "--cache-dir",
                cache,
                "--force",
            ]
        )
    finally:
        mp.undo()
    assert code == 0
    return out


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return str(tiny_cache)  # the session's model cache: the tiny models are built once


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
    preds = read_jsonl(
        gsm
        / "cells"
        / "lora_cot__d0"
        / "predictions"
        / "last"
        / "probe_bbh_date_understanding.jsonl"
    )
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
        preds = [
            p
            for s in in_mean
            for p in read_jsonl(
                gsm / "cells" / f"{arm}__d0" / "predictions" / "prompted" / f"{s}.jsonl"
            )
        ]
        mean = sum(p["correct"] for p in preds) / len(preds)
        assert by_arm[arm][cols.index("OOD mean")].startswith(f"{mean:.3f} ")
    report = (gsm / "report" / "report.md").read_text()
    assert "`ood_aqua_gen` has its column but is not in the mean" in report


def test_mbpp_humaneval_smoke(mbpp):
    rows = read_jsonl(mbpp / "results.jsonl")
    em = [r for r in rows if r["metric"] == "exact_match" and not r.get("probe")]
    assert {r["split"] for r in em} == {"test", "ood_humaneval"}
    assert {r["arm"] for r in em} == {"zero_shot", "icl_3shot_mbpp", "icl_3shot", "lora_code"}
    preds = read_jsonl(
        mbpp / "cells" / "zero_shot__d0" / "predictions" / "prompted" / "ood_humaneval.jsonl"
    )
    assert all(p["correct"] is False and p["error"] for p in preds)  # a random model fails
    fixed = read_json(mbpp / "cells" / "icl_3shot_mbpp__d0" / "cell.json")["cell"]
    assert fixed["demo_ids"] == ["demos_mbpp-0002", "demos_mbpp-0003", "demos_mbpp-0004"]
    report = (mbpp / "report" / "report.md").read_text()
    assert "| lora_code" in report and "Generic-reasoning probes" in report


def _main(rows: list[dict], arm: str) -> list[dict]:
    """The arm's rows of its main variant (prompted, or the selected FT checkpoint)."""
    return [r for r in rows if r["arm"] == arm and r["variant"] == r.get("selected", "prompted")]


def test_mbpp_humaneval_cross_task_probes_on_prompted_and_ft_arms(mbpp):
    rows = read_jsonl(mbpp / "results.jsonl")
    probed = {"gsm8k": ["test", "ood_svamp"], "mnli_hans": ["test", "ood_hans"]}
    want = {(f"probe_{t}_{s}", None) for t, ss in probed.items() for s in ss}
    want |= {(f"probe_{t}", "macro") for t in probed}
    for arm in ("zero_shot", "icl_3shot", "lora_code"):
        mine = [r for r in _main(rows, arm) if r.get("probe") in probed]
        em = {(r["split"], r.get("aggregate")): r for r in mine if r["metric"] == "exact_match"}
        assert set(em) == want, arm
        for t, ss in probed.items():
            macro, per = em[(f"probe_{t}", "macro")], [em[(f"probe_{t}_{s}", None)] for s in ss]
            assert macro["n"] == sum(r["n"] for r in per) == 4  # smoke: n = 2 per split
            assert macro["value"] == pytest.approx(sum(r["value"] for r in per) / len(per))
        # scored as the probed task: choices (Brier) for NLI, log p(gold) for GSM8K
        hans = {r["metric"] for r in mine if r["split"] == "probe_mnli_hans_ood_hans"}
        assert hans == {"exact_match", "gold_logprob", "brier", "ece", "ece_mass"}
        assert all(not r["ood"] for r in mine)

    def preds(cell: str, split: str) -> list[dict]:
        variant = "prompted" if cell != "lora_code__d0" else "last"
        return read_jsonl(mbpp / "cells" / cell / "predictions" / variant / f"{split}.jsonl")

    # one fixed prompt for every arm: the icl_3shot arm's own 3 demos are on its test split
    # only; on a probe split every arm sees the probe's demo (smoke: k = 1) and nothing else
    cells = ("zero_shot__d0", "icl_3shot__d0", "lora_code__d0")
    assert preds(cells[1], "test")[0]["prompt_tokens"] > preds(cells[0], "test")[0]["prompt_tokens"]
    for split in ("probe_gsm8k_test", "probe_mnli_hans_ood_hans"):
        got = [[(p["id"], p["prompt_tokens"]) for p in preds(c, split)] for c in cells]
        assert got[0] == got[1] == got[2], split
    gsm = preds(cells[2], "probe_gsm8k_test")
    assert len(gsm[0]["meta"]["demo_ids"]) == 1 and "demos" not in gsm[0]["meta"]
    assert preds(cells[0], "probe_mnli_hans_test")[0]["meta"]["demo_ids"] == []
    report = (mbpp / "report" / "report.md").read_text()
    assert "## Cross-task probes" in report
    assert "gsm8k ood_svamp" in report and "mnli_hans macro" in report
    assert "probe_gsm8k_test" not in read_json(mbpp / "study.json")["eval_splits"]


def test_gsm8k_reasoning_probes_code_on_every_arm(gsm):
    rows = read_jsonl(gsm / "results.jsonl")
    for arm in {r["arm"] for r in rows}:
        splits = {r["split"] for r in _main(rows, arm) if r.get("probe") == "mbpp_humaneval"}
        assert splits == {
            "probe_mbpp_humaneval_test",
            "probe_mbpp_humaneval_ood_humaneval",
            "probe_mbpp_humaneval",
        }, arm
    preds = read_jsonl(
        gsm
        / "cells"
        / "lora_code__d0"
        / "predictions"
        / "last"
        / "probe_mbpp_humaneval_ood_humaneval.jsonl"
    )
    assert preds[0]["error"] and "check(" in preds[0]["meta"]["tests"]  # ran in the sandbox
