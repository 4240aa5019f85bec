"""How one example is scored: its explicit `output_type` (and, for generation, its answer
extractor), used by eval/evaluate.py instead of guessing from the fields an example carries.

Output types (a declarative task states one per split, lab/tasks/declarative.py):

- ``generate``: the model generates; the answer is read from the generation by the
  example's extractor and compared with the gold answer:
  ``number`` (the lab's number extraction, eval/extract.py: the first number of an answer,
  "The answer is N" or the last number of a CoT, the number a program prints),
  ``exact`` (the answer text itself: the first line of an answer, what follows the last
  "answer is" of a CoT, the last line a program prints; compared with the gold answer
  ignoring case, surrounding spaces and a final period),
  ``regex:<pattern>`` (the first match in the same text as ``exact`` reads from, its first
  group if it has one, compared like ``exact``),
  ``option_letter`` (the option chosen, eval/options.py; `meta["options"]` maps letters to
  option texts and the gold answer is a letter);
- ``multiple_choice``: the log-likelihood of each choice after the prompt (eval/choice.py);
- ``code``: the generated program passes the example's tests (`meta["tests"]`) in the
  sandbox (eval/codegen.py).

Examples of builders not yet moved to the declarative format carry no output type; theirs is
inferred as before: `choices` -> multiple_choice, `meta["tests"]` -> code, `meta["options"]`
-> generate with option_letter, anything else -> generate with number.
"""

from __future__ import annotations

import re
from typing import Any

from eval.codegen import run_tests
from eval.extract import extract
from eval.options import extract_option
from eval.sandbox import run_program
from lab.core.example import Example
from lab.core.numbers import is_correct

OUTPUT_TYPES = ("generate", "multiple_choice", "code")
EXTRACTORS = ("number", "exact", "option_letter", "regex")
_ANSWER_IS = re.compile(r"answer is\s*:?\s*", re.IGNORECASE)


def output_type(ex: Example) -> str:
    """The example's output type: its own, else the one inferred for an old builder's."""
    if ex.output_type:
        return ex.output_type
    if ex.choices:
        return "multiple_choice"
    return "code" if "tests" in ex.meta else "generate"


def extractor(ex: Example) -> str:
    """The answer extractor of a generated example (see the module docstring)."""
    if ex.extractor:
        return ex.extractor
    return "option_letter" if "options" in ex.meta else "number"


def normalize_text(text: str | None) -> str | None:
    """'  Paris. ' -> 'paris': how `exact` and `regex` answers are compared."""
    if text is None:
        return None
    s = " ".join(text.split()).rstrip(".").strip()
    return s.casefold() if s else None


def answer_text(
    text: str, fmt: str, cot_prompted: bool, timeout_s: float
) -> tuple[str | None, str | None]:
    """(the text an `exact` / `regex` answer is read from, error): the first line of an
    answer, what follows the last "answer is" of a CoT (else its last line), the last line
    a program prints."""
    if fmt == "code":
        res = run_program(text, timeout_s=timeout_s)
        if res.error:
            return None, res.error
        lines = [line for line in res.stdout.splitlines() if line.strip()]
        return (lines[-1], None) if lines else (None, "program printed nothing")
    if fmt == "cot" or cot_prompted:
        parts = _ANSWER_IS.split(text)
        tail = (parts[-1] if len(parts) > 1 else (text.strip().splitlines() or [""])[-1]).strip()
        return (tail.splitlines()[0] if tail else None), None
    lines = text.strip().splitlines()
    return (lines[0], None) if lines else (None, None)


def score_generation(
    text: str, ex: Example, fmt: str, cot_prompted: bool, timeout_s: float
) -> dict[str, Any]:
    """{'pred', 'passed', 'error'} for one generation of a generate or code example; an
    option question also gets 'match' and 'number' (how the option was read)."""
    if output_type(ex) == "code":
        return run_tests(text, ex.meta, timeout_s=timeout_s)
    how = extractor(ex)
    if how == "option_letter":
        got = extract_option(
            text, fmt, ex.meta["options"], cot_prompted=cot_prompted, timeout_s=timeout_s
        )
        return {**got, "passed": got["pred"] == ex.answer}
    if how == "number":
        got = extract(text, fmt, cot_prompted=cot_prompted, timeout_s=timeout_s)
        return {
            "pred": got["pred"],
            "error": got["error"],
            "passed": is_correct(got["pred"], ex.answer),
        }
    source, error = answer_text(text, fmt, cot_prompted, timeout_s)
    pred = source
    if how.startswith("regex:") and source is not None:
        m = re.search(how.removeprefix("regex:"), source)
        pred = (m.group(1) if m.groups() else m.group(0)) if m else None
    pred = normalize_text(pred)
    if pred is None and error is None:
        error = "no answer in the generation"
    return {
        "pred": pred,
        "error": error,
        "passed": pred is not None and pred == normalize_text(ex.answer),
    }
