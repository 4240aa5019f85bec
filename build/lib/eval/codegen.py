"""Score a generated program by running a problem's tests with it in the sandbox
(MBPP / HumanEval: pass@1 of the greedy generation)."""

from __future__ import annotations

import re
from typing import Any

from eval.sandbox import run_with_tests


def program_for(generation: str, meta: dict[str, Any]) -> str:
    """The program to test: the generation, after the task's `code_prefix` when it has one
    (HumanEval's signature and docstring: a generation that redefines the entry point
    replaces the prompt's stub, a function body completes it)."""
    prefix = meta.get("code_prefix")
    if not prefix:
        return generation
    entry = meta.get("entry_point")
    if entry and re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", generation, re.MULTILINE):
        return f"{prefix.rstrip()}\n\n\n{generation}"
    return prefix + generation


def run_tests(generation: str, meta: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """{'passed': bool, 'pred': 'pass' or None, 'error': why it failed or None}: passed only
    when the sandbox's harness reported that every test statement ran (eval/sandbox.py)."""
    if not generation.strip():
        return {"passed": False, "pred": None, "error": "empty generation"}
    res = run_with_tests(program_for(generation, meta), meta["tests"], timeout_s=timeout_s)
    if res.error:
        return {"passed": False, "pred": None, "error": res.error}
    return {"passed": True, "pred": "pass", "error": None}
