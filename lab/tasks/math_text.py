"""Numbers and one-line text for the math word-problem tasks (gsm8k and its OOD sets).

The task code normalises gold answers and verifies derived programs with these, not with
eval/: a task is data and does not depend on the evaluation. They follow eval/extract.py
exactly (tests/test_gsm8k.py checks that both agree), so that a gold answer normalised here
is the string the evaluation's extraction gives for the same number.
"""

from __future__ import annotations

import re

# A number in free text, as eval/extract.py reads one: thousands separators only in groups
# of three, an optional decimal part (".5" too), a minus sign only where it cannot be a
# hyphen or a subtraction ("10-4" is 10 and 4).
_INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
NUMBER = re.compile(rf"(?:(?<![\w.])-)?(?:{_INT}(?:\.\d+)?|(?<!\d)\.\d+)")


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


def last_number(text: str) -> str | None:
    """The last number in `text`, normalised ("s = 10-4" -> "4")."""
    found = NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def same_number(pred: str | None, gold: str) -> bool:
    """Is `pred` (a normalised number) the gold answer, as exact match scores it?"""
    return pred is not None and pred == normalize_number(gold)


def one_line(text: str) -> str:
    """The text with every run of whitespace (newlines too) replaced by one space."""
    return " ".join(text.split())
