"""The CoT and code formats of a GSM8K problem, derived from its reference solution.

- answer: the number after ``####``, normalised (``1,200`` -> ``1200``): `gsm8k_gold`.
- rationale: the GSM8K solution with its ``<<48/2=24>>`` calculator annotations removed,
  its lines joined into one line (a period added where a line has no final punctuation),
  ending ``The answer is N.``: one line, as the CoT stop string requires
  (`clean_rationale`).
- program: one assignment per calculator annotation (``s1 = 48 / 2``), a literal replaced
  by the variable of the most recent earlier step with that value unless the number occurs
  in the question, then ``print(s<last>)`` (`derive_program`). Verified when the task is
  built by running it with a restricted in-process interpreter of straight-line arithmetic
  (`run_arithmetic`; same output as CPython, tested against the sandbox) and scoring its
  output exactly as the code-format evaluation does (`verify_program`). Problems whose
  program fails (no annotations, or the last step is not the gold answer) keep
  ``program = ""`` and say why; ``lab.core.example.usable(examples, "code")`` drops them for
  code-format training and demos.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from typing import Any

from lab.core.numbers import is_correct, last_number, normalize_number
from lab.tasks.math_text import one_line

ANNOTATION = re.compile(r"<<([^<>]*)>>")
_QUESTION_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")


def gsm8k_gold(solution: str) -> str | None:
    """The normalised final answer after '####'."""
    _, sep, tail = solution.rpartition("####")
    return normalize_number(tail) if sep else None


def clean_rationale(solution: str, answer: str) -> str:
    """The GSM8K solution as a one-line CoT: annotations removed, lines joined, ending
    'The answer is N.'."""
    body = ANNOTATION.sub("", solution.rpartition("####")[0] or solution)
    sentences = []
    for line in body.splitlines():
        line = one_line(line)
        if not line:
            continue
        if line[-1] not in ".!?:;,":
            line += "."
        sentences.append(line)
    return " ".join([*sentences, f"The answer is {answer}."])


# A restricted evaluator for straight-line arithmetic: what the derived programs contain.
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _eval_expr(node: ast.AST, env: dict[str, Any]) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _eval_expr(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _eval_expr(node.left, env), _eval_expr(node.right, env)
        if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 1e12):
            raise ValueError("power too large")
        return _BINOPS[type(node.op)](a, b)
    raise ValueError(f"not allowed in an arithmetic program: {ast.unparse(node)!r}")


def run_arithmetic(program: str) -> str:
    """Run a straight-line arithmetic program (`name = <arithmetic>` lines, `print(<expr>)`
    lines) in-process and return what it prints: the same output as CPython for such
    programs. Anything else raises ValueError; arithmetic errors raise as in Python."""
    env: dict[str, Any] = {}
    out: list[str] = []
    for stmt in ast.parse(program).body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            env[stmt.targets[0].id] = _eval_expr(stmt.value, env)
        elif (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "print"
            and not stmt.value.keywords
        ):
            out.append(" ".join(str(_eval_expr(a, env)) for a in stmt.value.args))
        else:
            raise ValueError(f"line {stmt.lineno}: not an assignment or print")
    return "".join(line + "\n" for line in out)


def verify_program(program: str, gold: str) -> bool:
    """Does the program print the gold answer, scored as the code-format evaluation scores
    a generation (last number of the last printed line, exact match after normalising)?"""
    try:
        lines = run_arithmetic(program).strip().splitlines()
    except (ValueError, ArithmeticError, SyntaxError):
        return False
    return bool(lines) and is_correct(last_number(lines[-1]), gold)


class _Substitute(ast.NodeTransformer):
    """Replace a literal by the variable of the most recent earlier step with its value."""

    def __init__(self, steps: list[tuple[str, float | None, float]], avoid: set[float], mode):
        self.steps, self.avoid, self.mode = steps, avoid, mode

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        v = node.value
        if type(v) not in (int, float) or v in self.avoid:
            return node
        for var, annotated, computed in reversed(self.steps):
            if computed == v or (self.mode == "annotated" and annotated == v):
                return ast.Name(id=var, ctx=ast.Load())
        return node


def _to_float(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").strip())
    except ValueError:
        return None


def _build_program(annotations: list[str], avoid: set[float], mode: str) -> str:
    steps: list[tuple[str, float | None, float]] = []
    env: dict[str, Any] = {}
    lines = []
    for k, ann in enumerate(annotations, 1):
        expr, sep, result = ann.rpartition("=")
        if not sep:
            raise ValueError(f"annotation without '=': <<{ann}>>")
        tree = ast.parse(expr.strip(), mode="eval")
        if mode != "literal":
            tree = _Substitute(steps, avoid, mode).visit(tree)
        value = _eval_expr(tree.body, env)
        var = f"s{k}"
        env[var] = value
        steps.append((var, _to_float(result), value))
        lines.append(f"{var} = {ast.unparse(tree)}")
    lines.append(f"print(s{len(annotations)})")
    return "\n".join(lines)


def derive_program(question: str, solution: str, gold: str) -> tuple[str, str | None]:
    """(program, None) when a program derived from the calculator annotations prints the
    gold answer, else ("", why). Substitution tries, in order: literals equal to an earlier
    step's annotated or computed result; computed results only (annotated results are
    sometimes rounded); no substitution. The first variant that verifies wins."""
    annotations = ANNOTATION.findall(solution)
    if not annotations:
        return "", "no calculator annotations"
    avoid = {float(m) for m in _QUESTION_NUMBER.findall(question.replace(",", ""))}
    why = "last step is not the gold answer"
    for mode in ("annotated", "computed", "literal"):
        try:
            program = _build_program(annotations, avoid, mode)
        except (SyntaxError, ValueError, ArithmeticError) as e:
            why = f"annotation not evaluable ({type(e).__name__})"
            continue
        if verify_program(program, gold):
            return program, None
    return "", why
