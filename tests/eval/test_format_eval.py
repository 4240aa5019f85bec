"""Evaluation in a prompt format other than the lab's template (lab/core/formats.py): the
requests carry the format's demos, question and stops, generation is cut at the next
question in that format, and choices are scored with the format's answer lead."""

from __future__ import annotations

import pytest

from eval.choice import evaluate_choices
from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM, Generation
from lab.core.example import Example
from lab.core.formats import NAMED, PromptFormat
from lab.core.prompts import demos_prefix, prompt

EX = Example(
    id="e0",
    question="Take 5 and add 4.",
    answer="9",
    rationale="5 + 4 = 9. The answer is 9.",
    program="print(5 + 4)",
)
EX2 = Example(
    id="e1",
    question="Take 2 and add 2.",
    answer="4",
    rationale="2 + 2 = 4. The answer is 4.",
    program="print(2 + 2)",
)
QA = PromptFormat(
    name="x", question="Q", answer="Sol", casing="upper", separator=" - ", spacing=" || "
)


class _Recording(LM):
    """The tiny model's interface, recording the generation requests it is given."""

    def __init__(self, model, tok):
        super().__init__(model, tok, progress=False)
        self.requests = []

    def generate(self, requests, desc="generate"):
        self.requests += list(requests)
        return [Generation(" 9", 0, 1, "stop") for _ in requests]


def test_requests_carry_the_formats_demos_question_and_stops(tiny_model):
    lm = _Recording(*tiny_model)
    preds, m = evaluate_split(
        lm, [EX], PromptSpec("code", (EX2,), prompt_format=QA), 4, gold_logprob=False
    )
    (req,) = lm.requests
    assert (
        req.prefix
        == demos_prefix([EX2], "code", QA)
        == "Q - Take 2 and add 2. || SOL -\nprint(2 + 2)\n\n"
    )
    assert req.text == prompt(EX, None, QA) == "Q - Take 5 and add 4. || SOL -"
    assert req.stop == ("\n\n", "\nQ -")


def test_a_program_is_cut_at_the_next_question_in_the_format():
    text = "\nprint(5 + 4)\nQ - Take 1 and add 1. || SOL -\nprint(2)"
    assert LM._cut(text, PromptSpec("code", prompt_format=QA).stop) == ("\nprint(5 + 4)", True)
    # the lab's template's stops would have run on into the next question
    assert LM._cut(text, PromptSpec("code").stop) == (text, False)


def test_choices_are_scored_with_the_formats_answer_lead(tiny_model):
    lm = LM(*tiny_model, progress=False)
    ex = Example(
        id="c0",
        question="Is 4 even?",
        answer="Yes",
        rationale="",
        program="",
        choices=(" Yes", " No"),
    )
    f = NAMED["newline"]  # "Solution:\n" ends the prompt; the choice follows without a space
    preds, _m = evaluate_choices(lm, [ex], "", prompt_format=f)
    want = lm.loglikelihood([("", prompt(ex, None, f), "Yes"), ("", prompt(ex, None, f), "No")])
    assert preds[0]["choice_logprobs"] == pytest.approx([w[0] for w in want], abs=1e-4)
    assert preds[0]["choices"] == [" Yes", " No"] and preds[0]["pred"] in ("Yes", "No")
