"""BBH as a generic-reasoning probe (lab/tasks/probes.py, eval/probes.py): loading with the
standard 3-shot CoT prompts, answer extraction per BBH answer type, and the probe options."""

from __future__ import annotations

import pytest
from probe_cli import run_probe_study

from eval.probes import PROBE_STOP, extract_bbh, macro_average, normalize_bbh, probe_prompt
from lab.core.errors import LabError
from lab.core.recipe import TaskCfg
from lab.tasks import build_task
from lab.tasks.probes import BBH_TASKS, bbh_answer_type, build_probes, probe_family

GSM = {"name": "gsm8k", "n_train": 20, "n_dev": 4, "n_test": 4}


def probes(**opts) -> dict:
    return build_probes({"bbh": opts}, TaskCfg(name="gsm8k"))


def test_all_27_subtasks_load_with_their_cot_prompt():
    splits = probes(n_per_task=2)
    assert len(BBH_TASKS) == 27
    assert list(splits) == [f"probe_bbh_{t}" for t in BBH_TASKS]
    for name, xs in splits.items():
        assert len(xs) == 2 and probe_family(name) == "bbh"
        ex = xs[0]
        prefix = ex.meta["prefix"]
        assert "canary" not in prefix and "-----" not in prefix  # header removed
        assert prefix.count("\nA: Let's think step by step.") == 3, name  # 3 shots
        assert prefix.endswith("\n\n") and ex.meta["max_new_tokens"] == 192
        assert normalize_bbh(ex.answer, ex.meta["answer_type"]) is not None
        # every demo answer in the prompt is extracted by the rule for its type
        for shot in prefix.strip().split("\n\nQ:")[1:]:
            assert extract_bbh(shot.split("A: ", 1)[1], ex.meta["answer_type"]), (name, shot)


def test_sampling_is_seeded_nested_and_in_file_order():
    a = probes(n_per_task=3, tasks=["navigate"])["probe_bbh_navigate"]
    b = probes(n_per_task=6, tasks=["navigate"])["probe_bbh_navigate"]
    assert {e.id for e in a} <= {e.id for e in b}
    assert [e.meta["row"] for e in b] == sorted(e.meta["row"] for e in b)
    assert [e.id for e in a] == [
        e.id for e in probes(n_per_task=3, tasks=["navigate"])["probe_bbh_navigate"]
    ]


def test_the_gsm8k_task_takes_probes_as_a_param():
    splits = build_task(
        TaskCfg(**GSM, params={"probes": {"bbh": {"n_per_task": 1, "tasks": ["snarks"]}}})
    )
    assert [s for s in splits if s.startswith("probe_")] == ["probe_bbh_snarks"]
    assert "probe_bbh_snarks" not in [s for s in splits if s.startswith("ood_")]


@pytest.mark.parametrize(
    ("opts", "msg"),
    [
        ({"n_per_task": 0}, "positive integers"),
        ({"tasks": ["navigat"]}, "did you mean 'navigate'"),
        ({"n_per_tsk": 3}, r"\['n_per_tsk'\] not understood"),
    ],
)
def test_bad_probe_options_are_lab_errors(opts, msg):
    with pytest.raises(LabError, match=msg):
        probes(**opts)
    with pytest.raises(LabError, match="unknown probe 'bhh'"):
        build_probes({"bhh": {}}, TaskCfg(name="gsm8k"))


def test_answer_types():
    assert bbh_answer_type("date_understanding") == "choice"
    assert bbh_answer_type("web_of_lies") == "label"
    assert bbh_answer_type("object_counting") == "numeric"
    assert bbh_answer_type("word_sorting") == "text"


@pytest.mark.parametrize(
    ("kind", "gen", "gold", "want", "correct"),
    [
        # multiple choice: the letter after "the answer is", else the last "(X)"
        ("choice", "\n12/24/1937 is (B) wrong... So the answer is (D).", "(D)", "(D)", True),
        ("choice", "\nIt is either (A) or (C); I pick (C)", "(C)", "(C)", True),
        ("choice", "\nSo the answer is (A).", "(B)", "(A)", False),
        ("choice", "\nno letter at all", "(B)", None, False),
        # True/False, Yes/No, valid/invalid, yes/no: case-insensitive, whole words
        ("label", "\nnot ( True ) is False. So the answer is False.", "False", "false", True),
        ("label", "\nSo the answer is Yes.", "Yes", "yes", True),
        ("label", "\nSo the answer is invalid.", "valid", "invalid", False),
        ("label", "\n... So the answer is valid.", "valid", "valid", True),
        ("label", "\nthe claim is plausible, so yes", "yes", "yes", True),
        # numbers: the number after "the answer is", else the last number
        ("numeric", "\n2 + 3 = 5 apples and 1 pear. So the answer is 6.", "6", "6", True),
        ("numeric", "\n(-3 * 4) = -12. So the answer is -12.", "-12", "-12", True),
        ("numeric", "\nthere are 4 + 3 = 7", "7", "7", True),
        # words (word_sorting, dyck_languages): the text after "the answer is"
        (
            "text",
            "\nSo the answer is apple banana cherry.",
            "apple banana cherry",
            "apple banana cherry",
            True,
        ),  # fmt: skip
        ("text", "\nSo the answer is ] ).", "] )", "] )", True),
        ("text", "\napple banana", "apple banana", None, False),
    ],
)
def test_extraction_per_answer_type(kind, gen, gold, want, correct):
    got = extract_bbh(gen, kind)
    assert got == want
    assert (got is not None and got == normalize_bbh(gold, kind)) == correct


def test_probe_prompt_and_macro_average():
    ex = probes(n_per_task=1, tasks=["sports_understanding"])["probe_bbh_sports_understanding"][0]
    assert probe_prompt(ex) == f"Q: {ex.question}\nA: Let's think step by step."
    assert "\n\n" in PROBE_STOP
    m = macro_average({"a": {"exact_match": 1.0, "n": 2}, "b": {"exact_match": 0.0, "n": 6}})
    assert m == {"exact_match": 0.5, "n": 8, "subtasks": 2}  # each subtask weighs the same


def test_a_probe_prompt_longer_than_the_context_stops_the_study_before_any_cell(tmp_path, capsys):
    """The tiny smoke model reads characters with 4096 positions: the salient-translation
    prompt (~6,000 characters) cannot fit."""
    code, out = run_probe_study(
        tmp_path,
        "{bbh: {n_per_task: 1, max_new_tokens: 4, tasks: [salient_translation_error_detection]}}",
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "probe split 'probe_bbh_salient_translation_error_detection' needs" in err
    assert not (out / "study.json").exists() and not (out / "cells").exists()
