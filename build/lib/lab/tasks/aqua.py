"""AQuA-RAT (5-way multiple choice) as OOD splits of the gsm8k task (lab/tasks/yaml/
gsm8k.yaml): hooks that read its options. The YAML scores it two ways on the same problems:
``ood_aqua`` by the log-likelihood of each option (output_type multiple_choice) and
``ood_aqua_gen`` by generation + option extraction (extract option_letter).

Both splits hold a seeded sample of at most ``task.n_test`` AQuA test problems (254 in the
file; the 7 whose five option texts are not all distinct are dropped, since two identical
options cannot be told apart), with the same ids apart from the split name
(``ood_aqua-00012`` / ``ood_aqua_gen-00012``): one sample tag for both.

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
repeated "A)" is dropped from its shown options (`option_texts`).

The OOD mean counts AQuA once, by ``ood_aqua`` (as before the generation scoring existed):
``ood_aqua_gen`` is a column of its own but is left out of the OOD mean
(``lab.core.example.SECOND_SCORINGS``), so that the same problems do not weigh twice.
"""

from __future__ import annotations

from typing import Any

from lab.core.errors import LabError
from lab.core.recipe import TaskCfg
from lab.tasks.math_sources import load_records
from lab.tasks.math_text import one_line


def aqua_row(rec: dict[str, Any]) -> dict[str, Any]:
    """Map hook: one AQuA record ({question, options: ["A)21", ...], correct, rationale}) ->
    question (one line), options {letter: text}, letters ("ABCDE"), choices (the option
    texts in letter order), option_texts (the same without a repeated letter: "A)A)59" ->
    "59"), answer (the correct letter), distinct (are the option texts all different?)."""
    if not isinstance(rec.get("question"), str) or rec.get("correct") is None:
        raise LabError(
            f"AQuA record without 'question' and 'correct' ({sorted(rec)}); fix the file or "
            "restore it (`git checkout -- data/`)"
        )
    options = {}
    for opt in rec.get("options") or []:
        letter, _, text = str(opt).partition(")")
        options[letter.strip()] = text.strip()
    letters = sorted(options)
    choices = [options[k] for k in letters]
    return {
        **rec,
        "question": one_line(rec["question"]),
        "options": options,
        "letters": "".join(letters),
        "choices": choices,
        "option_texts": [options[k].removeprefix(f"{k})").strip() for k in letters],
        "answer": str(rec["correct"]).strip(),
        "distinct": len(set(choices)) == len(choices),
    }


def hub_rows(cfg: TaskCfg) -> list[dict[str, Any]]:
    """Source hook for ``task.source: hub``: the upstream AQuA test.json (no canonical hub
    dataset; lab/tasks/math_sources.py)."""
    return load_records("aqua", cfg)


def aqua_problems(cfg: TaskCfg) -> tuple[list[dict[str, Any]], int]:
    """(usable AQuA problems as `aqua_row` rows, how many were dropped for repeated option
    texts), of `cfg`'s data."""
    rows = [aqua_row(r) for r in load_records("aqua", cfg)]
    keep = [r for r in rows if r["distinct"]]
    return keep, len(rows) - len(keep)
