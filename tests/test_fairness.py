"""Fairness is a property of the runner: cells, budgets, seeds and shared data."""

from lab.recipe import parse_recipe
from lab.runner import cell_data, plan_cells, study_pool
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
