"""Model ladders: planning (cells x models), the smoke ladder end to end (same data for every
model, rows with model/fingerprint/params, per-model reports, scaling metrics, plots), the
CoT pairing, the GPU recipes' --smoke ladders, and the GPU-hours estimate."""

import json
from pathlib import Path

import pytest
import yaml

from lab.core.errors import LabError
from lab.core.io import read_json, read_jsonl
from lab.core.layout import model_tag
from lab.core.recipe import load_recipe, parse_recipe
from lab.report.ladder import cot_pairs
from lab.study.cli import main
from lab.study.plan import plan_cells

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "name": "lad",
    "task": {"n_train": 64, "n_dev": 8, "n_test": 4},
    "seeds": [0, 1],
    "budgets": [2, 4],
    "arms": [
        {"name": "zs", "method": "icl", "k": 0},
        {"name": "icl", "method": "icl", "k": 2},
        {"name": "icl_cot", "method": "icl", "format": "cot", "k": 2},
        {"name": "lora", "method": "lora"},
        {"name": "lora_cot", "method": "lora", "format": "cot"},
    ],
}


def test_ladder_plans_every_cell_for_every_model_and_keeps_single_model_keys():
    single = parse_recipe({**BASE, "model": "tiny-random"})
    ladder = parse_recipe({**BASE, "model": ["tiny-random", "org/Some-Model_1.5B", "/x/y/"]})
    one = plan_cells(single)
    cells = plan_cells(ladder)
    assert len(one) == 1 + 2 * 2 * 4  # zero-shot once; 4 data arms x 2 budgets x 2 seeds
    assert len(cells) == 3 * len(one)
    assert [c.key for c in one][:2] == ["zs__d0", "icl__b2__d0"]  # unchanged by the ladder
    tags = [model_tag(i, m) for i, m in enumerate(ladder.models)]
    assert tags == ["m0-tiny-random", "m1-Some-Model_1.5B", "m2-y"]
    for i, tag in enumerate(tags):
        block = cells[i * len(one) : (i + 1) * len(one)]
        assert [c.key for c in block] == [f"{tag}__{c.key}" for c in one]
        assert [(c.arm, c.budget, c.data_seed, c.train_seed) for c in block] == [
            (c.arm, c.budget, c.data_seed, c.train_seed) for c in one
        ]
    assert len({c.key for c in cells}) == len(cells)
    assert single.hash() == parse_recipe({**BASE, "model": "tiny-random"}).hash()


def test_ladder_recipe_errors():
    with pytest.raises(LabError, match="unique"):
        parse_recipe({**BASE, "model": ["tiny-random", "tiny-random"]})
    with pytest.raises(LabError, match="at least one"):
        parse_recipe({**BASE, "model": []})


@pytest.mark.parametrize(
    ("recipe", "n"),
    [("ladder.yaml", 2), ("ladder_qwen2.5_gpu.yaml", 4), ("ladder_pythia_gpu.yaml", 8)],
)
def test_ladder_recipes_smoke_into_tiny_ladders(recipe, n):
    real = load_recipe(ROOT / "recipes" / recipe)
    smoke = load_recipe(ROOT / "recipes" / recipe, smoke=True)
    assert real.is_ladder and len(real.models) == n
    assert smoke.models[0] == "tiny-random" and len(set(smoke.models)) == n
    assert all(m.startswith("tiny-random") for m in smoke.models)
    kinds = {kind for kind, _, _ in cot_pairs(real)}
    assert kinds == {"prompting", "fine-tuning"}  # the CoT-gain view has both lines


def test_cot_pairs_match_k_and_method():
    r = parse_recipe({**BASE, "model": "tiny-random", "arms": [
        {"name": "a0", "method": "icl", "k": 0},
        {"name": "a8", "method": "icl", "k": 8},
        {"name": "c8", "method": "icl", "format": "cot", "k": 8},
        {"name": "zc", "method": "icl", "format": "cot", "trigger": "Think."},
        {"name": "fa", "method": "full"},
        {"name": "lc", "method": "lora", "format": "cot"},
        {"name": "fc", "method": "full", "format": "cot"},
    ], "budgets": None})  # fmt: skip
    got = [(k, c.name, a.name) for k, c, a in cot_pairs(r)]
    assert got == [
        ("prompting", "c8", "a8"),
        ("prompting", "zc", "a0"),
        ("fine-tuning", "fc", "fa"),
    ]


@pytest.fixture(scope="module")
def smoke_ladder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ladder")
    recipe = {
        **BASE,
        "model": ["any-small", "any-large"],
        "seeds": [0],
        "budgets": None,
        "tracking": {"mode": "disabled"},
    }
    recipe["arms"] = [a for a in BASE["arms"] if a["name"] != "zs"]
    path = tmp / "ladder.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp / "out"
    argv = ["run", str(path), "--smoke", "--out", str(out), "--cache-dir", str(tmp / "models")]
    assert main([*argv, "--quiet"]) == 0
    return out


def test_smoke_ladder_rows_record_model_fingerprint_and_params(smoke_ladder):
    rows = read_jsonl(smoke_ladder / "results.jsonl")
    models = {r["model"]: (r["model_fingerprint"], r["n_params"]) for r in rows}
    assert set(models) == {"tiny-random", "tiny-random-d96"}
    assert models["tiny-random"][1] < models["tiny-random-d96"][1]
    assert models["tiny-random"][0] != models["tiny-random-d96"][0]
    for r in rows:
        assert models[r["model"]] == (r["model_fingerprint"], r["n_params"])
    arms = {"icl", "icl_cot", "lora", "lora_cot"}
    splits = {"test", "ood_digits", "ood_steps", "ood_phrasing"}
    em = {(r["model"], r["arm"], r["split"]) for r in rows if r["metric"] == "exact_match"}
    assert em == {(m, a, s) for m in models for a in arms for s in splits}


def test_smoke_ladder_gives_every_model_the_same_data(smoke_ladder):
    def cell(tag, arm):
        return read_json(smoke_ladder / "cells" / f"{tag}__{arm}__d0" / "cell.json")

    for arm in ("icl", "icl_cot"):
        a, b = cell("m0-tiny-random", arm), cell("m1-tiny-random-d96", arm)
        assert a["cell"]["demo_ids"] == b["cell"]["demo_ids"] and len(a["cell"]["demo_ids"]) == 2
    a, b = cell("m0-tiny-random", "lora"), cell("m1-tiny-random-d96", "lora")
    assert a["train"]["train_ids_head"] == b["train"]["train_ids_head"]
    assert a["train"]["steps"] == b["train"]["steps"]


def test_smoke_ladder_report_curves_metrics_and_plots(smoke_ladder):
    rdir = smoke_ladder / "report"
    for name in ("vs_params.png", "cot_gain.png"):
        assert (rdir / "plots" / name).stat().st_size > 5000
    for tag in ("m0-tiny-random", "m1-tiny-random-d96"):
        assert (rdir / "models" / tag / "report.md").is_file()
        assert (rdir / "models" / tag / "plots" / "id_vs_ood.png").is_file()
    md = (rdir / "report.md").read_text()
    assert "linearity" in md and "CoT gain" in md and "m1-tiny-random-d96" in md
    assert "data:image/png;base64," in (rdir / "index.html").read_text()
    data = json.loads((rdir / "ladder.json").read_text())
    assert [m["model"] for m in data["models"]] == ["tiny-random", "tiny-random-d96"]
    metric_rows = data["scaling_metrics"]["rows"]
    # 4 arms x (ID, OOD, 3 OOD splits) x (exact match, log p(gold)); 2 models: L = B = sign(I_y)
    assert len(metric_rows) == 4 * 5 * 2
    for _arm, _split, _metric, lin, brk, i_y, _curve in metric_rows:
        sign = (i_y > 0) - (i_y < 0)
        assert lin == pytest.approx(sign) and brk == pytest.approx(sign)
    pts = data["points"]["lora"]["gold_logprob"]["ID"]
    assert [p[0] for p in pts] == sorted(p[0] for p in pts)  # smallest model first
    assert all(p[2] <= p[1] <= p[3] for p in pts)  # mean inside its CI
    assert set(data["gains"]) == {"prompting: icl_cot - icl", "fine-tuning: lora_cot - lora"}


def test_gpu_hours_estimate_from_the_flop_accounting(monkeypatch, tmp_path):
    from lab.core.compute import FlopCounter
    from lab.study.estimate import estimate, param_counts

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    pub = param_counts("EleutherAI/pythia-70m")  # not cached here: the published count
    assert pub.source == "published" and pub.total == 70_426_624
    assert pub.body == 18_915_328  # Pythia README: non-embedding parameters of pythia-70m
    recipe = parse_recipe(
        {
            "name": "e",
            "model": ["tiny-random", "tiny-random-d96"],
            "task": {"n_train": 64, "n_dev": 8, "n_test": 4},
            "seeds": [0],
            "arms": [{"name": "zs", "method": "icl"}],
            "eval": {"gold_logprob": False},
        }
    )
    cache = str(tmp_path / "models")
    small, large = estimate(recipe, 1e12, 1e10, chars_per_token=1.0, cache_dir=cache)
    assert small.source == "config" and small.tokens == "tokenizer" and small.params < large.params
    assert small.train_flops == 0.0 and 0 < small.eval_flops < large.eval_flops
    assert small.eval_hours == pytest.approx(small.eval_flops / 1e10 / 3600)
    # by hand: one zero-shot generation per eval example; the tiny tokenizer is per character
    from lab.core.prompts import prompt
    from lab.tasks import build_task

    sz = param_counts("tiny-random", cache)
    counter, splits = FlopCounter(sz.body, sz.head), build_task(recipe.task)
    new = recipe.eval.max_new_tokens["answer"]
    expected = 0.0
    for s in ("test", "ood_digits", "ood_steps", "ood_phrasing"):
        mean_q = sum(len(prompt(e)) for e in splits[s]) / len(splits[s])
        expected += len(splits[s]) * counter.generate(int(mean_q), new)
    assert small.eval_flops == pytest.approx(expected)


def test_gpu_hours_estimate_counts_probe_splits(tmp_path):
    """Probes run on every arm: a BBH probe adds, per example, one generation after its
    fixed 3-shot prompt (the tiny tokenizer counts characters)."""
    from eval.probes import probe_prompt
    from lab.core.compute import FlopCounter
    from lab.study.estimate import estimate, param_counts
    from lab.tasks import build_task

    base = {
        "name": "e",
        "model": "tiny-random",
        "task": {"n_train": 64, "n_dev": 8, "n_test": 4},
        "seeds": [0],
        "arms": [{"name": "zs", "method": "icl"}],
        "eval": {"gold_logprob": False},
    }
    bbh = {"bbh": {"n_per_task": 2, "max_new_tokens": 8, "tasks": ["sports_understanding"]}}
    probed = parse_recipe(base | {"task": base["task"] | {"params": {"probes": bbh}}})
    cache = str(tmp_path / "models")
    (plain,) = estimate(parse_recipe(base), 1e12, 1e10, cache_dir=cache)
    (with_probe,) = estimate(probed, 1e12, 1e10, cache_dir=cache)
    xs = build_task(probed.task)["probe_bbh_sports_understanding"]
    sz = param_counts("tiny-random", cache)
    prompt_len = len(xs[0].meta["prefix"]) + sum(len(probe_prompt(x)) for x in xs) / len(xs)
    added = len(xs) * FlopCounter(sz.body, sz.head).generate(int(prompt_len), 8)
    assert with_probe.eval_flops - plain.eval_flops == pytest.approx(added)
