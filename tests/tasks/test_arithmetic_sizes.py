"""The arithmetic task's size parameters (`params.digits`, `params.steps`): the defaults give
the original examples bit for bit; other values give the stated ranges with no leaks; a bad
value is one LabError line naming the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from digests import split_digest

from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.recipe import TaskCfg, load_recipe
from lab.study.cli import main
from lab.tasks import build_task
from lab.tasks.arithmetic import ArithmeticConfig, build_arithmetic, describe

REPO = Path(__file__).resolve().parents[2]
EVAL = ["test", "ood_digits", "ood_steps", "ood_phrasing"]
LINE_RE = re.compile(r"s(\d+) = (\d+|s\d+) ([-+*]) (\d+)")


def _numbers(ex: Example) -> tuple[int, list[tuple[str, int]]]:
    """(start, [(op, operand)]) parsed from the program, independently of the module."""
    start, steps = None, []
    for k, line in enumerate(ex.program.splitlines()[:-1], 1):
        m = LINE_RE.fullmatch(line)
        assert m and int(m.group(1)) == k, line
        if k == 1:
            start = int(m.group(2))
        steps.append((m.group(3), int(m.group(4))))
    assert start is not None
    return start, steps


def _arith(n_train: int = 300, n_dev: int = 20, n_test: int = 64, **params) -> dict:
    cfg = TaskCfg(
        name="arithmetic",
        seed=0,
        n_train=n_train,
        n_dev=n_dev,
        n_test=n_test,
        params={"ops": "+-", **params},
    )
    return build_task(cfg)


# ------------------------------------------------------------------ defaults unchanged

# sha256 of every split's examples (ids, questions, answers, rationales, programs, meta), taken
# from the generator before it had size parameters: the defaults must reproduce them exactly.
OLD_DIGESTS = [
    (ArithmeticConfig(), "6ffb3fbacdad048704cff04f7b5a14f8c27826ec6b22e468f2ec4492e3296a74"),
    (
        ArithmeticConfig(seed=0, n_train=2000, n_dev=40, n_test=64, ops="+-"),
        "d01556a29aa2b97065954b5ea7703b0598580d4d70df56e92566d404a6fd05ff",
    ),
    (
        ArithmeticConfig(seed=3, n_train=300, n_dev=40, n_test=50),
        "fe41a028fe5609e9a65fab73faf18da724f2dd6fba94653a66ae9ffcbdb31cfc",
    ),
]


@pytest.mark.parametrize(("cfg", "digest"), OLD_DIGESTS)
def test_default_build_equals_the_old_generator(cfg: ArithmeticConfig, digest: str) -> None:
    assert split_digest(build_arithmetic(cfg)) == digest


def test_quickstart_task_as_declared_is_unchanged() -> None:
    """The shipped task (YAML spec + hook) at the quickstart recipe's task settings."""
    cfg = TaskCfg(
        name="arithmetic", seed=0, n_train=2000, n_dev=40, n_test=16, params={"ops": "+-"}
    )
    want = "f88de9658fe7f1ae9631b3842bc8ce83119b0c11945b028fb386796045dc1158"
    assert split_digest(build_task(cfg)) == want
    explicit = cfg.model_copy(update={"params": {"ops": "+-", "digits": 2, "steps": 2}})
    assert split_digest(build_task(explicit)) == want


def test_describe_states_the_ranges() -> None:
    d = describe()
    assert "1..99" in d["train"] and "100..999" in d["ood_digits"] and "3-4 steps" in d["ood_steps"]
    d1 = describe(digits=1, steps=1)
    assert "1 step " in d1["train"] and "1..9 " in d1["train"]
    assert "10..99" in d1["ood_digits"] and "2-3 steps" in d1["ood_steps"]


# ------------------------------------------------------------------ new sizes


@pytest.mark.parametrize(("digits", "lo", "hi"), [(1, 1, 9), (3, 1, 999)])
def test_digits_sets_id_and_ood_ranges(digits: int, lo: int, hi: int) -> None:
    out = _arith(digits=digits)
    olo, ohi = 10**digits, 10 ** (digits + 1) - 1
    for name, exs in out.items():
        rng = (olo, ohi) if name == "ood_digits" else (lo, hi)
        seen = set()
        for ex in exs:
            start, steps = _numbers(ex)
            assert rng[0] <= start <= rng[1], (name, ex.question)
            for op, n in steps:
                assert 2 <= n <= 9 if op == "*" else rng[0] <= n <= rng[1], (name, ex.question)
            seen.add(int(ex.meta["digits"]))
            assert ex.answer == str(_values(ex)[len(steps)]), ex.question
        if name == "ood_digits":
            assert seen == {digits + 1}
        else:
            assert max(seen) <= digits


def _values(ex: Example) -> dict[int, int]:
    start, steps = _numbers(ex)
    vals, v = {}, start
    for k, (op, n) in enumerate(steps, 1):
        v = {"+": v + n, "-": v - n, "*": v * n}[op]
        assert v >= 0
        vals[k] = v
    return vals


def test_steps_sets_chain_lengths_and_renders_one_step() -> None:
    out = _arith(steps=1)
    for name, exs in out.items():
        lengths = {int(ex.meta["steps"]) for ex in exs}
        assert lengths == ({2, 3} if name == "ood_steps" else {1}), name
    templates = set()
    for ex in out["train"] + out["ood_phrasing"]:
        templates.add(ex.meta["template"])
        assert "  " not in ex.question and ", and" not in ex.question, ex.question
        start, steps = _numbers(ex)
        assert [int(x) for x in re.findall(r"\d+", ex.question)] == [start, steps[0][1]]
        assert ex.answer == str(_values(ex)[1]) and ex.rationale.endswith(f"is {ex.answer}.")
    assert templates == {"id_start", "id_take", "id_begin", "ood_story", "ood_compute"}
    begin = next(ex.question for ex in out["train"] if ex.meta["template"] == "id_begin")
    assert re.fullmatch(r"Begin at \d+ and (add|subtract) \d+\. What is the final number\?", begin)


@pytest.mark.parametrize("params", [{"digits": 1}, {"steps": 1}, {"digits": 1, "steps": 3}])
def test_no_leaks_and_deterministic_at_new_sizes(params: dict) -> None:
    out = _arith(**params)
    assert split_digest(out) == split_digest(_arith(**params))
    sigs = {
        name: [(_numbers(ex)[0], tuple(_numbers(ex)[1])) for ex in exs] for name, exs in out.items()
    }
    for name, s in sigs.items():
        assert len(set(s)) == len(s), name
    taken = set(sigs["train"])
    assert taken.isdisjoint(sigs["dev"])
    taken |= set(sigs["dev"])
    for name in EVAL:
        assert taken.isdisjoint(sigs[name]), name
        taken |= set(sigs[name])


def test_new_sizes_change_the_examples_but_not_the_ids() -> None:
    default, small = _arith(), _arith(digits=1)
    assert [e.id for e in default["test"]] == [e.id for e in small["test"]]
    assert [e.question for e in default["test"]] != [e.question for e in small["test"]]


# ------------------------------------------------------------------ bad values


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"digits": 0}, r"params\.digits=0 not understood; give a whole number from 1 to 6"),
        ({"digits": 7}, r"params\.digits=7 not understood"),
        ({"digits": "2"}, r"params\.digits='2' not understood"),
        ({"digits": True}, r"params\.digits=True not understood"),
        ({"steps": 0}, r"params\.steps=0 not understood; give a whole number from 1 to 6"),
        ({"steps": 1.5}, r"params\.steps=1\.5 not understood"),
        ({"ops": 5}, r"params\.ops=5 not understood; give a string of operations"),
        ({"digit": 1}, r"unknown param 'digit' \(did you mean 'digits'\?\)"),
    ],
)
def test_bad_size_params_are_one_line_lab_errors(params: dict, message: str) -> None:
    with pytest.raises(LabError, match=message) as e:
        _arith(**params)
    assert "\n" not in str(e.value)


def test_too_few_distinct_problems_names_the_fix() -> None:
    # 1 digit, 1 step, + and -: 126 distinct problems, fewer than train + dev + test + phrasing
    with pytest.raises(LabError, match=r"could not sample 64 unique .* lower task\.n_train") as e:
        _arith(n_train=32, n_dev=8, digits=1, steps=1)
    assert "\n" not in str(e.value)


def test_bad_digits_in_a_recipe_exits_2_and_writes_nothing(
    tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    recipe = {
        "name": "bad",
        "model": "tiny-random",
        "task": {"n_train": 16, "n_dev": 4, "n_test": 3, "params": {"digits": 9}},
        "arms": [{"name": "zs", "method": "icl"}],
        "tracking": {"mode": "disabled"},
    }
    path, out = tmp_path / "bad.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(recipe))
    code = main(["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "params.digits=9 not understood; give a whole number from 1 to 6" in err
    assert not out.exists()


def test_quickstart_demo_profile_builds_64_per_split_and_the_study_keeps_its_task() -> None:
    path = REPO / "recipes" / "quickstart.yaml"
    full, demo = load_recipe(path), load_recipe(path, profile="demo")
    assert full.task.params == {"ops": "+-"}  # the study's task is the 2-digit, 2-step one
    assert demo.task.params["digits"] == 1 and demo.task.params["steps"] == 1
    out = build_task(demo.task)
    assert all(len(out[name]) >= 64 for name in EVAL)
    assert len(out["train"]) >= max(demo.budgets)
    assert {int(ex.meta["digits"]) for ex in out["ood_digits"]} == {2}
    assert {int(ex.meta["steps"]) for ex in out["ood_steps"]} == {2, 3}
