"""The shared prompt template (lab/core/prompts.py) and the arms' stop strings (eval/evaluate.py)."""

from __future__ import annotations

import pytest

from eval.evaluate import MULTILINE_STOP, PromptSpec
from lab.core.example import Example
from lab.core.prompts import DEMO_SEP, STOP, ZERO_SHOT_COT_TRIGGER, demos_prefix, prompt, target

EX = Example(
    id="t-0",
    question="Start with 9, multiply by 8, then add 33. What is the result?",
    answer="105",
    rationale="9 * 8 = 72. 72 + 33 = 105. The answer is 105.",
    program="s1 = 9 * 8\ns2 = s1 + 33\nprint(s2)",
)
EX2 = Example(
    id="t-1",
    question="Take 5 and add 4.",
    answer="9",
    rationale="5 + 4 = 9. The answer is 9.",
    program="s1 = 5 + 4\nprint(s1)",
)


def test_prompt_exact():
    assert prompt(EX) == (
        "Question: Start with 9, multiply by 8, then add 33. What is the result?\nAnswer:"
    )


def test_prompt_with_trigger_goes_after_answer_colon():
    got = prompt(EX, ZERO_SHOT_COT_TRIGGER)
    assert got == prompt(EX) + " Let's think step by step."
    assert got.endswith("\nAnswer: Let's think step by step.")
    assert got.count(ZERO_SHOT_COT_TRIGGER) == 1
    assert prompt(EX, None) == prompt(EX, "") == prompt(EX)


def test_targets_exact():
    assert target(EX, "answer") == " 105"
    assert target(EX, "cot") == " 9 * 8 = 72. 72 + 33 = 105. The answer is 105."
    assert target(EX, "code") == "\ns1 = 9 * 8\ns2 = s1 + 33\nprint(s2)"
    assert target(EX, "code").startswith("\n")


def test_target_unknown_format():
    with pytest.raises(ValueError, match="unknown format"):
        target(EX, "json")


def test_demos_prefix_empty_for_zero_shot():
    for fmt in ("answer", "cot", "code"):
        assert demos_prefix([], fmt) == ""


def test_demos_prefix_exact():
    assert DEMO_SEP == "\n\n"
    got = demos_prefix([EX, EX2], "answer")
    assert got == (
        "Question: Start with 9, multiply by 8, then add 33. What is the result?\nAnswer: 105\n\n"
        "Question: Take 5 and add 4.\nAnswer: 9\n\n"
    )
    assert got.endswith("\n\n") and not got.endswith("\n\n\n")


@pytest.mark.parametrize("fmt", ["answer", "cot", "code"])
def test_demos_prefix_is_demos_in_the_same_template(fmt):
    got = demos_prefix([EX, EX2], fmt)
    assert got == prompt(EX) + target(EX, fmt) + "\n\n" + prompt(EX2) + target(EX2, fmt) + "\n\n"
    # a k-shot prompt reads as one more question in the same template
    full = got + prompt(EX2)
    assert full.count("Question: ") == 3 and full.endswith("\nAnswer:")


def test_demos_prefix_has_no_trigger():
    assert ZERO_SHOT_COT_TRIGGER not in demos_prefix([EX, EX2], "cot")


def test_code_demo_program_contains_no_stop_before_its_end():
    """A demo program (several lines) must not contain a code stop string itself."""
    body = target(EX, "code")[1:]
    assert not any(s in body for s in STOP["code"])
    # and the separator after it is exactly the code stop
    assert demos_prefix([EX], "code").endswith(EX.program + "\n\n")


# ------------------------------------------------------------------------- PromptSpec.stop


def test_stop_answer_and_few_shot_cot_are_one_line():
    assert PromptSpec("answer").stop == ("\n",)
    assert PromptSpec("answer", (EX,)).stop == ("\n",)
    assert PromptSpec("cot", (EX, EX2)).stop == ("\n",)
    assert PromptSpec("answer", (), ZERO_SHOT_COT_TRIGGER).stop == ("\n",)


def test_stop_zero_shot_cot_is_multiline():
    spec = PromptSpec("cot", (), ZERO_SHOT_COT_TRIGGER)
    assert spec.stop == MULTILINE_STOP == ("\n\n", "\nQuestion:")
    assert "\n" not in spec.stop
    assert PromptSpec("cot").stop == MULTILINE_STOP


def test_stop_code():
    assert PromptSpec("code").stop == ("\n\n", "\nQuestion:")
    assert PromptSpec("code", (EX,)).stop == ("\n\n", "\nQuestion:")


def test_stop_is_a_tuple():
    for fmt in ("answer", "cot", "code"):
        assert isinstance(PromptSpec(fmt).stop, tuple)
        assert isinstance(PromptSpec(fmt, (EX,)).stop, tuple)


def test_prompt_spec_prefix():
    assert PromptSpec("cot").prefix == ""
    assert PromptSpec("cot", (EX, EX2)).prefix == demos_prefix([EX, EX2], "cot")
