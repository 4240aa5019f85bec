"""Numbers in free text: finding them, normalising them, and the exact-match comparison.

One definition for the tasks (a gold answer normalised when a task is built, a derived
program verified) and for the evaluation (a prediction extracted from a generation), so
that a gold answer is always the string the extraction gives for the same number.
"""

from __future__ import annotations

import re

# A number in free text: thousands separators only in groups of three ("1,234,567"; "1,2,3"
# is three numbers), an optional decimal part (".5" too), and a minus sign only where it
# cannot be a hyphen or a subtraction ("-3", "x = -3", "$-3"; but "10-4" is 10 and 4,
# "20-year-old" is 20). Units, currency and trailing periods around the number are ignored.
# INT: the integer part (also used for option values, eval/options.py).
INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
NUMBER = rf"(?:(?<![\w.])-)?(?:{INT}(?:\.\d+)?|(?<!\d)\.\d+)"
NUMBER_RE = re.compile(NUMBER)


def normalize_number(text: str | None) -> str | None:
    """'1,234.0' -> '1234'; '3.50' -> '3.5'; '$18' -> '18'; None/garbage -> None."""
    if text is None:
        return None
    s = text.strip().replace(",", "").lstrip("$").strip().rstrip(".")
    try:
        value = float(s)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return str(int(value)) if value == int(value) else repr(value)


def first_number(text: str) -> str | None:
    """The first number in `text`, normalised."""
    m = NUMBER_RE.search(text)
    return normalize_number(m.group(0)) if m else None


def last_number(text: str) -> str | None:
    """The last number in `text`, normalised ("s = 10-4" -> "4")."""
    found = NUMBER_RE.findall(text)
    return normalize_number(found[-1]) if found else None


def is_correct(pred: str | None, gold: str) -> bool:
    """Is `pred` (a normalised number) the gold answer, as exact match scores it?"""
    return pred is not None and pred == normalize_number(gold)
