"""Prompt formats (lab/core/formats.py): the default is today's template byte for byte on
every shipped task; sampled formats are seeded and obey the grammar; a format renders,
targets and stops consistently; `eval.formats` resolves and keeps old recipes' hashes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from eval.evaluate import MULTILINE_STOP, PromptSpec, _gold_text
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.formats import (
    DEFAULT,
    MAIN,
    NAMED,
    PromptFormat,
    check_applies,
    format_variant,
    resolve,
    sample_formats,
)
from lab.core.prompts import STOP, demos_prefix, prompt, target
from lab.core.recipe import TaskCfg, load_recipe
from lab.tasks import build_task, yaml_tasks

EX = Example(
    id="t-0",
    question="Take 5 and add 4.",
    answer="9",
    rationale="5 + 4 = 9. The answer is 9.",
    program="s1 = 5 + 4\nprint(s1)",
)
OPTS = {"A": "4", "B": "7"}
MC = Example(
    id="m-0",
    question="How many? Answer Choices: (A) 4 (B) 7",
    answer="B",
    rationale="",
    program="",
    meta={"options": OPTS},
)


# The template as lab/core/prompts.py wrote it before prompt formats (e82f6a1), verbatim.
def old_prompt(ex: Example, trigger: str | None = None) -> str:
    text = ex.prompt or f"Question: {ex.question}\nAnswer:"
    return f"{text} {trigger}" if trigger else text


def old_target(ex: Example, fmt: str) -> str:
    return {"answer": f" {ex.answer}", "cot": f" {ex.rationale}", "code": f"\n{ex.program}"}[fmt]


@pytest.mark.parametrize("task", yaml_tasks())
def test_default_format_is_todays_template_on_every_shipped_task(task):
    splits = build_task(TaskCfg(name=task, n_train=8, n_dev=2, n_test=4))
    n = 0
    for xs in splits.values():
        for ex in xs:
            for trigger in (None, "Let's think step by step."):
                assert prompt(ex, trigger) == old_prompt(ex, trigger)
                assert prompt(ex, trigger, DEFAULT) == old_prompt(ex, trigger)
            for fmt in ("answer", "cot", "code"):
                assert target(ex, fmt, DEFAULT) == old_target(ex, fmt)
            n += 1
        old = "".join(old_prompt(d) + old_target(d, "answer") + "\n\n" for d in xs[:3])
        assert demos_prefix(xs[:3], "answer", DEFAULT) == old
        for c in xs[0].choices:
            assert DEFAULT.continuation(c) == c
    assert n > 0


def test_default_stops_are_todays():
    for fmt in ("answer", "cot", "code"):
        assert PromptSpec(fmt, (EX,)).stop == tuple(STOP[fmt])
    assert PromptSpec("cot").stop == MULTILINE_STOP == DEFAULT.stop("cot", multiline=True)


def test_sampled_formats_are_seeded_distinct_and_obey_the_grammar():
    a, b = sample_formats(12, 0), sample_formats(12, 0)
    assert a == b and sample_formats(4, 0) == a[:4]  # a larger n extends a smaller one
    assert sample_formats(12, 1) != a
    assert [f.name for f in a] == [f"s{i}" for i in range(1, 13)]
    bodies = [f.model_dump(exclude={"name"}) for f in a]
    assert DEFAULT.model_dump(exclude={"name"}) not in bodies
    assert len({repr(x) for x in bodies}) == 12
    for f in sample_formats(200, 3):
        assert "\n" not in f.separator or "\n" in f.spacing
        assert "\n\n" not in f.spacing


def test_grammar_refuses_a_newline_separator_without_a_newline_spacing():
    with pytest.raises(ValidationError, match="requires a newline in the spacing"):
        PromptFormat(name="x", separator=":\n", spacing=" || ")
    with pytest.raises(ValidationError, match="blank line"):
        PromptFormat(name="x", spacing="\n\n")
    with pytest.raises(ValidationError, match="format name"):
        PromptFormat(name="a/b")


def test_a_format_renders_question_target_and_stops_alike():
    f = PromptFormat(
        name="x", question="Q", answer="Sol", casing="upper", separator=" - ", spacing=" || "
    )
    assert prompt(EX, None, f) == "Q - Take 5 and add 4. || SOL -"
    assert prompt(EX, "Think.", f) == "Q - Take 5 and add 4. || SOL - Think."
    assert target(EX, "answer", f) == " 9" and target(EX, "code", f) == "\n" + EX.program
    demo = demos_prefix([EX], "answer", f)
    assert demo == "Q - Take 5 and add 4. || SOL - 9\n\n"
    # a program stops at a blank line or the next question in this format, not "\nQuestion:"
    assert PromptSpec("code", (EX,), prompt_format=f).stop == ("\n\n", "\nQ -")
    assert PromptSpec("cot", prompt_format=f).stop == ("\n\n", "\nQ -")
    assert PromptSpec("answer", (EX,), prompt_format=f).prefix == demo


def test_a_newline_separator_ends_the_prompt_and_the_target_follows_it():
    f = NAMED["newline"]
    assert prompt(EX, None, f) == "Problem:\nTake 5 and add 4.\nSolution:\n"
    assert target(EX, "answer", f) == "9" and target(EX, "cot", f) == EX.rationale
    assert target(EX, "code", f) == EX.program  # no blank line after "Solution:\n"
    assert f.continuation(" Yes") == "Yes" and _gold_text(EX, f) == "9"
    assert PromptSpec("answer", prompt_format=f).stop == ("\n",)
    tab = PromptFormat(name="t", separator="\t")
    assert prompt(EX, None, tab).endswith("\nAnswer") and target(EX, "answer", tab) == "\t9"


def test_option_letters_take_the_formats_wrapper():
    assert prompt(MC) == "Question: How many? Answer Choices: (A) 4 (B) 7\nAnswer:"
    f = PromptFormat(name="x", casing="lower", options="{}.")
    assert prompt(MC, None, f) == "question: How many? answer choices: A. 4 B. 7\nanswer:"


def test_resolve_names_counts_and_inline_formats():
    assert resolve(None, 0) == [DEFAULT]
    got = resolve(3, 0)
    assert got[0] == DEFAULT and got[1:] == sample_formats(3, 0)
    inline = {"name": "mine", "question": "Input", "spacing": " "}
    got = resolve(["qa", "default", inline], 0)
    assert [f.name for f in got] == [MAIN, "qa", "mine"] and got[2].question == "Input"
    with pytest.raises(LabError, match="unknown format 'qq'.*named formats"):
        resolve(["qq"], 0)
    with pytest.raises(LabError, match="main format's"):
        resolve([{"name": "default", "question": "Q"}], 0)
    with pytest.raises(LabError, match="two formats are named 'qa'"):
        resolve(["qa", {"name": "qa", "answer": "A2"}], 0)
    assert format_variant("last", MAIN) == "last" and format_variant("last", "s2") == "last@s2"


def test_a_task_with_its_own_pattern_refuses_a_spread():
    nli = Example(
        id="n",
        question="p h",
        answer="Yes",
        rationale="",
        program="",
        prompt="p question: h Yes or No? answer:",
        choices=(" Yes", " No"),
    )
    check_applies([DEFAULT], {"test": [nli]})  # no spread: fine
    with pytest.raises(LabError, match="own prompt pattern"):
        check_applies(resolve(2, 0), {"test": [nli]})


def test_eval_formats_keeps_the_hash_at_its_default_and_changes_it_when_set(tmp_path):
    base = load_recipe("recipes/quickstart.yaml", profile="demo")
    text = open("recipes/quickstart.yaml").read()
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("  batch_size: 32\n", "  batch_size: 32\n  formats: null\n", 1))
    assert load_recipe(path, profile="demo").hash() == base.hash()
    path.write_text(text.replace("  batch_size: 32\n", "  batch_size: 32\n  formats: 2\n", 1))
    spread = load_recipe(path, profile="demo")
    assert spread.hash() != base.hash() and len(spread.prompt_formats()) == 3
    assert base.prompt_formats() == [DEFAULT]


def test_a_bad_inline_format_in_a_recipe_is_one_line_naming_the_entry():
    import yaml

    from lab.core.recipe import parse_recipe

    data = yaml.safe_load(open("recipes/quickstart.yaml"))
    data["eval"]["formats"] = ["qa", {"name": "x", "separator": ":\n", "spacing": " "}]
    with pytest.raises(LabError, match=r"eval.formats': formats\[1\]: format 'x': a newline"):
        parse_recipe(data)
    data["eval"]["formats"] = [{"name": "x", "sepx": ": "}]
    with pytest.raises(LabError, match=r"formats\[0\].sepx: Extra inputs"):
        parse_recipe(data)
    data["eval"]["formats"] = ["qa", {"name": "mine", "question": "Input"}]
    assert [f.name for f in parse_recipe(data).prompt_formats()] == ["default", "qa", "mine"]
