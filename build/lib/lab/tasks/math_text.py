"""One-line text for the math word-problem tasks (gsm8k and its OOD sets): the CoT stop
string is a newline, so questions and rationales are kept on one line. Numbers are read and
normalised by lab/core/numbers.py, the same functions the evaluation uses."""

from __future__ import annotations


def one_line(text: str) -> str:
    """The text with every run of whitespace (newlines too) replaced by one space."""
    return " ".join(text.split())
