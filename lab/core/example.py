"""The task contract: a task is data — named splits of examples — nothing else.

Every example carries all three supervision formats (answer, CoT rationale, program) so
that any arm can use any format on exactly the same questions.

Classification and multiple-choice examples also carry `choices`, the continuations scored
by log-likelihood after the prompt (verbalizers such as " Yes" / " No", or the options of a
multiple-choice question); the gold choice is `" " + answer`, which is also the target an
answer-format FT arm learns and a demo shows. Such a task may bring its own pattern
(`prompt`, e.g. "{premise} question: {hypothesis} Yes or No? answer:"), used by every arm
instead of the lab's "Question: ...\nAnswer:" template.

A multiple-choice question scored by generation instead (AQuA's ``ood_aqua_gen``) has no
`choices`: its question shows the options, its answer is the gold option's letter, and
`meta["options"]` ({letter: option text}) tells the evaluation to read the chosen option
from the generation (eval/options.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.core.errors import LabError


@dataclass(frozen=True)
class Example:
    id: str  # unique within the task, stable across runs (e.g. "ood_steps-0017")
    question: str  # the question text, without any "Question:" prefix
    answer: str  # canonical gold answer, e.g. "94" (integers printed without separators)
    rationale: str  # one-line step-by-step CoT ending with "The answer is 94."
    program: str  # Python source whose execution prints the answer (one step per line)
    meta: dict[str, Any] = field(default_factory=dict)  # split, steps, digits, template...
    # Classification / multiple choice (empty for generation tasks):
    prompt: str = ""  # the task's own filled-in pattern, used instead of the lab template
    choices: tuple[str, ...] = ()  # verbalizers: the continuations scored, e.g. (" Yes", " No")
    # How the example is scored (declarative tasks, lab/tasks/declarative.py, set both;
    # "" = inferred from the fields above for builders not yet moved, eval/answers.py):
    output_type: str = ""  # generate | multiple_choice | code
    extractor: str = ""  # generate: number | exact | option_letter | regex:<pattern>

    def __post_init__(self) -> None:
        if self.choices and f" {self.answer}" not in self.choices:
            raise ValueError(
                f"example {self.id}: the gold continuation ' {self.answer}' is not one of its "
                f"choices {self.choices}"
            )

    @property
    def gold_index(self) -> int:
        """Index of the gold choice (the answer, with its leading space, in `choices`)."""
        return self.choices.index(f" {self.answer}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Split naming: "train" and "dev" are in-distribution and may be used for demos, training
# and model selection; "test" is the ID evaluation split; every split whose name starts
# with "ood_" is an out-of-distribution evaluation split. Nothing is ever selected on an
# eval split.
TRAIN_SPLITS = ("train", "dev")
ID_EVAL_SPLIT = "test"


def is_ood(split: str) -> bool:
    return split.startswith("ood_")


# A split that scores the problems of another OOD split a second way is an OOD split of its
# own (evaluated, its own column and rows) but is left out of the OOD mean, so that no
# problem set counts twice in it: {second scoring: the split whose problems it re-scores}.
# AQuA (lab/tasks/aqua.py) counts in the mean by the log-likelihood of its options, as it
# did before it was also scored by generation.
SECOND_SCORINGS: dict[str, str] = {"ood_aqua_gen": "ood_aqua"}


def ood_mean_splits(splits: Iterable[str]) -> list[str]:
    """The splits of `splits` that enter the OOD mean: every OOD split but a second scoring
    of another one that is also there (`SECOND_SCORINGS`)."""
    splits = list(splits)
    return [s for s in splits if is_ood(s) and SECOND_SCORINGS.get(s) not in splits]


# cot_self: the base model writes the rationale (lab/study/rationales.py); the task needs answers
_FORMAT_FIELD = {"answer": "answer", "cot": "rationale", "code": "program", "cot_self": "answer"}


def usable(examples: list[Example], fmt: str) -> list[Example]:
    """The examples that can supervise (or demonstrate) format `fmt`: those whose target for
    that format is non-empty. Benchmark tasks keep every problem but leave `program` (or
    `rationale`) empty where it could not be derived or verified, e.g. a GSM8K problem whose
    calculator annotations do not reproduce its gold answer; code-format training must skip
    those. For the synthetic arithmetic task every example is usable in every format."""
    if fmt not in _FORMAT_FIELD:
        raise ValueError(f"unknown format {fmt!r}")
    field_name = _FORMAT_FIELD[fmt]
    return [ex for ex in examples if getattr(ex, field_name)]


def check_formats(arms: Iterable[Any], task: str, train: list[Example]) -> None:
    """A one-line error for the first arm whose format (answer, cot, code) no train example
    of the task supplies a target for (a task without rationales cannot train a CoT arm)."""
    what = {
        "answer": "answer (`target`)",
        "cot": "rationale (`rationale`)",
        "code": "program (`program`)",
        "cot_self": "answer (`target`)",
    }
    has = [f for f in _FORMAT_FIELD if usable(train, f)]
    for arm in arms:
        if arm.format not in has:
            raise LabError(
                f"arm '{arm.name}' uses format {arm.format}, but task '{task}' has no "
                f"{what[arm.format]} for its train examples (it has targets for {has}); give the task "
                "that field or change the arm's format"
            )
