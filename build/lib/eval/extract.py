"""Answer extraction per format, and the exact-match comparison."""

from __future__ import annotations

import re

from eval.sandbox import run_program
from lab.core.numbers import NUMBER, first_number, last_number, normalize_number

# "The answer is 18." / "the answer is: $1,234.50" / "The final answer is **-3** dollars" /
# GSM8K's own "#### 18".
_ANSWER_IS = re.compile(rf"(?:answer is|####)\s*:?\s*(?:\*\*)?\s*\$?\s*({NUMBER})", re.IGNORECASE)


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
