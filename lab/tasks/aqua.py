"""AQuA-RAT (5-way multiple choice) as an OOD set of the gsm8k task, scored two ways: by the
log-likelihood of each option (``ood_aqua``) and by generation + option extraction
(``ood_aqua_gen``). Both splits hold the same problems: a seeded sample of at most
``task.n_test`` AQuA test problems (254 in the file; the 7 whose five option texts are not
all distinct are dropped, since two identical options cannot be told apart), with the same
ids apart from the split name (``ood_aqua-00012`` / ``ood_aqua_gen-00012``).

``ood_aqua`` (eval/choice.py): the prompt is the lab template with the question alone
("Question: {question}\\nAnswer:"), as for every gsm8k split, so each arm is prompted exactly
as on the generation splits (ICL: its demos in front); the choices are " " + each option's
text (e.g. " 5(√3 + 1)"), the gold is the correct option's text. Scored options are whole
texts, so this is a cloze-style multiple choice: a longer option has more tokens to pay for
(the sum, not the mean, of token log-probabilities is compared, as lm-evaluation-harness's
`acc`).

``ood_aqua_gen`` (eval/options.py): the question shows the options in the AQuA style of
Kojima et al. 2022 / Wei et al. 2022, "{question} Answer Choices: (A) 21 (B) 21.5 (C) 22
(D) 22.5 (E) 23", in the same lab template; the arm generates as on any gsm8k split, and
the option it chose is read from the generation: an explicit letter, else the number its
format gives (answer: the first number; CoT: "The answer is N"; code: what the program
prints) mapped to the option with that value, else a non-numeric option written verbatim.
The gold ``answer`` is the option letter ("C"), and the prediction is a letter; each
prediction records how it was matched (``match``: letter | number | text | none). Meta
keeps ``options`` ({letter: text}; it also marks the example as an option question for
eval/evaluate.py) and ``gold_letter``. ``rationale`` and ``program`` are empty: the split
is eval-only, like every gsm8k OOD set (AQuA's own rationales are not in the lab's format).
The smooth metric, log p(gold), is of " " + the gold option's text (" 22"): the value every
arm was taught to answer with (GSM8K answers are numbers, not letters), and the same
continuation as ``ood_aqua``'s gold choice, so the two splits' log p(gold) differ only by
the options shown in the prompt. One AQuA problem writes its letters twice ("A)A)59"); the
repeated "A)" is dropped from its options here.

The OOD mean counts AQuA once, by ``ood_aqua`` (as before the generation scoring existed):
``ood_aqua_gen`` is a column of its own but is left out of the OOD mean
(``lab.core.example.SECOND_SCORINGS``), so that the same problems do not weigh twice.
"""

from __future__ import annotations

import random
from typing import Any

from lab.core.example import Example
from lab.core.recipe import TaskCfg
from lab.tasks.gsm8k import build_gsm8k, load_aqua
from lab.tasks.gsm8k import describe as describe_gsm8k

SPLIT = "ood_aqua"
GEN_SPLIT = "ood_aqua_gen"


def aqua_problems(cfg: TaskCfg) -> tuple[list[dict[str, Any]], int]:
    """(usable AQuA problems, how many were dropped for repeated option texts)."""
    rows = load_aqua(cfg)
    keep = [r for r in rows if len(set(r["options"].values())) == len(r["options"])]
    return keep, len(rows) - len(keep)


def _sample(cfg: TaskCfg) -> list[dict[str, Any]]:
    """The seeded sample both AQuA splits hold, in source-file order."""
    rows, _dropped = aqua_problems(cfg)
    order = list(range(len(rows)))
    random.Random(f"gsm8k-{cfg.seed}-{SPLIT}").shuffle(order)
    return [rows[i] for i in sorted(order[: cfg.n_test])]


def _row(r: dict[str, Any]) -> int:
    return int(r["id"].split("-")[1])


def _example(split: str, r: dict[str, Any], question: str, answer: str, **fields: Any) -> Example:
    """One AQuA problem as an example of `split` (eval-only: no rationale, no program)."""
    meta = {"split": split, "source": "aqua", "row": _row(r), "gold_letter": r["answer"]}
    choices = fields.pop("choices", ())
    return Example(
        id=f"{split}-{_row(r):05d}", question=question, answer=answer, rationale="",
        program="", meta=meta | fields, choices=choices,
    )  # fmt: skip


def aqua_split(cfg: TaskCfg) -> list[Example]:
    """``ood_aqua``: multiple choice scored by the log-likelihood of each option."""
    out = []
    for r in _sample(cfg):
        letters = sorted(r["options"])
        choices = tuple(f" {r['options'][x]}" for x in letters)
        gold = r["options"][r["answer"]]
        out.append(
            _example(SPLIT, r, r["question"], gold, letters="".join(letters), choices=choices)
        )
    return out


def _option_text(letter: str, text: str) -> str:
    """The option's text without a repeated letter ("A)59" under "A)" -> "59")."""
    return text.removeprefix(f"{letter})").strip()


def with_choices(question: str, options: dict[str, str]) -> str:
    """The question followed by its options, AQuA style (Kojima et al. 2022):
    "... Answer Choices: (A) 21 (B) 21.5 (C) 22 (D) 22.5 (E) 23"."""
    shown = " ".join(f"({k}) {v}" for k, v in sorted(options.items()))
    return f"{question} Answer Choices: {shown}"


def aqua_gen_split(cfg: TaskCfg) -> list[Example]:
    """``ood_aqua_gen``: the same problems as ``ood_aqua``, the options in the question,
    scored by generation + option extraction (gold: the option letter)."""
    out = []
    for r in _sample(cfg):
        options = {k: _option_text(k, v) for k, v in sorted(r["options"].items())}
        question = with_choices(r["question"], options)
        out.append(_example(GEN_SPLIT, r, question, r["answer"], options=options))
    return out


def build_gsm8k_with_aqua(cfg: TaskCfg) -> dict[str, list[Example]]:
    """The gsm8k splits plus ``ood_aqua`` (multiple choice, scored by log-likelihood) and
    ``ood_aqua_gen`` (the same problems, scored by generation + option extraction)."""
    out = build_gsm8k(cfg)
    out[SPLIT] = aqua_split(cfg)
    out[GEN_SPLIT] = aqua_gen_split(cfg)
    return out


def describe() -> dict[str, str]:
    return describe_gsm8k() | {
        SPLIT: "OOD AQuA-RAT test (5-way multiple choice; 247 of 254 problems: 7 with repeated "
        "option texts dropped), seeded sample, scored by the log-likelihood of each option; "
        "AQuA's one entry in the OOD mean",
        GEN_SPLIT: f"OOD AQuA-RAT, the same problems as {SPLIT} with the options in the "
        "question ('Answer Choices: (A) ... (E) ...'), scored by generation: the option letter "
        "named, else the option whose value is the extracted number, else an option's text "
        f"(eval/options.py); not in the OOD mean (a second scoring of {SPLIT})",
    }
