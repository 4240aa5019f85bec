"""One prompt template shared by every arm, so that only the weights or the demos differ.

    Question: {question}
    Answer:{target}

ICL arms put k solved demos (same template, separated by a blank line) in front; fine-tuned
arms are trained on exactly `prompt(ex) + target(ex, fmt)` and evaluated with k = 0.

Every function takes an optional `prompt_format` (lab/core/formats.py: descriptors, casing,
separator, spacing, option wrappers); its default, `DEFAULT`, is the template above, byte
for byte. A task's own pattern (`Example.prompt`) is used as it is under any format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lab.core.example import Example
from lab.core.formats import DEFAULT, PromptFormat

DEMO_SEP = "\n\n"
ZERO_SHOT_COT_TRIGGER = "Let's think step by step."

# Generation stops at the first of these (or EOS). Answers and CoT are one line; a program
# is several lines and ends at a blank line.
STOP = {"answer": ["\n"], "cot": ["\n"], "code": ["\n\n", "\nQuestion:"]}


# A format whose targets the lab writes, mapped to the format they are written in:
# `cot_self` rationales are written by the base model itself (lab/study/rationales.py) and
# then shown, trained on, generated and extracted exactly as `cot` rationales.
WRITTEN_AS = {"cot_self": "cot"}


def written_as(fmt: str) -> str:
    """The format an arm's targets are written, prompted and extracted in."""
    return WRITTEN_AS.get(fmt, fmt)


def prompt(ex: Example, trigger: str | None = None, prompt_format: PromptFormat = DEFAULT) -> str:
    """The example's prompt: the lab template (in `prompt_format`), or the task's own pattern
    when it has one (classification tasks), the same for demos, fine-tuning and evaluation."""
    text = ex.prompt or prompt_format.render(ex)
    return f"{text}{prompt_format.lead}{trigger}" if trigger else text


def target(ex: Example, fmt: str, prompt_format: PromptFormat = DEFAULT) -> str:
    """The completion after 'Answer:' in format `fmt` (what FT learns, what demos show)."""
    if fmt == "answer":
        return f"{prompt_format.lead}{ex.answer}"
    if fmt in ("cot", "cot_self"):  # cot_self: the example carries its self-written rationale
        return f"{prompt_format.lead}{ex.rationale}"
    if fmt == "code":
        return f"{prompt_format.code_lead}{ex.program}"
    raise ValueError(f"unknown format {fmt!r}")


def demos_prefix(demos: Sequence[Example], fmt: str, prompt_format: PromptFormat = DEFAULT) -> str:
    """The k-shot prefix: solved demos, each followed by a blank line ('' for k = 0)."""
    return "".join(
        prompt(d, None, prompt_format) + target(d, fmt, prompt_format) + DEMO_SEP for d in demos
    )


def bos_prefix(tokenizer: Any) -> list[int]:
    """[bos] if the tokenizer puts BOS in front of a plain encode (Gemma, Llama-2), else [].

    Training and evaluation both start every sequence with exactly this, so the fine-tuned
    model sees the same token layout it is evaluated with."""
    probe = tokenizer("a").input_ids
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and probe and probe[0] == bos else []
