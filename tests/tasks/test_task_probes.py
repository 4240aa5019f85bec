"""Cross-task probes (lab/tasks/task_probes.py): the eval splits of another task of the lab,
built through the registry with that task's own seeded samples, one fixed prompt (k demos
from the probed task's train pool) shared by every arm; the mistakes a user can make."""

from __future__ import annotations

import pytest
from probe_cli import run_probe_study

from lab.core.errors import LabError
from lab.core.recipe import TaskCfg
from lab.tasks import build_task
from lab.tasks.probes import describe_probes, probe_family
from lab.tasks.task_probes import PROBE_POOL

GSM = {"n": 5, "k": 3, "splits": ["test", "ood_svamp"]}
NLI = {"n": 6, "splits": ["test", "ood_hans"]}


def mbpp(tasks: dict, seed: int = 0) -> dict:
    params = {"probes": {"tasks": tasks}}
    return build_task(
        TaskCfg(name="mbpp_humaneval", seed=seed, n_train=8, n_dev=2, n_test=2, params=params)
    )


@pytest.fixture(scope="module")
def splits():
    return mbpp({"gsm8k": GSM, "mnli_hans": NLI})


def test_probe_splits_follow_the_task_splits_named_and_sized(splits):
    probes = [s for s in splits if s.startswith("probe_")]
    assert probes == [
        "probe_gsm8k_test",
        "probe_gsm8k_ood_svamp",
        "probe_mnli_hans_test",
        "probe_mnli_hans_ood_hans",
    ]
    assert [len(splits[s]) for s in probes] == [5, 5, 6, 6]
    assert list(splits)[:5] == ["train", "dev", "test", "ood_humaneval", "demos_mbpp"]
    for s in probes:
        assert {probe_family(s)} == {x.meta["probe"] for x in splits[s]}
        assert all(x.id.startswith(f"{s}-") and x.meta["split"] == s for x in splits[s])
    # scored as the probed task scores them: NLI by its choices, GSM8K by its number
    assert all(x.choices == (" Yes", " No") for x in splits["probe_mnli_hans_ood_hans"])
    assert all(x.meta["heuristic"] for x in splits["probe_mnli_hans_ood_hans"])
    assert all(x.answer and not x.choices for x in splits["probe_gsm8k_test"])
    assert "3 demos from gsm8k train" in describe_probes(splits)["probe_gsm8k_test"]


def test_probe_examples_are_the_probed_tasks_own_sample(splits):
    """Same seed, n_test = n: the probed task's own study at that size evaluates the same
    problems (its splits are seeded prefixes), so the numbers compare."""
    own = build_task(TaskCfg(name="gsm8k", seed=0, n_train=8, n_dev=2, n_test=5))
    for s in ("test", "ood_svamp"):
        got = [
            (x.id.removeprefix("probe_gsm8k_"), x.question, x.answer)
            for x in splits[f"probe_gsm8k_{s}"]
        ]
        assert got == [(x.id, x.question, x.answer) for x in own[s]]


def test_one_fixed_prompt_from_the_probed_train_pool(splits):
    gsm = splits["probe_gsm8k_test"] + splits["probe_gsm8k_ood_svamp"]
    demos = gsm[0].meta["demos"]
    assert len(demos) == 3 and all(x.meta["demos"] is demos for x in gsm)  # one tuple
    assert all(x.meta["demo_ids"] == [d.id for d in demos] for x in gsm)
    train = build_task(TaskCfg(name="gsm8k", n_train=PROBE_POOL, n_dev=0, n_test=1))["train"]
    by_id = {x.id: x for x in train}
    assert all(by_id[d.id] == d for d in demos)  # from gsm8k's train pool, unchanged
    eval_q = {x.question for x in gsm}
    assert not eval_q & {d.question for d in demos}
    assert all(x.meta["probe_format"] == "answer" for x in gsm)
    assert splits["probe_mnli_hans_test"][0].meta["demos"] == ()  # k = 0
    # the demos are a seeded draw: another seed, other demos; the same seed, the same ones
    again = mbpp({"gsm8k": GSM})["probe_gsm8k_test"][0].meta["demo_ids"]
    other = mbpp({"gsm8k": {**GSM, "seed": 1}})["probe_gsm8k_test"][0].meta["demo_ids"]
    assert again == gsm[0].meta["demo_ids"] and other != again


def test_defaults_every_eval_split_and_the_tasks_own_format():
    s = build_task(
        TaskCfg(
            name="arithmetic",
            n_train=8,
            n_dev=2,
            n_test=2,
            params={
                "ops": "+-",
                "probes": {"tasks": {"rte_hans": {"n": 3}, "mbpp_humaneval": {"n": 2, "k": 1}}},
            },
        )
    )
    probes = [x for x in s if x.startswith("probe_")]
    assert probes == [
        "probe_rte_hans_test",
        "probe_rte_hans_ood_hans",
        "probe_mbpp_humaneval_test",
        "probe_mbpp_humaneval_ood_humaneval",
    ]
    he = s["probe_mbpp_humaneval_ood_humaneval"][0]
    assert he.meta["probe_format"] == "code" and "check(" in he.meta["tests"]
    assert s["probe_rte_hans_test"][0].meta["probe_format"] == "answer"


@pytest.mark.parametrize(
    ("split", "family"),
    [
        ("probe_bbh_date_understanding", "bbh"),
        ("probe_bbh", "bbh"),
        ("probe_gsm8k_test", "gsm8k"),
        ("probe_gsm8k", "gsm8k"),
        ("probe_mnli_hans_ood_hans", "mnli_hans"),
        ("probe_mnli_hans_test", "mnli_hans"),
        ("probe_mnli_hans", "mnli_hans"),
        ("probe_qqp_paws_ood_paws_qqp", "qqp_paws"),
        ("probe_mbpp_humaneval_ood_humaneval", "mbpp_humaneval"),
    ],
)
def test_probe_family_of_task_names_with_underscores(split, family):
    assert probe_family(split) == family


@pytest.mark.parametrize(
    ("tasks", "msg"),
    [
        ({"gsm8": {}}, r"unknown task 'gsm8' \(did you mean 'gsm8k'\?\); known tasks: arithmetic"),
        (
            {"gsm8k": {"splits": ["ood_svam"]}},
            r"no eval split 'ood_svam' \(did you mean "
            r"'ood_svamp'\?\); its eval splits: test, ood_svamp",
        ),
        ({"gsm8k": {"splits": ["train"]}}, "no eval split 'train'"),
        (
            {"rte_hans": {"k": 3000}},
            r"k=3000 is larger than rte_hans's train pool \(2490 "
            r"examples usable in format 'answer'\); lower k",
        ),
        ({"gsm8k": {"kk": 2}}, r"tasks.gsm8k: unknown option 'kk' \(did you mean 'k'\?\)"),
        ({"gsm8k": {"n": 0}}, r"tasks.gsm8k.n must be a positive integer \(got 0\)"),
        ({"gsm8k": {"k": -1}}, "k must be a non-negative integer"),
        ({"gsm8k": {"format": "cots"}}, r"'cots' is not a format \(did you mean 'cot'\?\)"),
        (
            {"mnli_hans": {"format": "code"}},
            "'mnli_hans' has no 'code' targets; use format: answer",
        ),
        ({"mbpp_humaneval": {}}, "is the study's own task"),
        ({"gsm8k": [1]}, "tasks.gsm8k must map options to values"),
        (
            {"mnli_hans": {"params": {"labels": "three"}}},
            r"tasks.mnli_hans: task mnli_hans: params.labels='three' is not one of",
        ),
        ({"mnli_hans": {"params": {"probes": {}}}}, "without probes"),
        ({}, "must map a task name to its options"),
    ],
)
def test_mistakes_are_one_line_lab_errors(tasks, msg):
    with pytest.raises(LabError, match=msg) as e:
        mbpp(tasks)
    assert "\n" not in str(e.value)


def test_a_probe_prompt_longer_than_the_context_stops_the_study_before_any_cell(tmp_path, capsys):
    """The tiny smoke model reads characters with 4096 positions: 30 MBPP demos cannot fit."""
    code, out = run_probe_study(
        tmp_path, "{tasks: {mbpp_humaneval: {n: 1, k: 30, splits: [test]}}}"
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "probe split 'probe_mbpp_humaneval_test' needs" in err
    assert "lower k (30) or max_new_tokens in task.params.probes.tasks.mbpp_humaneval" in err
    assert not (out / "study.json").exists() and not (out / "cells").exists()
