"""Answer extraction per format, and the exact-match comparison."""

from __future__ import annotations

import re

from eval.sandbox import run_program

# A number in free text: thousands separators only in groups of three ("1,234,567"; "1,2,3"
# is three numbers), an optional decimal part (".5" too), and a minus sign only where it
# cannot be a hyphen or a subtraction ("-3", "x = -3", "$-3"; but "10-4" is 10 and 4,
# "20-year-old" is 20). Units, currency and trailing periods around the number are ignored.
# INT: the integer part (also used for option values, eval/options.py).
INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
_NUM = rf"(?:(?<![\w.])-)?(?:{INT}(?:\.\d+)?|(?<!\d)\.\d+)"
# "The answer is 18." / "the answer is: $1,234.50" / "The final answer is **-3** dollars" /
# GSM8K's own "#### 18".
_ANSWER_IS = re.compile(rf"(?:answer is|####)\s*:?\s*(?:\*\*)?\s*\$?\s*({_NUM})", re.IGNORECASE)
_NUMBER = re.compile(_NUM)


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
    m = _NUMBER.search(text)
    return normalize_number(m.group(0)) if m else None


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def extract_cot(text: str) -> str | None:
    """'... The answer is 94.' -> '94'; falls back to the last number in the text."""
    m = _ANSWER_IS.findall(text)
    return normalize_number(m[-1]) if m else last_number(text)


def extract(text: str, fmt: str, cot_prompted: bool = False, timeout_s: float = 5.0) -> dict:
    """{'pred': normalised answer or None, 'error': str or None} for one generation; for
    the code format also 'output', what the program printed ('' when it failed)."""
    if fmt == "code":
        result = run_program(text, timeout_s=timeout_s)
        if result.error:
            return {"pred": None, "error": result.error, "output": ""}
        out = result.stdout.strip().splitlines()
        pred = last_number(out[-1]) if out else None
        return {
            "pred": pred,
            "error": None if pred is not None else "program printed no number",
            "output": result.stdout,
        }
    if fmt == "cot" or cot_prompted:
        pred = extract_cot(text)
    else:
        pred = first_number(text)
    return {"pred": pred, "error": None if pred is not None else "no number in the generation"}


def is_correct(pred: str | None, gold: str) -> bool:
    return pred is not None and pred == normalize_number(gold)
