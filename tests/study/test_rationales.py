"""Self-written rationales (`format: cot_self`): kept only when correct (the task's own
scoring, CoT extraction), the budget counted exactly (every answer read), never a query among
the demos or training inputs, written once per (model, seed, budget) and reused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from eval.answers import score_generation
from eval.lm import LM
from lab.core import fairness
from lab.core.example import Example
from lab.core.io import atomic_write_json
from lab.core.layout import StudyDir
from lab.core.recipe import parse_recipe
from lab.study.plan import cell_data, plan_cell, plan_cells, study_data
from lab.study.rationales import (
    as_generated,
    keep_correct,
    rationale_text,
    with_rationales,
    write_rationales,
)

FINGERPRINT = "f" * 16


def _recipe():
    return parse_recipe(
        {
            "name": "r",
            "model": "tiny-random",
            "task": {"n_train": 64, "n_dev": 8, "n_test": 6},
            "seeds": [0],
            "budgets": [8],
            "arms": [
                {"name": "icl_self", "method": "icl", "format": "cot_self", "k": 8},
                {"name": "lora_self", "method": "lora", "format": "cot_self"},
            ],
        }
    )


def _runner(recipe, data):
    def no_model():
        raise AssertionError("the stored rationales should have been reused")

    base = SimpleNamespace(resolved=SimpleNamespace(fingerprint=FINGERPRINT), load=no_model)
    return SimpleNamespace(
        recipe=recipe,
        data=data,
        base=base,
        progress=False,
        acc=SimpleNamespace(is_main_process=True),
        log=lambda *_: None,
        fit_demos=None,
    )


def _written(examples, correct):
    """Stored rationales: example i correct when correct(i); the 3rd correct one cut by
    the length limit (not kept)."""
    out, n_ok = [], 0
    for i, ex in enumerate(examples):
        ok = correct(i)
        n_ok += ok
        gen = f"We compute it.\nThe answer is {ex.answer if ok else 'x'}."
        stopped = "length" if ok and n_ok == 3 else "stop"
        out.append(
            {"id": ex.id, "generation": gen, "pred": None, "correct": ok, "stopped": stopped}
        )
    return out


@pytest.fixture
def study(tmp_path, splits):
    recipe = _recipe()
    data = study_data(recipe, splits)
    return recipe, data, StudyDir(tmp_path)


def _store(recipe, data, sd, correct):
    cell = plan_cells(recipe)[0]
    budget, _ = cell_data(recipe, data.pool, cell, data.splits)
    written = _written(budget, correct)
    path = sd.cell(cell.key).rationales("d0__n8")
    atomic_write_json(
        path, {"ids": [e.id for e in budget], "model_fingerprint": FINGERPRINT, "written": written}
    )
    return budget, written


def test_kept_only_when_correct_and_complete():
    exs = [Example(f"e{i}", f"q{i}", str(i), "", "") for i in range(4)]
    written = _written(exs, lambda i: i != 1)  # e0, e2 correct; e3 the 3rd correct: cut
    written[3]["stopped"] = "length"
    kept = keep_correct(exs, written)
    assert [k.id for k in kept] == ["e0", "e2"]
    assert kept[0].rationale == "We compute it. The answer is 0."  # one line
    assert rationale_text("so 3 + 4 = 7", "7") == "so 3 + 4 = 7 The answer is 7."


def test_icl_demos_are_the_kept_rationales_and_the_budget_is_counted(study):
    recipe, data, sd = study
    budget, written = _store(recipe, data, sd, lambda i: i % 2 == 0)
    cells = plan_cells(recipe)
    icl = next(c for c in cells if c.arm.method == "icl")
    plan, info = with_rationales(
        _runner(recipe, data), plan_cell(recipe, data, icl), sd.cell(icl.key)
    )
    want = keep_correct(budget, written)
    assert [d.id for d in plan.demos] == [e.id for e in want] and len(want) == 3
    assert all(d.rationale == w.rationale for d, w in zip(plan.demos, want, strict=True))
    spec = plan.variants[0].spec
    assert spec.fmt == "cot" and spec.demos == plan.demos
    assert "The answer is" in spec.prefix
    assert info["rationales_written"] == 8 and info["rationales_kept"] == 3
    assert fairness.count_labelled(plan.used, spec.demos) == 8  # every answer read counts
    queries = {ex.id for s in data.eval_splits for ex in data.splits[s]}
    assert not queries & {d.id for d in plan.demos}


def test_ft_trains_on_the_kept_rationales_only(study):
    recipe, data, sd = study
    budget, written = _store(recipe, data, sd, lambda i: i < 5)
    ft = next(c for c in plan_cells(recipe) if c.arm.method == "lora")
    before = plan_cell(recipe, data, ft)
    plan, info = with_rationales(_runner(recipe, data), before, sd.cell(ft.key))
    kept = {e.id: e for e in keep_correct(budget, written)}
    assert [e.id for e in plan.train_set] == [e.id for e in before.train_set if e.id in kept]
    assert all(e.rationale == kept[e.id].rationale for e in plan.train_set)
    assert info["rationales_kept"] == 4 and plan.train is not None
    assert fairness.count_labelled(plan.used) == 8
    queries = {ex.id for s in data.eval_splits for ex in data.splits[s]}
    assert not queries & {e.id for e in plan.train_set}


def test_ft_with_nothing_kept_is_the_untrained_base_model(study):
    recipe, data, sd = study
    _store(recipe, data, sd, lambda i: False)
    ft = next(c for c in plan_cells(recipe) if c.arm.method == "lora")
    plan, info = with_rationales(
        _runner(recipe, data), plan_cell(recipe, data, ft), sd.cell(ft.key)
    )
    assert plan.train is None and plan.train_set == () and plan.variants[0].spec.demos == ()
    assert info["trained"] is False and info["rationales_kept"] == 0
    assert fairness.count_labelled(plan.used) == 8


def test_stored_rationales_of_another_model_are_not_reused(study):
    recipe, data, sd = study
    _store(recipe, data, sd, lambda i: True)
    runner = _runner(recipe, data)
    runner.base.resolved.fingerprint = "another-model"
    icl = plan_cells(recipe)[0]
    with pytest.raises(AssertionError, match="should have been reused"):  # it tries to write
        with_rationales(runner, plan_cell(recipe, data, icl), sd.cell(icl.key))


def test_written_by_the_tiny_model_kept_only_when_its_scoring_says_correct(splits, tiny_model):
    model, tok = tiny_model
    exs = splits["train"][:4]
    written = write_rationales(LM(model, tok, 4, progress=False), exs, 8, 5.0, "write")
    assert [w["id"] for w in written] == [e.id for e in exs]
    for w, ex in zip(written, exs, strict=True):
        assert w["correct"] == score_generation(w["generation"], ex, "cot", True, 5.0)["passed"]
    ok = {w["id"] for w in written if w["correct"] and w["stopped"] != "length"}
    assert {k.id for k in keep_correct(exs, written)} == ok


def test_choice_tasks_are_generated_and_read_as_cot():
    ex = Example(
        "n1",
        "",
        "Yes",
        "",
        "",
        prompt="A. question: B? Yes or No? answer:",
        choices=(" Yes", " No"),
    )
    (gen,) = as_generated([ex])
    assert gen.choices == () and gen.extractor == "exact"
    assert score_generation("B follows from A, so the answer is yes.", gen, "cot", True, 5)[
        "passed"
    ]
    assert not score_generation("So the answer is No.", gen, "cot", True, 5)["passed"]


def test_the_study_prompt_style_and_formats_are_kept(tmp_path, splits):
    """A cot_self cell is prompted like every arm of its study: chat style, multi-turn
    demos and each of `eval.formats` (its variants were rebuilt in plain style and the
    default format only), the kept rationales as its demos; with nothing kept, an FT cell's
    untrained base model too."""
    recipe = parse_recipe(
        {
            **_recipe().model_dump(mode="json", exclude_unset=True),
            "prompt": {"style": "chat", "demos": "multi_turn"},
            "eval": {"formats": 2},
        }
    )
    data = study_data(recipe, splits)
    sd = StudyDir(tmp_path)
    budget, written = _store(recipe, data, sd, lambda i: i % 2 == 0)
    icl, ft = plan_cells(recipe)[:2]
    before = plan_cell(recipe, data, icl)
    plan, _ = with_rationales(_runner(recipe, data), before, sd.cell(icl.key))
    assert [v.name for v in plan.variants] == [v.name for v in before.variants]
    n_formats = len(recipe.prompt_formats())
    assert len(plan.variants) == n_formats > 1
    for v, b in zip(plan.variants, before.variants, strict=True):
        assert (v.spec.style, v.spec.turns) == ("chat", "multi_turn")
        assert v.spec.prompt_format == b.spec.prompt_format and v.spec.demos == plan.demos
    assert [d.id for d in plan.demos] == [e.id for e in keep_correct(budget, written)]
    _store(recipe, data, sd, lambda i: False)
    untrained, _ = with_rationales(
        _runner(recipe, data), plan_cell(recipe, data, ft), sd.cell(ft.key)
    )
    assert len(untrained.variants) == n_formats and untrained.train is None
    assert {v.spec.style for v in untrained.variants} == {"chat"}
    assert len({v.spec.prompt_format for v in untrained.variants}) == n_formats
