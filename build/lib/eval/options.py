"""Option extraction: which option of a multiple-choice question a generation chose.

For a question shown with lettered options ("... Answer Choices: (A) 21 (B) 21.5 (C) 22
(D) 22.5 (E) 23"), scored by generation rather than by each option's log-likelihood
(AQuA's ``ood_aqua_gen``, lab/tasks/aqua.py). The arms were prompted with GSM8K-style demos
or fine-tuned on GSM8K answers, rationales or programs, so a generation may name a letter
or may just state a number; both are read, in this order:

1. ``letter``: an explicit option letter. The last one after "answer is" / "answer:" /
   "####" ("The answer is (C).", "answer is C", "answer: option C"); else a generation
   that starts with one ("C", "(C) 22", "C. 22", "C)"; a bare letter must end there, so
   "A farmer ..." is no letter); else, when the text states no final answer ("answer is"
   followed by something else, a number), a parenthesised letter "(C)" anywhere, if
   exactly one distinct letter is so written (several are an enumeration of the options).
2. ``number``: the number the arm's format normally gives (``eval.extract.extract``:
   answer format the first number, CoT "The answer is N" or the last number, code the
   number the program prints in the sandbox), mapped to the option whose value is that
   number (``option_value``: "$1,200" -> 1200, "5.5 km" -> 5.5, "16.7%" -> 16.7), when
   exactly one option has it (two options with the same value, "5% Loss" / "5% Profit":
   no answer). Values are compared after normalisation, exactly (no rounding).
3. ``text``: an option whose value is not a number ("None of these", "5(√3 + 1)",
   "I and II only") written verbatim in the generation (case-insensitive, whole words),
   when exactly one such option is (an option contained in a longer one that is also
   written, "II only" in "I and II only", does not count).
4. ``none``: no answer (scored wrong, counted in ``no_answer``).

For the code format, letters and option texts are looked for in what the program prints,
not in its source. The prediction is the letter; ``match`` says which rule gave it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from eval.extract import extract
from lab.core.numbers import INT, normalize_number

MATCH_KINDS = ("letter", "number", "text", "none")

# An option that is one number with at most a currency before it and a unit after it:
# "$1,200", "Rs. 570", "-17.5", "+30", "16.7%", "140°", "5.5 km", "3km", "10 hours.",
# "14 kmph", "80 km/hr", "9 Trousers". Not: "10/7", "2!", "5(√3 + 1)", "4y", "750pi",
# "1 hr 23 min", "11,12", "After 6 minutes" (the number must come first).
_CURRENCY = r"(?:\$|rs\.?|inr|usd|£|€)"
_OPTION_NUMBER = re.compile(
    rf"^{_CURRENCY}?\s*(?P<num>[-+]?\s*{INT}(?:\.\d+)?|[-+]?\.\d+)"
    r"(?P<unit>\s*[%°]?(?:\s*[a-z]+(?:/[a-z]+)?(?:\s+[a-z]+)*)?)\.?$",
    re.IGNORECASE,
)
# Letters written right after the number (no space) are a unit only if they are one of
# these; otherwise they make an expression ("4y", "750pi", "1000p").
_ATTACHED_UNITS = frozenset(
    "km kms m cm mm kg g gm gms l ml kmph mph h hr hrs min mins s sec secs".split()
)
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-"})  # "−17.5", "–3" as written in AQuA


def option_value(text: str) -> str | None:
    """The normalised number an option states ("$1,200" -> "1200", "5.5 km" -> "5.5",
    "-17.5" -> "-17.5"), or None when the option is not a single number with at most a
    currency sign and a unit around it ("10/7", "4y", "None of these")."""
    m = _OPTION_NUMBER.match(text.strip().translate(_MINUS))
    if not m:
        return None
    unit = m.group("unit")
    attached = re.match(r"[a-z]+", unit, re.IGNORECASE)
    if attached and attached.group(0).lower() not in _ATTACHED_UNITS:
        return None
    return normalize_number(m.group("num").replace(" ", "").lstrip("+"))


_ANSWER_IS = r"(?i:answer(?:\s+is|\s*:)|####)"  # "The answer is", "Answer:", GSM8K's "####"


def _letter_patterns(letters: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    cls = f"[{re.escape(letters)}]"
    # a bare letter ends there: "C", "C.", "C)", "C\n"; not "A farmer ..."
    bare = rf"({cls})(?=[.,;:)!*]|[^\S\n]*(?:\n|$))"
    after_answer = re.compile(
        rf"{_ANSWER_IS}\s*:?\s*(?:\*\*)?\s*(?i:(?:option|choice)\s+)?(?:\(({cls})\)|{bare})"
    )
    at_start = re.compile(rf"^\s*(?:\*\*)?(?:\(({cls})\)|{bare})")
    in_parens = re.compile(rf"\(({cls})\)")
    return after_answer, at_start, in_parens


def find_letter(text: str, letters: str) -> str | None:
    """The option letter `text` names explicitly (rule 1 of the module docstring), or None.
    `letters`: the question's option letters, e.g. "ABCDE"."""
    after_answer, at_start, in_parens = _letter_patterns(letters)
    found = [a or b for a, b in after_answer.findall(text)]
    if found:
        return found[-1]
    m = at_start.match(text)
    if m:
        return m.group(1) or m.group(2)
    if re.search(_ANSWER_IS, text):  # its final answer is stated, and it is not a letter
        return None
    distinct = set(in_parens.findall(text))
    return distinct.pop() if len(distinct) == 1 else None


def _spans(option: str, text: str) -> list[tuple[int, int]]:
    """Where `option` is written in `text` (case-insensitive, not inside a longer word)."""
    body = re.escape(option.strip())
    return [m.span() for m in re.finditer(rf"(?<!\w){body}(?!\w)", text, re.IGNORECASE)]


def find_option_text(text: str, options: Mapping[str, str]) -> str | None:
    """The letter of the one non-numeric option written verbatim in `text` (rule 3), or
    None when none or several are. An option written only inside another written option
    ("II only" in "I and II only") does not count."""
    spans = {
        k: _spans(v, text) for k, v in options.items() if v.strip() and option_value(v) is None
    }
    spans = {k: v for k, v in spans.items() if v}

    def inside(a: tuple[int, int], k: str) -> bool:  # within another option's text
        return any(b[0] <= a[0] and a[1] <= b[1] for o in spans if o != k for b in spans[o])

    keep = [k for k, v in spans.items() if not all(inside(a, k) for a in v)]
    return keep[0] if len(keep) == 1 else None


def option_for_number(number: str | None, options: Mapping[str, str]) -> str | None:
    """The letter of the one option whose value equals `number` (rule 2), or None."""
    if number is None:
        return None
    same = [k for k, v in options.items() if option_value(v) == number]
    return same[0] if len(same) == 1 else None


def extract_option(
    text: str,
    fmt: str,
    options: Mapping[str, str],
    cot_prompted: bool = False,
    timeout_s: float = 5.0,
) -> dict[str, Any]:
    """{'pred': option letter or None, 'match': letter | number | text | none, 'number':
    the format's extracted number or None, 'error': str or None} for one generation of an
    arm in format `fmt` on a question with `options` ({letter: option text})."""
    got = extract(text, fmt, cot_prompted=cot_prompted, timeout_s=timeout_s)
    answer_text = got["output"] if fmt == "code" else text
    number = got["pred"]
    letter = find_letter(answer_text, "".join(sorted(options)))
    if letter is not None:
        return {"pred": letter, "match": "letter", "number": number, "error": None}
    letter = option_for_number(number, options)
    if letter is not None:
        return {"pred": letter, "match": "number", "number": number, "error": None}
    letter = find_option_text(answer_text, options)
    if letter is not None:
        return {"pred": letter, "match": "text", "number": number, "error": None}
    if number is not None:
        same = sum(option_value(v) == number for v in options.values())
        error = f"{number} is the value of {'several options' if same else 'no option'}"
    else:  # the program failed, or there is no number in the answer
        error = f"{got['error']}; no option letter or option text either"
    return {"pred": None, "match": "none", "number": number, "error": error}
