"""The mbpp_humaneval code-generation task (lab/tasks/mbpp.py) and test-based scoring
(eval/codegen.py): loading, the standard splits, prompts, and pass@1 through the sandbox."""

from __future__ import annotations

import pytest

from eval.codegen import program_for, run_tests
from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import Generation
from lab.core.errors import LabError
from lab.core.example import usable
from lab.core.prompts import STOP, prompt, target
from lab.core.recipe import TaskCfg
from lab.tasks import build_task
from lab.tasks.mbpp import clean_code

BIG = 10_000


def cfg(**kw) -> TaskCfg:
    return TaskCfg(**{"name": "mbpp_humaneval", "n_train": 8, "n_dev": 4, "n_test": 6, **kw})


@pytest.fixture(scope="module")
def full():
    return build_task(cfg(n_train=BIG, n_dev=BIG, n_test=BIG))


def test_standard_splits(full):
    sizes = {k: len(v) for k, v in full.items()}
    assert sizes == {"train": 374, "dev": 90, "test": 500, "ood_humaneval": 164, "demos_mbpp": 3}
    ids = {s: [e.meta["task_id"] for e in full[s]] for s in ("train", "dev", "test")}
    assert (min(ids["train"]), max(ids["train"])) == (601, 974)
    assert (min(ids["dev"]), max(ids["dev"])) == (511, 600)
    assert (min(ids["test"]), max(ids["test"])) == (11, 510)
    assert [e.meta["task_id"] for e in full["demos_mbpp"]] == [2, 3, 4]
    small = build_task(cfg())
    assert {k: len(v) for k, v in small.items()} == {
        "train": 8,
        "dev": 4,
        "test": 6,
        "ood_humaneval": 6,
        "demos_mbpp": 3,
    }
    assert {e.id for e in small["test"]} <= {e.id for e in full["test"]}


def test_prompts_and_targets(full):
    ex = full["test"][0]
    first_test = ex.meta["tests"].strip().splitlines()[0]
    assert ex.question.endswith(f"Your code should pass this test:\n{first_test}")
    assert prompt(ex).startswith("Question: ") and prompt(ex).endswith("\nAnswer:")
    for s in ("train", "ood_humaneval"):
        for e in full[s]:
            # a blank line ends a generated program: no reference program contains one
            assert "\n\n" not in target(e, "code") and "\r" not in e.program
    he = full["ood_humaneval"][0]
    assert he.question.startswith("from typing import List") and "def has_close" in he.question
    assert he.meta["tests"].rstrip().endswith(f"check({he.meta['entry_point']})")
    # only the code format has targets
    assert usable(full["train"], "code") == full["train"]
    assert usable(full["train"], "answer") == [] and usable(full["train"], "cot") == []


def test_clean_code():
    assert clean_code("def f(x):\r\n\treturn x  \r\n\r\n\r\nprint(f(1))") == (
        "def f(x):\n        return x\nprint(f(1))"
    )


def test_reference_solutions_pass_their_tests(full):
    """A sample of each split (all 1,131 take minutes on a shared CPU: 1 MBPP test problem,
    task 123, runs past a 10 s limit there; every other reference passes)."""
    for s in ("train", "test", "ood_humaneval", "demos_mbpp"):
        for ex in full[s][:: max(1, len(full[s]) // 6)]:
            res = run_tests(ex.program, ex.meta, timeout_s=20)
            assert res["passed"], (ex.id, res["error"])


def test_wrong_or_hostile_programs_fail_with_a_reason(full):
    ex = full["test"][0]
    assert run_tests("", ex.meta)["error"] == "empty generation"
    wrong = run_tests("def nothing():\n    return 0", ex.meta)
    assert not wrong["passed"] and "NameError" in wrong["error"]
    hang = run_tests("while True:\n    pass", ex.meta, timeout_s=1)
    assert not hang["passed"] and hang["error"]


def test_humaneval_body_or_full_function(full):
    he = full["ood_humaneval"][0]
    body = he.program.split('"""\n', 2)[-1]  # the canonical body after the docstring
    assert program_for(body, he.meta) == he.meta["code_prefix"] + body
    assert run_tests(body, he.meta, timeout_s=20)["passed"]
    whole = "def has_close_elements(numbers, threshold):\n    return True"
    assert program_for(whole, he.meta).endswith(whole)
    assert not run_tests(whole, he.meta, timeout_s=20)["passed"]  # redefined, then wrong


class _ScriptedLM:
    """Returns given generations: exercises scoring, not a model."""

    def __init__(self, texts):
        self.texts = list(texts)

    def generate(self, requests, desc=""):
        assert all(r.stop == tuple(STOP["code"]) for r in requests)
        return [Generation(t, 10, 5, "stop") for t in self.texts]


def test_evaluate_split_scores_by_tests(full):
    xs = full["test"][:2]
    gens = [xs[0].program, "def wrong():\n    pass"]
    preds, m = evaluate_split(_ScriptedLM(gens), xs, PromptSpec("code"), 64, gold_logprob=False)
    assert [p["correct"] for p in preds] == [True, False]
    assert preds[0]["pred"] == "pass" and preds[1]["error"]
    assert m["exact_match"] == 0.5


def test_answer_format_arms_are_refused(tmp_path):
    from lab.core.recipe import parse_recipe
    from lab.study.plan import validate

    r = parse_recipe(
        {
            "name": "x",
            "model": "tiny-random",
            "task": cfg().model_dump(),
            "arms": [{"name": "a", "method": "lora", "format": "answer"}],
        }
    )
    with pytest.raises(LabError, match=r"has targets for \['code'\]"):
        validate(r, build_task(cfg()))


def test_missing_file_is_a_lab_error(tmp_path):
    with pytest.raises(LabError, match="mbpp.jsonl' not found"):
        build_task(cfg(data_dir=str(tmp_path)))
