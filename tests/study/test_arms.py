"""The arms between prompting and fine-tuning (issue 25 items 1-3) under one budget:
in-context fine-tuning (`train_k`), many-shot (`k: all`), retrieved demos (`demos: knn`):
plans, schema errors, and a tiny study whose rows count exactly the budget."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from lab.core import fairness
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.io import read_jsonl
from lab.core.recipe import parse_recipe
from lab.study.cli import main
from lab.study.plan import data_order, plan_cell, plan_cells, study_data, validate


def ex(split: str, i: int) -> Example:
    return Example(
        f"{split}-{i}", f"what is {i} plus {i % 3}", str(i), f"r. The answer is {i}.", ""
    )


SPLITS = {
    "train": [ex("train", i) for i in range(24)],
    "dev": [ex("dev", i) for i in range(2)],
    "test": [ex("test", i) for i in range(3)] + [ex("train", 5)],  # a query that is in the pool
}
ARMS = [
    {"name": "icl", "method": "icl", "k": 4},
    {"name": "many", "method": "icl", "k": "all"},
    {"name": "knn", "method": "icl", "k": 3, "demos": "knn"},
    {"name": "lora", "method": "lora"},
    {"name": "icft", "method": "lora", "train_k": 3},
    {
        "name": "icft_cot",
        "method": "full",
        "format": "cot",
        "train_k": 2,
        "train": {"select": "best_dev"},
    },
]


def recipe(arms=ARMS, **over):
    return parse_recipe(
        {
            "name": "x",
            "model": "tiny-random",
            "seeds": [0, 1],
            "budgets": [8, 16],
            "arms": arms,
            **over,
        }
    )


def _plans(r):
    data = study_data(r, SPLITS)
    validate(r, SPLITS)
    return data, [plan_cell(r, data, c) for c in plan_cells(r)]


def test_every_arm_counts_exactly_its_budget_and_draws_only_from_it():
    r = recipe()
    data, plans = _plans(r)
    for plan in plans:
        c = plan.cell
        budget = data_order(r, data.pool, c.data_seed)[: c.budget]
        ids = {e.id for e in budget}
        for v in plan.variants:
            if "+icl" in v.name:
                continue
            n = fairness.count_labelled(plan.used, v.spec.demos, plan.index)
            assert n == c.budget, (c.key, v.name)
            assert {d.id for d in v.spec.demos} <= ids
        assert {e.id for e in [*plan.used, *plan.index, *plan.demos]} <= ids
        info = plan.describe()
        if c.arm.name == "many":  # k: all = every example of the budget
            assert info["k"] == c.budget and [d.id for d in plan.demos] == [e.id for e in budget]
        if c.arm.name == "knn":
            assert info["k"] == 3 and info["index_size"] == c.budget and not plan.demos
            retriever = plan.variants[0].spec.retriever
            for q in SPLITS["test"]:
                got = retriever.demos(q)
                assert (
                    len(got) == 3 and {d.id for d in got} <= ids and q.id not in {d.id for d in got}
                )
        if c.arm.train_k:  # evaluated with the budget's first train_k as demos
            v = plan.variants[0]
            assert [d.id for d in v.spec.demos] == [e.id for e in budget[: c.arm.train_k]]
            assert v.ft_then_icl_k == 0 and info["train_k"] == c.arm.train_k
            assert plan.train_k == c.arm.train_k
            assert set(d.id for d in v.spec.demos) <= {e.id for e in plan.train_set}


def test_k_all_without_budgets_is_the_pool():
    r = recipe(arms=[{"name": "many", "method": "icl", "k": "all"}], budgets=None, seeds=[0])
    _data, (plan,) = _plans(r)
    assert plan.k_requested == len(SPLITS["train"]) == len(plan.demos)


def test_train_k_needs_examples_besides_each_target():
    r = recipe(arms=[{"name": "icft", "method": "lora", "train_k": 8}])
    with pytest.raises(
        LabError, match="train_k=8 needs at least 9 training examples .* budget of 8"
    ):
        validate(r, SPLITS)


@pytest.mark.parametrize(
    "arm, message",
    [
        ({"method": "lora", "k": "all"}, "k: all (many-shot) needs an ICL arm"),
        ({"method": "icl", "k": "many"}, "k must be a number of demos"),
        ({"method": "icl", "train_k": 2}, "train_k (in-context fine-tuning) needs method lora"),
        ({"method": "icl", "k": "all", "demos": "knn"}, "takes a number of demos, not k: all"),
        ({"method": "lora", "demos": "knn"}, "needs an ICL arm with k > 0"),
        ({"method": "full", "train_k": -1}, "greater than or equal to 0"),
    ],
)
def test_schema_errors_are_one_line(arm, message):
    with pytest.raises(LabError, match=re.escape(message)) as e:
        recipe(arms=[{"name": "a", **arm}])
    assert "\n" not in str(e.value)


def test_new_key_at_its_default_keeps_the_hash():
    plain = {"name": "a", "method": "lora"}
    assert recipe(arms=[plain]).hash() == recipe(arms=[{**plain, "train_k": 0}]).hash()
    assert recipe(arms=[plain]).hash() != recipe(arms=[{**plain, "train_k": 1}]).hash()


def test_tiny_study_rows_count_the_budget_and_knn_logs_each_querys_demos(
    tmp_path, tiny_cache, capsys
):
    r = {
        "name": "arms",
        "model": "tiny-random",
        "seeds": [0],
        "budgets": [6],
        "precision": "fp32",
        "task": {"n_train": 24, "n_dev": 2, "n_test": 3},
        "train": {"steps": 2, "batch_size": 2},
        "eval": {"batch_size": 4, "max_new_tokens": {"answer": 3, "cot": 4, "code": 4}},
        "tracking": {"mode": "disabled"},
        "arms": [
            {"name": "icl", "method": "icl", "k": 6},
            {"name": "many", "method": "icl", "k": "all"},
            {"name": "knn", "method": "icl", "k": 2, "demos": "knn"},
            {"name": "icft", "method": "lora", "train_k": 2},
        ],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache)]) == 0
    log = capsys.readouterr().out
    assert "[lab] cell" in log and "demos fit the context" not in log  # knn's 2 fit: no cut
    rows = [x for x in read_jsonl(out / "results.jsonl") if not x.get("probe")]
    assert {x["arm"] for x in rows} == {"icl", "many", "knn", "icft"}
    assert all(x["labelled_examples"] == 6 for x in rows)
    index = json.loads((out / "cells" / "knn__b6__d0" / "cell.json").read_text())["cell"][
        "demo_ids"
    ]
    assert len(index) == 6
    for p in read_jsonl(out / "cells" / "knn__b6__d0" / "predictions" / "prompted" / "test.jsonl"):
        assert len(p["demo_ids"]) == 2 and set(p["demo_ids"]) <= set(index)
        assert p["id"] not in p["demo_ids"]
    report = (out / "report" / "report.md").read_text()
    assert "break-even, prefix cached" in report and "retrieved (BM25) from 6" in report
    assert "icft" in report.split("## Compute")[1]
    paired = report.split("## Fine-tuning vs prompting")[1].split("## Compute")[0]
    assert re.search(r"\| icft @ 6 +\| icl +\| 6 / 6 +\| [+-]", paired)  # tested, equal budgets
    cell = json.loads((out / "cells" / "many__b6__d0" / "cell.json").read_text())
    m = cell["metrics"]["prompted/test"]
    assert m["prefix_tokens"] > 0 and m["flops_per_query_cached"] < m["flops_per_example"]


def test_context_cuts_knn_k_and_refuses_an_icft_input_that_cannot_fit(tiny_path):
    """The tiny model's context is 4096 characters (tokens): 150 arithmetic demos do not fit."""
    from lab.core.recipe import TaskCfg
    from lab.study.context import ContextFit
    from lab.tasks import build_task

    splits = build_task(TaskCfg(n_train=160, n_dev=2, n_test=3))
    arms = [
        {"name": "knn", "method": "icl", "k": 150, "demos": "knn"},
        {"name": "icft", "method": "lora", "train_k": 120},
    ]
    r = recipe(arms=arms, budgets=[150], seeds=[0])
    data = study_data(r, splits)
    fit = ContextFit(r, data, tiny_path)
    knn = plan_cell(r, data, plan_cells(r)[0], fit.fit_demos, fit.fit_retrieved)
    info = knn.describe()
    assert 0 < info["k"] < 150 and info["k_requested"] == 150 and info["demos_truncated"]
    index = list(knn.index)
    longest = sorted(index, key=lambda e: -fit.block_tokens(e, "answer"))[: info["k"]]
    assert len(fit.fit_demos(longest, r.arms[0])) == info["k"]  # the worst case fits
    with pytest.raises(LabError, match="train_k=120 demos can need .* lower train_k"):
        fit.check_in_context()
    small = recipe(arms=[{**arms[1], "train_k": 4}], budgets=[150], seeds=[0])
    ContextFit(small, study_data(small, splits), tiny_path).check_in_context()  # fits


def test_break_even_with_and_without_a_cached_prefix():
    from lab.core.compute import FlopCounter, break_even, cached_query_flops

    c = FlopCounter(body=100, head=10, attn=4)
    # a 50-token prompt of which 40 are a cached prefix, 2 new tokens
    assert cached_query_flops(c, 50, 2, 40) == c.forward(12, 3) + 4 * 12 * 40
    assert cached_query_flops(c, 50, 2, 0) == c.generate(50, 2)  # nothing cached: as before
    assert break_even(1000.0, 10.0, 0.0, 20.0) == 100  # 1000 FLOPs paid back 10 per query
    assert break_even(1000.0, 10.0, 400.0, 20.0) == 60  # the ICL arm's prefix is one-off too
    assert break_even(1000.0, 30.0, 0.0, 20.0) == float("inf")  # never
    assert break_even(100.0, 10.0, 200.0, 20.0) == 0  # cheaper from the first query on
    # cheaper up front but dearer per query (test-time training: its adapter is paid per
    # query) is behind for good after a few queries: never paid back, not "at once"
    assert break_even(100.0, 30.0, 200.0, 20.0) == float("inf")
    assert break_even(0.0, 90.0, 0.0, 50.0) == float("inf")
