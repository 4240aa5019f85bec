"""Fairness is a property of the runner: cells, budgets, seeds and shared data; labelled-data
parity (every row's labelled examples, selection inside the budget, pairing only at equal
labelled data on the same examples)."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from lab.core import fairness
from lab.core.errors import LabError
from lab.core.io import atomic_write_jsonl, read_jsonl
from lab.core.recipe import parse_recipe
from lab.report import analysis
from lab.study.cli import main
from lab.study.plan import cell_data, plan_cells, study_pool, validate
from lab.study.run import run_study
from lab.study.store import same_study
from lab.tasks import build_task

ARMS = [
    {"name": "zs", "method": "icl"},
    {"name": "icl", "method": "icl", "k": 8},
    {"name": "icl_cot", "method": "icl", "format": "cot", "k": 8},
    {"name": "lora", "method": "lora"},
    {"name": "full_cot", "method": "full", "format": "cot"},
]


def _recipe(**over):
    base = {"name": "f", "model": "tiny-random", "arms": ARMS, "task": {"n_train": 200}}
    return parse_recipe({**base, **over})


def test_cells_cover_arms_budgets_and_seeds_once():
    r = _recipe(seeds=[0, 1, 2], budgets=[4, 16, "full"])
    cells = plan_cells(r)
    keys = [c.key for c in cells]
    assert len(keys) == len(set(keys))
    assert sum(c.arm.name == "zs" for c in cells) == 1  # sees no data: seed/budget-free
    for arm in ("icl", "icl_cot", "lora", "full_cot"):
        got = {(c.budget, c.data_seed) for c in cells if c.arm.name == arm}
        assert got == {(b, s) for b in (4, 16, "full") for s in (0, 1, 2)}


def test_train_seeds_are_a_separate_axis_for_ft_only():
    r = _recipe(seeds=[0, 1], train_seeds=[7, 8, 9])
    cells = plan_cells(r)
    assert {c.train_seed for c in cells if c.arm.method != "icl"} == {7, 8, 9}
    assert {c.train_seed for c in cells if c.arm.method == "icl"} == {None}
    assert sum(c.arm.name == "lora" for c in cells) == 2 * 3


def test_demos_and_ft_data_are_the_same_examples_at_each_budget():
    r = _recipe(seeds=[0, 1, 2], budgets=[4, 16, "full"])
    pool = study_pool(r, build_task(r.task)["train"])
    cells = plan_cells(r)
    for seed in (0, 1, 2):
        for b in (4, 16, "full"):
            at = {c.arm.name: c for c in cells if c.data_seed == seed and c.budget == b}
            demos, _ = cell_data(r, pool, at["icl"])
            demos_cot, _ = cell_data(r, pool, at["icl_cot"])
            _, lora = cell_data(r, pool, at["lora"])
            _, full = cell_data(r, pool, at["full_cot"])
            ids = [e.id for e in demos]
            assert ids == [e.id for e in demos_cot] == [e.id for e in lora] == [e.id for e in full]
            assert len(ids) == (len(pool) if b == "full" else b)
    # different data seeds draw different examples
    a = cell_data(r, pool, next(c for c in cells if c.arm.name == "icl" and c.data_seed == 0))[0]
    b = cell_data(r, pool, next(c for c in cells if c.arm.name == "icl" and c.data_seed == 1))[0]
    assert [e.id for e in a] != [e.id for e in b]


def test_budgets_are_nested_so_curves_add_data():
    r = _recipe(budgets=[4, 16])
    pool = study_pool(r, build_task(r.task)["train"])
    small, big = (c for c in plan_cells(r) if c.arm.name == "lora" and c.data_seed == 0)
    s, g = cell_data(r, pool, small)[1], cell_data(r, pool, big)[1]
    assert [e.id for e in g[:4]] == [e.id for e in s]


# -- labelled-data parity (lab/core/fairness.py) ---------------------------------------------------
def test_select_defaults_to_last_which_touches_only_the_training_set():
    r = _recipe(budgets=[8])
    pool = study_pool(r, build_task(r.task)["train"])
    lora = next(c for c in plan_cells(r) if c.arm.name == "lora")
    cfg = r.train_for(lora.arm)
    assert cfg.select == "last"
    train, held_out = fairness.split_budget(cell_data(r, pool, lora)[1], cfg)
    assert len(train) == 8 and held_out == []


def test_best_dev_holds_out_its_selection_examples_inside_the_budget():
    r = _recipe(budgets=[8, 32], train={"select": "best_dev"})
    pool = study_pool(r, build_task(r.task)["train"])
    cells = plan_cells(r)
    for b in (8, 32):
        at = {c.arm.name: c for c in cells if c.budget == b and c.data_seed == 0}
        demos = cell_data(r, pool, at["icl"])[0]
        train, held_out = fairness.split_budget(cell_data(r, pool, at["lora"])[1], r.train)
        assert len(held_out) == b // 4 and len(train) == b - b // 4
        assert [e.id for e in train + held_out] == [e.id for e in demos]  # the same b examples
        assert fairness.count_labelled(train, held_out) == fairness.count_labelled(demos) == b


def test_best_dev_needs_two_examples_in_every_budget():
    r = _recipe(budgets=[1, 8], train={"select": "best_dev"})
    with pytest.raises(LabError, match="budget of 1 example.*train.select: last"):
        validate(r, build_task(r.task))
    validate(_recipe(budgets=[1, 8]), build_task(r.task))  # select: last trains on 1


def test_a_best_dev_study_of_a_lab_that_selected_on_dev_is_not_resumed():
    r = _recipe(train={"select": "best_dev"})
    stored = {"recipe": r.model_dump(mode="json"), "recipe_hash": r.hash()}
    assert not same_study(stored, r)  # selected on the task's dev split: other results
    assert same_study({**stored, "selection": fairness.SELECTION}, r)
    last = _recipe()
    assert same_study({"recipe": last.model_dump(mode="json"), "recipe_hash": last.hash()}, last)


def test_labelled_count_is_of_distinct_examples():
    r = _recipe()
    pool = study_pool(r, build_task(r.task)["train"])
    assert fairness.count_labelled(pool[:8], pool[4:10]) == 10
    assert fairness.count_labelled() == 0


# -- the report's pairing, on a planted study directory ---------------------------------------
SPLITS = ["test", "ood_a"]


def _plant(out: Path, cell: str, variant: str, ids: list[str], correct: list[int]) -> None:
    for split in SPLITS:
        rows = [{"id": f"{split}-{i}", "correct": c} for i, c in zip(ids, correct, strict=True)]
        atomic_write_jsonl(out / "cells" / cell / "predictions" / variant / f"{split}.jsonl", rows)


def _row(cell, arm, method, labelled, **kw):
    variant = "prompted" if method == "icl" else "last"
    return {
        "cell": cell,
        "arm": arm,
        "method": method,
        "budget": 8,
        "variant": variant,
        "selected": None if method == "icl" else "last",
        "format": "answer",
        "k": 8 if method == "icl" else 0,
        "labelled_examples": labelled,
        **kw,
    }


def _planted_study(tmp_path, ft_labelled=8, icl_ids=None, ft_format="answer"):
    ids = [str(i) for i in range(40)]
    _plant(tmp_path, "lora__b8__d0", "last", ids, [1] * 30 + [0] * 10)
    _plant(tmp_path, "icl__b8__d0", "prompted", icl_ids or ids, [1] * 10 + [0] * 30)
    rows = [
        _row("lora__b8__d0", "lora", "lora", ft_labelled, format=ft_format),
        _row("icl__b8__d0", "icl", "icl", 8),
    ]
    r = parse_recipe(
        {
            "name": "p",
            "model": "tiny-random",
            "budgets": [8],
            "arms": [{"name": "icl", "method": "icl", "k": 8}, {"name": "lora", "method": "lora"}],
        }
    )
    scores = analysis.Scores(tmp_path, rows)
    return r, scores, analysis.matched_pairs(r, scores)


def test_pairs_with_equal_labelled_examples_are_tested(tmp_path):
    r, scores, pairs = _planted_study(tmp_path)
    table, results = analysis.paired_table(pairs, scores, SPLITS)
    assert results[0]["equal"] and results[0]["id"]["diff"] == pytest.approx(0.5)
    assert table.rows[0][2] == "8 / 8" and "p=" in table.rows[0][3]
    assert "8 labelled examples each" in analysis.headline(r, results)


def test_pairs_with_richer_targets_say_so(tmp_path):
    _r, scores, pairs = _planted_study(tmp_path, ft_format="code")
    table, results = analysis.paired_table(pairs, scores, SPLITS)
    assert results[0]["equal"] and table.rows[0][2] == "8 / 8 (code vs answer targets)"


def test_pairs_with_unequal_labelled_examples_say_so(tmp_path):
    r, scores, pairs = _planted_study(tmp_path, ft_labelled=48)  # e.g. 8 train + 40 dev
    table, results = analysis.paired_table(pairs, scores, SPLITS)
    assert table.rows[0][2:] == ["48 / 8", *["unequal budgets"] * 3]
    assert not results[0]["equal"] and "id" not in results[0]
    assert "unequal budgets: no paired verdict" in analysis.headline(r, results)


def test_paired_columns_must_be_the_same_examples(tmp_path):
    other = [str(i) for i in range(1, 41)]  # as many predictions, one id differs
    _r, scores, pairs = _planted_study(tmp_path, icl_ids=other)
    with pytest.raises(LabError, match="not the same examples.*1 ids only in the first"):
        analysis.paired_table(pairs, scores, SPLITS)


def test_replicates_must_be_the_same_examples(tmp_path):
    ids = [str(i) for i in range(6)]
    _plant(tmp_path, "icl__b8__d0", "prompted", ids, [1] * 6)
    _plant(tmp_path, "icl__b8__d1", "prompted", ids[:5] + ["x"], [1] * 6)
    scores = analysis.Scores(
        tmp_path, [_row("icl__b8__d0", "icl", "icl", 8), _row("icl__b8__d1", "icl", "icl", 8)]
    )
    with pytest.raises(LabError, match="icl__b8__d0 and icl__b8__d1"):
        scores.matrix(("icl", 8), ["test"])


# -- end to end on the tiny model --------------------------------------------------------------
def _tiny(tmp_path, **over):
    recipe = {
        "name": "fair",
        "model": "tiny-random",
        "seeds": [0],
        "budgets": [4],
        "task": {"n_train": 32, "n_dev": 4, "n_test": 3},
        "train": {"steps": 2, "batch_size": 2, "eval_every": 1, "select": "best_dev"},
        "eval": {
            "batch_size": 4,
            "max_new_tokens": {"answer": 4, "cot": 6, "code": 6},
            "ft_then_icl_k": 6,
        },
        "tracking": {"mode": "disabled"},
        "arms": [{"name": "icl", "method": "icl", "k": 4}, {"name": "lora", "method": "lora"}],
        **over,
    }
    return parse_recipe(recipe)


def test_every_row_counts_its_labelled_examples_and_best_dev_stays_in_budget(tmp_path, tiny_cache):
    out = tmp_path / "out"
    rows = run_study(_tiny(tmp_path), out, progress=False, cache_dir=str(tiny_cache))
    icl = json.loads((out / "cells" / "icl__b4__d0" / "cell.json").read_text())
    lora = json.loads((out / "cells" / "lora__b4__d0" / "cell.json").read_text())
    demo_ids = icl["cell"]["demo_ids"]
    assert lora["train"]["train_ids_head"] + lora["train"]["held_out_ids"] == demo_ids
    assert lora["cell"]["n_train"] == 3 and lora["cell"]["n_select"] == 1
    assert lora["train"]["dev_losses"]  # selected on the held-out example
    assert rows and all("labelled_examples" in r for r in rows)
    got = {(r["arm"], r["variant"]): r["labelled_examples"] for r in rows}
    assert got[("icl", "prompted")] == got[("lora", "best")] == 4
    assert got[("lora", "best+icl6")] == 6  # the probe's 6 demos include the budget's 4
    if ("lora", "last") in got:
        assert got[("lora", "last")] == 4
    md = (out / "report" / "report.md").read_text()
    assert "4 = 3 train + 1 held out" in md and "## Fairness" in md
    assert "| lora @ 4   | icl    | 4 / 4" in md


def test_resume_recomputes_predictions_stored_for_other_examples(tmp_path, tiny_cache):
    r = _tiny(
        tmp_path,
        arms=[{"name": "lora", "method": "lora"}],
        budgets=None,
        train={"steps": 3, "batch_size": 2},
        eval={"batch_size": 4},
    )
    out = tmp_path / "out"
    run_study(r, out, progress=False, cache_dir=str(tiny_cache))
    cell = out / "cells" / "lora__d0"
    path = cell / "predictions" / "last" / "ood_steps.jsonl"
    stale = read_jsonl(path)
    stale[0]["id"] = "ood_steps-from-another-task-build"
    atomic_write_jsonl(path, stale)
    (cell / "cell.json").unlink()  # an interrupted cell: its evaluation resumes per split
    run_study(r, out, progress=False, cache_dir=str(tiny_cache))
    split = build_task(r.task)["ood_steps"]
    assert fairness.same_ids(read_jsonl(path), split)


def test_every_evaluated_checkpoint_must_change_the_outputs(tmp_path, tiny_cache, monkeypatch):
    """With best != last, both are evaluated; a checkpoint whose adapter was not applied
    (here: the last one loads as the base model) stops the run, whichever is selected."""
    import train.finetune as ft
    from lab.study.models import load_model

    real_finetune, real_load, last = ft.finetune, ft.load_finetuned, []

    def finetune(*args, **kwargs):
        res = real_finetune(*args, **kwargs)
        last.append(res.checkpoint)
        best = Path(res.checkpoint).parent / "best_copy"
        shutil.copytree(res.checkpoint, best)
        return replace(res, best_checkpoint=str(best))

    def load_finetuned(base_path, checkpoint, method, precision="fp32", **kw):
        if checkpoint in last:  # the base model, at the study's precision
            return load_model(base_path, precision=precision)
        return real_load(base_path, checkpoint, method, precision, **kw)

    monkeypatch.setattr(ft, "finetune", finetune)
    monkeypatch.setattr(ft, "load_finetuned", load_finetuned)
    r = _tiny(
        tmp_path, arms=[{"name": "lora", "method": "lora"}], budgets=None, eval={"batch_size": 4}
    )
    with pytest.raises(RuntimeError, match="were not applied"):
        run_study(r, tmp_path / "out", progress=False, cache_dir=str(tiny_cache))
    assert last  # trained, then the unapplied last checkpoint was caught


def test_cli_best_dev_budget_error_is_one_line(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps(
            {
                "name": "x",
                "model": "tiny-random",
                "budgets": [1],
                "train": {"select": "best_dev"},
                "arms": [{"name": "lora", "method": "lora"}],
            }
        )
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.select: last" in err
    assert not (tmp_path / "out").exists()


def test_the_ft_then_icl_line_is_the_matched_k_shot_arm(tmp_path):
    """The FT-then-ICL plot's "base model k-shot" line: the prompted arm with the probe's k
    pool demos in the FT arm's format (else answer), never just the first prompted arm."""
    rows = [
        {**_row("zs__d0", "zero_shot", "icl", 0), "k": 0, "budget": None},
        {**_row("icl2__d0", "icl2", "icl", 2), "k": 2, "budget": None},
        {**_row("cot2__d0", "cot2", "icl", 2), "k": 2, "budget": None, "format": "cot"},
        {**_row("wei2__d0", "wei2", "icl", 2), "k": 2, "budget": None, "demos_fixed": True},
    ]
    scores = analysis.Scores(tmp_path, rows)
    assert analysis.matched_kshot(scores, "answer", 2) == ("icl2", None)
    assert analysis.matched_kshot(scores, "cot", 2) == ("cot2", None)
    assert analysis.matched_kshot(scores, "code", 2) == ("icl2", None)  # else the answer format
    assert analysis.matched_kshot(scores, "answer", 4) is None  # no such arm: no line
