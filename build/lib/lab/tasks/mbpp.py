"""MBPP helpers. The ``mbpp_humaneval`` task (MBPP -> HumanEval, code generation scored by
running each problem's tests in the sandbox) is declarative: ``lab/tasks/yaml/mbpp_humaneval.yaml``
(splits, ids, prompts, tests); `clean_code` is the Jinja filter its reference programs use
(lab/tasks/templates.py).
"""

from __future__ import annotations


def clean_code(code: str) -> str:
    """No carriage returns, tabs expanded (Python's own tab stops), no trailing spaces, no
    blank lines: one block that the code stop string cannot cut."""
    lines = [line.expandtabs(8).rstrip() for line in code.replace("\r\n", "\n").split("\n")]
    return "\n".join(line for line in lines if line.strip())
