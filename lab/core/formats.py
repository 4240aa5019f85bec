"""Prompt formats: a small grammar in the spirit of FormatSpread (Sclar et al. 2024) for the
lab's question/answer template, so that a verdict can be checked under several formats
that differ only in formatting.

A `PromptFormat` names the question and answer descriptors ("Question", "Answer"), their
casing (as written, Title, UPPER, lower), the descriptor-text separator (": "), the spacing
between the two fields ("\\n") and the wrapper of option letters for questions that show
lettered options ("({})": "(A) 4 (B) 7"). A question renders as

    <question descriptor><separator><question><spacing><answer descriptor><answer cue>

where the separator's trailing whitespace belongs to the target (today's " 105" after
"Answer:"), unless it holds a newline: then the whole separator ends the prompt and the
target starts right after it. `DEFAULT` reproduces the lab's template byte for byte:

    Question: {question}
    Answer:{target}

The grammar's one constraint (FormatSpread's): a newline in the separator requires a newline
in the spacing; a spacing never holds a blank line (the demo separator and the code stop).

`sample_formats(n, seed)` draws n distinct valid formats from the grammar (never DEFAULT),
a prefix of one seeded sequence: drawn from the recipe, before any test example is scored.
A task with its own pattern (`Example.prompt`: the NLI tasks) keeps it under every format, so
a format spread is refused for it (`check_applies`).
"""

from __future__ import annotations

import random
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lab.core.errors import LabError
from lab.core.example import Example

Casing = Literal["as_is", "title", "upper", "lower"]
MAIN = "default"  # the name of the study's main format (every arm trains and is compared on it)

# The grammar's choices (FormatSpread's, cut to what the lab's scoring reads back: option
# letters stay A, B, C... in wrappers the option extraction reads, eval/options.py).
QUESTION_NAMES = ("Question", "Q", "Problem", "Input", "Query")
ANSWER_NAMES = ("Answer", "A", "Solution", "Output", "Response")
CASINGS: tuple[Casing, ...] = ("as_is", "title", "upper", "lower")
SEPARATORS = (": ", " : ", ":: ", "::: ", " - ", " -- ", " = ", "\t", ":\n", "\n")
SPACINGS = ("\n", " ", "", " || ", ", ", " <sep> ", ";\n")
OPTION_WRAPPERS = ("({})", "{}.", "{})")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_CHOICES_WORD = "Answer Choices"  # how a question shows its options (lab/tasks/yaml/gsm8k.yaml)


class PromptFormat(BaseModel):
    """One prompt format of the grammar (module docstring); the defaults are the lab's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = MAIN
    question: str = Field("Question", min_length=1, description="the question's descriptor")
    answer: str = Field("Answer", min_length=1, description="the answer's descriptor")
    casing: Casing = "as_is"
    separator: str = Field(": ", description="between a descriptor and its text")
    spacing: str = Field("\n", description="between the question field and the answer field")
    options: str = Field("({})", description="wrapper of an option letter, '{}' the letter")

    @model_validator(mode="after")
    def _check(self) -> PromptFormat:
        if not _NAME.match(self.name):
            raise ValueError(f"format name {self.name!r}: use letters, digits, '_', '.', '-'")
        for key in ("question", "answer"):
            if "\n" in getattr(self, key):
                raise ValueError(f"format '{self.name}': the {key} descriptor holds a newline")
        if "\n" in self.separator and "\n" not in self.spacing:
            raise ValueError(
                f"format '{self.name}': a newline in the separator requires a newline in the "
                "spacing (FormatSpread's grammar)"
            )
        if "\n\n" in self.spacing:
            raise ValueError(f"format '{self.name}': the spacing may not hold a blank line")
        if self.options.count("{}") != 1:
            raise ValueError(f"format '{self.name}': `options` needs one '{{}}' (the letter)")
        return self

    # -- the pieces ------------------------------------------------------------------------
    def descriptor(self, word: str) -> str:
        if self.casing == "title":
            return word.title()
        if self.casing == "upper":
            return word.upper()
        return word.lower() if self.casing == "lower" else word

    @property
    def _tail(self) -> str:
        return self.separator[len(self.separator.rstrip()) :]

    @property
    def _newline_tail(self) -> bool:
        return "\n" in self._tail

    @property
    def answer_cue(self) -> str:
        """What ends the prompt: the answer descriptor and the separator (without the
        whitespace that opens the target), e.g. "Answer:"."""
        sep = self.separator if self._newline_tail else self.separator.rstrip()
        return self.descriptor(self.answer) + sep

    @property
    def question_cue(self) -> str:
        """How a question starts, up to its separator's whitespace, e.g. "Question:"."""
        return self.descriptor(self.question) + self.separator.rstrip()

    @property
    def lead(self) -> str:
        """What opens an answer or rationale target (and a trigger, a choice): " "."""
        return "" if self._newline_tail else self._tail

    @property
    def code_lead(self) -> str:
        """What opens a program target: a newline, unless the prompt already ends in one."""
        return "" if self._newline_tail else "\n"

    # -- rendering -------------------------------------------------------------------------
    def question_text(self, ex: Example) -> str:
        """The example's question, its shown options (if any) in this format's wrapper."""
        opts = ex.meta.get("options")
        if not opts or (self.options == "({})" and self.casing == "as_is"):
            return ex.question
        shown = f" {_CHOICES_WORD}:" + "".join(f" ({k}) {v}" for k, v in opts.items())
        if not ex.question.endswith(shown):
            return ex.question
        mine = f" {self.descriptor(_CHOICES_WORD)}:" + "".join(
            f" {self.options.format(k)} {v}" for k, v in opts.items()
        )
        return ex.question[: -len(shown)] + mine

    def render(self, ex: Example) -> str:
        """The prompt of an example without its own pattern (no target)."""
        q = self.question_text(ex)
        return f"{self.descriptor(self.question)}{self.separator}{q}{self.spacing}{self.answer_cue}"

    def continuation(self, text: str) -> str:
        """A scored continuation written for the default format (" Yes", " 14") in this one."""
        return self.lead + text[1:] if text.startswith(" ") else text

    def stop(self, fmt: str, multiline: bool = False) -> tuple[str, ...]:
        """Generation stops for target format `fmt`: one line for answers and rationales; a
        blank line or the next question for programs (and a zero-shot CoT, `multiline`)."""
        if fmt == "code" or multiline:
            return ("\n\n", "\n" + self.question_cue)
        return ("\n",)

    def sketch(self) -> str:
        """The format at a glance, e.g. 'Question: {question}\\nAnswer: {answer}'."""
        return f"{self.descriptor(self.question)}{self.separator}{{question}}{self.spacing}" + (
            f"{self.answer_cue}{self.lead}{{answer}}"
        )


DEFAULT = PromptFormat()


def sample_formats(n: int, seed: int | str) -> list[PromptFormat]:
    """n distinct valid formats of the grammar, none equal to DEFAULT (names s1..sn): the
    first n of one seeded sequence, so a larger n extends a smaller one."""
    rng = random.Random(f"prompt-formats-{seed}")
    out: list[PromptFormat] = []
    seen = {DEFAULT.model_dump(exclude={"name"}).__repr__()}
    while len(out) < n:
        sep, spacing = rng.choice(SEPARATORS), rng.choice(SPACINGS)
        q, a = rng.choice(QUESTION_NAMES), rng.choice(ANSWER_NAMES)
        casing, wrap = rng.choice(CASINGS), rng.choice(OPTION_WRAPPERS)
        if "\n" in sep and "\n" not in spacing:
            continue
        f = PromptFormat(
            name=f"s{len(out) + 1}",
            question=q,
            answer=a,
            casing=casing,
            separator=sep,
            spacing=spacing,
            options=wrap,
        )
        key = f.model_dump(exclude={"name"}).__repr__()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


NAMED: dict[str, PromptFormat] = {
    f.name: f
    for f in (
        DEFAULT,
        PromptFormat(name="qa", question="Q", answer="A"),
        PromptFormat(name="upper_dash", casing="upper", separator=" - "),
        PromptFormat(name="input_output", question="Input", answer="Output", spacing=" || "),
        PromptFormat(
            name="newline", question="Problem", answer="Solution", separator=":\n", spacing="\n"
        ),
    )
}


def resolve(spec: int | list[Any] | None, seed: int | str) -> list[PromptFormat]:
    """The study's formats, the main one (DEFAULT) first: none (no spread), N sampled ones,
    or the listed ones (names of `NAMED` or inline dicts). A one-line LabError otherwise."""
    if spec is None:
        return [DEFAULT]
    if isinstance(spec, int):
        return [DEFAULT, *sample_formats(spec, seed)]
    out = [DEFAULT]
    for i, entry in enumerate(spec):
        if isinstance(entry, str):
            if entry not in NAMED:
                raise LabError(
                    f"eval.formats[{i}]: unknown format '{entry}'; named formats: "
                    f"{sorted(NAMED)}, or give one inline (question, answer, casing, separator, "
                    "spacing, options)"
                )
            f = NAMED[entry]
        else:
            f = entry if isinstance(entry, PromptFormat) else PromptFormat(**entry)
        if f.name == MAIN and f != DEFAULT:
            raise LabError(f"eval.formats[{i}]: the name '{MAIN}' is the main format's; rename it")
        if f.name in {x.name for x in out}:
            if f != DEFAULT:
                raise LabError(f"eval.formats[{i}]: two formats are named '{f.name}'; rename one")
            continue
        out.append(f)
    return out


def format_variant(variant: str, name: str) -> str:
    """The name under which a variant's evaluation in format `name` is stored (predictions
    folder, metrics, W&B keys): the variant itself for the main format, else
    `<variant>@<format>`."""
    return variant if name == MAIN else f"{variant}@{name}"


def check_applies(formats: list[PromptFormat], splits: dict[str, list[Example]]) -> None:
    """A spread needs the lab's template: refuse it for a task with its own pattern."""
    if len(formats) < 2:
        return
    for split, xs in splits.items():
        if any(ex.prompt for ex in xs):
            raise LabError(
                f"eval.formats: split '{split}' uses the task's own prompt pattern, which the "
                "formats do not vary (they vary the lab's Question/Answer template); remove "
                "eval.formats for this task"
            )
