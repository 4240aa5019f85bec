"""AQuA scored by generation (`ood_aqua_gen`): option extraction (eval/options.py) for every
arm format, the split (lab/tasks/yaml/gsm8k.yaml, lab/tasks/aqua.py), its wiring into
evaluate_split, and the rule that keeps a second scoring of a split out of the OOD mean
(lab/core/example.py)."""

from __future__ import annotations

import pytest

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM, Generation
from eval.options import (
    MATCH_KINDS,
    extract_option,
    find_letter,
    find_option_text,
    option_for_number,
    option_value,
)
from lab.core.example import SECOND_SCORINGS, ood_mean_splits
from lab.core.prompts import prompt
from lab.core.recipe import TaskCfg
from lab.report.wandb_keys import ood_mean
from lab.tasks import build_task, describe_task

OPTIONS = {"A": "21", "B": "21.5", "C": "22", "D": "$22.5", "E": "None of these"}


def cfg(**kw) -> TaskCfg:
    return TaskCfg(**{"name": "gsm8k", "n_train": 10, "n_dev": 2, "n_test": 12, **kw})


def aqua_splits(c: TaskCfg) -> tuple[list, list]:
    """(ood_aqua, ood_aqua_gen) of the gsm8k task."""
    s = build_task(c)
    return s["ood_aqua"], s["ood_aqua_gen"]


# ------------------------------------------------------------------------- option values


@pytest.mark.parametrize(
    "text,value",
    [
        ("22", "22"), ("$1,200", "1200"), ("Rs. 570", "570"), ("Rs.1950", "1950"),
        ("5.5 km", "5.5"), ("3km", "3"), ("10 hours.", "10"), ("80 km/hr", "80"),
        ("16.7%", "16.7"), ("140°", "140"), ("9 Trousers", "9"), ("0.4", "0.4"), (".5", "0.5"),
        ("-17.5", "-17.5"), ("\u221217.5", "-17.5"), ("+30", "30"), ("4,500", "4500"),
        ("22.50", "22.5"),
        # not one number with a unit: fractions, expressions, two numbers, words first
        ("10/7", None), ("2!", None), ("5(√3 + 1)", None), ("4y", None), ("750pi", None),
        ("1000p", None), ("1 hr 23 min", None), ("11,12", None), ("34, 62", None),
        ("After 6 minutes", None), ("None of these", None), ("I and II only", None),
        ("9 2 0 1", None), ("1/3 km/h", None),
    ],
)  # fmt: skip
def test_option_value(text, value):
    assert option_value(text) == value


# ------------------------------------------------------------------------- letters


@pytest.mark.parametrize(
    "text,letter",
    [
        ("The answer is (C).", "C"), ("answer is C", "C"), ("The answer is: C.", "C"),
        ("the answer is (D) 22.5", "D"), ("Answer: option B", "B"), ("#### E", "E"),
        ("The answer is (A). No wait, the answer is (C).", "C"),  # the last one
        ("C", "C"), (" (C)", "C"), (" (C) 22", "C"), ("C. 22", "C"), ("C)", "C"),
        ("**C**", "C"), ("22 (C)", "C"), ("So (B) fits.", "B"),
        ("A farmer has 22 sheep", None),  # an article, not an option
        ("The answer is A train", None), ("the answer is a", None),
        ("Check (A), then (B): 22.", None),  # an enumeration, not an answer
        ("So (B) fits. The answer is 22.", None),  # the stated final answer is a number
        ("F", None), ("(F)", None),  # not one of the letters
        ("Answer Choices: (A) 21 (B) 21.5", None),
    ],
)  # fmt: skip
def test_find_letter(text, letter):
    assert find_letter(text, "ABCDE") == letter


# ------------------------------------------------------------------------- numbers, text


def test_number_maps_to_the_one_option_with_that_value():
    assert option_for_number("22", OPTIONS) == "C"
    assert option_for_number("22.5", OPTIONS) == "D"  # "$22.5"
    assert option_for_number("7", OPTIONS) is None
    assert option_for_number(None, OPTIONS) is None
    twice = {"A": "5% Loss", "B": "5% Profit", "C": "7", "D": "8", "E": "9"}
    assert option_for_number("5", twice) is None  # two options, the same value
    assert option_for_number("-17.5", {"A": "-17.5", "B": "17.5"}) == "A"


def test_option_text_written_verbatim_only_when_unambiguous():
    roman = {"A": "I only", "B": "II only", "C": "I and II only", "D": "III only", "E": "None"}
    assert find_option_text("so it is I and II only", roman) == "C"  # "II only" inside C
    assert find_option_text("II only", roman) == "B"
    assert find_option_text("I only or III only", roman) is None  # two options
    assert find_option_text("NONE OF THESE", OPTIONS) == "E"  # case-insensitive
    assert find_option_text("22", OPTIONS) is None  # numeric options go by their value


@pytest.mark.parametrize(
    "gen,fmt,pred,match",
    [
        (" (C)", "answer", "C", "letter"),
        (" C", "answer", "C", "letter"),
        (" 22", "answer", "C", "number"),  # the answer format's first number
        (" 22.50 dollars", "answer", "D", "number"),
        (" 22 or 23", "answer", "C", "number"),
        (" 7", "answer", None, "none"),
        ("", "answer", None, "none"),
        (" none of these", "answer", "E", "text"),
        (" 21 + 1 = 22. The answer is 22.", "cot", "C", "number"),  # "The answer is N"
        (" 21 + 1.5 = 22.5 dollars", "cot", "D", "number"),  # CoT's last number
        (" 22 is close. The answer is (D).", "cot", "D", "letter"),
        ("\ns1 = 43 / 2\nprint(s1)", "code", "B", "number"),  # the program's output, 21.5
        ("\nprint('C')", "code", "C", "letter"),
        ("\nprint('(C)' if False else 7)", "code", None, "none"),
        ("\nprint(1 / 0)", "code", None, "none"),
    ],
)  # fmt: skip
def test_extract_option_for_every_format(gen, fmt, pred, match):
    got = extract_option(gen, fmt, OPTIONS)
    assert (got["pred"], got["match"]) == (pred, match)
    assert (got["error"] is None) == (pred is not None)


def test_extract_option_zero_shot_cot_reads_the_final_answer():
    gen = " First 21 apples. Then 1 more: 22 apples. The answer is 22. Check: 21.5 is wrong."
    assert extract_option(gen, "answer", OPTIONS, cot_prompted=True)["pred"] == "C"
    assert extract_option(gen, "answer", OPTIONS)["pred"] == "A"  # answer format: first number


def test_extract_option_says_why_there_is_no_answer():
    twice = {"A": "5% Loss", "B": "5% Profit", "C": "7", "D": "8", "E": "9"}
    assert extract_option(" 5", "answer", twice)["error"] == "5 is the value of several options"
    assert extract_option(" 6", "answer", twice)["error"] == "6 is the value of no option"
    assert "ZeroDivisionError" in extract_option("\nprint(1 / 0)", "code", twice)["error"]


# ------------------------------------------------------------------------- the split


def test_split_has_the_problems_of_ood_aqua_with_the_options_shown():
    for c in (cfg(), cfg(seed=3), cfg(n_test=100_000)):
        ll, gen = aqua_splits(c)
        assert len(gen) == min(c.n_test, 247)
        assert [e.id.removeprefix("ood_aqua_gen-") for e in gen] == [
            e.id.removeprefix("ood_aqua-") for e in ll
        ]
        for a, g in zip(ll, gen, strict=True):
            assert g.answer == g.meta["gold_letter"] == a.meta["gold_letter"]
            assert g.answer in "ABCDE" and sorted(g.meta["options"]) == list("ABCDE")
            assert not g.choices and g.rationale == "" and g.program == ""
            assert g.meta["split"] == "ood_aqua_gen" and g.meta["row"] == a.meta["row"]
            assert g.question.startswith(a.question + " Answer Choices: (A) ")
            for k, text in g.meta["options"].items():
                assert f"({k}) {text}" in g.question
            if a.meta["row"] != 29:  # the one problem whose options repeat "A)" etc.
                assert g.meta["options"][g.answer] == a.answer


def test_question_format_and_the_repeated_letter_fix():
    gen = {e.meta["row"]: e for e in aqua_splits(cfg(n_test=100_000))[1]}
    assert gen[0].question.endswith(
        "After how much more time will this car reach the base of the tower? Answer Choices: "
        "(A) 5(√3 + 1) (B) 6(√3 + √2) (C) 7(√3 – 1) (D) 8(√3 – 2) (E) None of these"
    )
    assert gen[29].meta["options"]["A"] == "59"  # "A)A)59" in the file
    assert "(A) 59 (B) 69" in gen[29].question


# ------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def gen_split():
    return aqua_splits(cfg(n_test=4))[1]


@pytest.mark.parametrize("fmt", ["answer", "code"])
def test_evaluate_split_with_the_tiny_model(tiny_model, gen_split, fmt):
    model, tok = tiny_model
    lm = LM(model, tok, progress=False)
    preds, m = evaluate_split(lm, gen_split, PromptSpec(fmt), 6)
    for ex, p in zip(gen_split, preds, strict=True):
        again = extract_option(p["generation"], fmt, ex.meta["options"])
        assert (p["pred"], p["match"], p["number"]) == (
            again["pred"],
            again["match"],
            again["number"],
        )
        assert p["match"] in MATCH_KINDS and (p["pred"] is None) == (p["match"] == "none")
        assert p["correct"] == (p["pred"] == ex.answer) and p["gold"] == ex.answer
    assert m["no_answer"] == sum(p["pred"] is None for p in preds) / len(preds)
    # the smooth metric: log p(" <gold option's text>") after the same prompt
    want = lm.loglikelihood(
        [("", prompt(ex), f" {ex.meta['options'][ex.answer]}") for ex in gen_split]
    )
    assert [p["gold_logprob"] for p in preds] == pytest.approx([w[0] for w in want], abs=1e-4)


class _Scripted(LM):
    """The tiny model, but with given generations: to see each way an answer is read."""

    def __init__(self, model, tok, texts: list[str]):
        super().__init__(model, tok, progress=False)
        self.texts = texts

    def generate(self, requests, desc="generate"):
        return [Generation(t, 0, 0, "stop") for t in self.texts[: len(requests)]]


def test_evaluate_split_records_the_letter_and_how_it_was_read(tiny_model, gen_split):
    model, tok = tiny_model
    exs = [e for e in gen_split if option_value(e.meta["options"][e.answer])][:2]
    assert len(exs) == 2
    wrong = next(k for k in "ABCDE" if k != exs[1].answer)
    value = option_value(exs[0].meta["options"][exs[0].answer])
    texts = [f" So it is {value}. The answer is {value}.", f" The answer is ({wrong})."]
    preds, m = evaluate_split(_Scripted(model, tok, texts), exs, PromptSpec("cot"), 6)
    assert [(p["pred"], p["match"], p["correct"]) for p in preds] == [
        (exs[0].answer, "number", True),
        (wrong, "letter", False),
    ]
    assert preds[0]["number"] == value and m["exact_match"] == 0.5 and m["no_answer"] == 0.0


# ------------------------------------------------------------------------- the OOD mean


def test_a_second_scoring_is_not_in_the_ood_mean():
    splits = ["test", "ood_svamp", "ood_aqua", "ood_aqua_gen", "probe_bbh_x"]
    assert ood_mean_splits(splits) == ["ood_svamp", "ood_aqua"]
    assert SECOND_SCORINGS["ood_aqua_gen"] == "ood_aqua"
    assert ood_mean_splits(["ood_aqua_gen"]) == ["ood_aqua_gen"]  # alone, it is the AQuA entry
    desc = describe_task("gsm8k")
    assert "not in the OOD mean" in desc["ood_aqua_gen"] and "OOD mean" in desc["ood_aqua"]


def test_wandb_ood_mean_leaves_the_second_scoring_out():
    flat = {
        "eval/test/exact_match": 0.9,
        "eval/ood_svamp/exact_match": 0.5,
        "eval/ood_aqua/exact_match": 0.3,
        "eval/ood_aqua_gen/exact_match": 0.0,
        "eval/ood_aqua/gold_logprob": -3.0,
        "eval/probe_bbh/exact_match": 1.0,
    }
    assert ood_mean(flat) == pytest.approx(0.4)
    assert ood_mean({"eval/test/exact_match": 0.9}) is None
