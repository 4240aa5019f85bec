"""Fixed demo sets (arm key `demos: wei`): the first k of the task's split `demos_<name>`,
the same for every seed and budget, never drawn from the budgeted pool."""

from __future__ import annotations

import pytest

from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.recipe import parse_recipe
from lab.study.plan import cell_data, plan_cells, study_pool, uses_data, validate


def ex(split: str, i: int) -> Example:
    return Example(f"{split}-{i}", f"q{split}{i}", str(i), f"r {i}. The answer is {i}.", "")


SPLITS = {
    "train": [ex("train", i) for i in range(20)],
    "dev": [ex("dev", i) for i in range(2)],
    "test": [ex("test", i) for i in range(3)],
    "demos_wei": [ex("demos_wei", i) for i in range(8)],
}


def recipe(**arm):
    return parse_recipe({
        "name": "x", "model": "tiny-random", "seeds": [0, 1], "budgets": [4, 8],
        "arms": [{"name": "fixed", "method": "icl", "format": "cot", "k": 8, "demos": "wei",
                  **arm},
                 {"name": "pool", "method": "icl", "format": "cot", "k": 8},
                 {"name": "ft", "method": "lora", "format": "cot"}],
    })  # fmt: skip


def test_fixed_demos_are_the_set_not_the_pool_and_ignore_seeds_and_budgets():
    r = recipe()
    pool = study_pool(r, SPLITS["train"])
    cells = plan_cells(r)
    fixed = [c for c in cells if c.arm.name == "fixed"]
    assert len(fixed) == 1 and fixed[0].budget is None  # one cell: seeds/budgets do not apply
    assert not uses_data(fixed[0].arm)
    demos, data = cell_data(r, pool, fixed[0], SPLITS)
    assert [d.id for d in demos] == [f"demos_wei-{i}" for i in range(8)] and data == []
    for c in cells:
        if c.arm.name != "fixed":
            d, t = cell_data(r, pool, c, SPLITS)
            assert all(x.id.startswith("train-") for x in d + t)  # pool arms unchanged
    assert len([c for c in cells if c.arm.name == "pool"]) == 4  # 2 seeds x 2 budgets


def test_k_below_the_set_takes_its_first_k():
    r = recipe(k=3)
    c = next(c for c in plan_cells(r) if c.arm.name == "fixed")
    assert [d.id for d in cell_data(r, [], c, SPLITS)[0]] == [f"demos_wei-{i}" for i in range(3)]


def test_unknown_or_too_small_fixed_set_is_a_lab_error():
    with pytest.raises(LabError, match=r"fixed set 'gsm', which has 0.*\['wei'\]"):
        validate(recipe(demos="gsm"), SPLITS)
    with pytest.raises(LabError, match="k=9 demos of the fixed set 'wei', which has 8"):
        validate(recipe(k=9), SPLITS)


@pytest.mark.parametrize("arm", [{"method": "lora"}, {"k": 0}])
def test_demos_needs_a_k_shot_icl_arm(arm):
    with pytest.raises(LabError, match="`demos` .* needs an ICL arm with k > 0"):
        recipe(**arm)
