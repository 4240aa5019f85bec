"""Synthetic multi-step arithmetic with controlled distribution shifts.

A problem is a start number followed by a chain of steps; each step is one op: add n,
subtract n, or multiply by m (m in 2..9). Every intermediate and final result is a
non-negative integer (a subtraction never goes below 0), and a problem has at most one
multiply. Sequences are kept deliberately short because every token costs training time.

Splits (all generated deterministically from ``ArithmeticConfig.seed``):

Two size knobs, ``digits`` (D, default 2) and ``steps`` (S, default 2); the defaults give
the original task example for example (same ids, questions, answers and random streams):

- ``train`` / ``dev`` / ``test`` (in-distribution): exactly S steps; the start number and
  the add/subtract operands have at most D digits (1..10^D - 1; 1..99 by default); phrased
  with one of 3 ID templates.
- ``ood_digits``: as ID, but the start number and add/subtract operands have exactly
  D + 1 digits (10^D..10^(D+1) - 1; 100..999 by default). Shift in *number size*.
- ``ood_steps``: ID sizes and templates, but S + 1 or S + 2 steps (3 or 4 by default).
  Shift in *chain length*.
- ``ood_phrasing``: ID sizes and S steps, but phrased with 2 held-out templates (a short
  story about a person's items, and an imperative "Compute (a + b) * c." form) that never
  appear in train/dev/test. Shift in *surface form* only.

No leakage: a problem's signature is (start, ((op, operand), ...)); dev never shares a
signature with train, no eval split (test / ood_*) shares one with train or dev, and the
eval splits are also disjoint from each other; each split is deduplicated. Collisions are
resolved by resampling.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from lab.core.errors import LabError
from lab.core.example import Example

SPLITS: tuple[str, ...] = ("train", "dev", "test", "ood_digits", "ood_steps", "ood_phrasing")

ID_TEMPLATES: tuple[str, ...] = ("id_start", "id_take", "id_begin")
HELDOUT_TEMPLATES: tuple[str, ...] = ("ood_story", "ood_compute")

ID_RANGE = (1, 99)  # the default (digits 2)
OOD_DIGIT_RANGE = (100, 999)  # the default (digits 2)
MUL_RANGE = (2, 9)
MAX_DIGITS = 6  # params.digits in 1..MAX_DIGITS
MAX_STEPS = 6  # params.steps in 1..MAX_STEPS

Step = tuple[str, int]  # (op symbol in "+-*", operand)
Signature = tuple[int, tuple[Step, ...]]


@dataclass(frozen=True)
class ArithmeticConfig:
    seed: int = 0
    n_train: int = 2000  # train pool (demos and fine-tuning data are drawn from it)
    n_dev: int = 100  # ID dev split (model selection)
    n_test: int = 100  # size of EACH eval split (ID test and every OOD split)
    ops: str = "+-*"  # the operations problems use (every split); "+-" drops multiplication
    digits: int = 2  # ID operands have at most this many digits; ood_digits exactly one more
    steps: int = 2  # ID (and ood_digits / ood_phrasing) chain length; ood_steps +1 or +2


@dataclass(frozen=True)
class _SplitSpec:
    num_range: tuple[int, int]
    steps: tuple[int, ...]
    templates: tuple[str, ...]


def id_range(digits: int = 2) -> tuple[int, int]:
    """The ID start / add / subtract operand range: 1 .. 10^digits - 1 (1..99 for 2)."""
    return 1, 10**digits - 1


def ood_digit_range(digits: int = 2) -> tuple[int, int]:
    """The ood_digits operand range: exactly digits + 1 digits (100..999 for 2)."""
    return 10**digits, 10 ** (digits + 1) - 1


def _specs(digits: int, steps: int) -> dict[str, _SplitSpec]:
    ids, ood = id_range(digits), ood_digit_range(digits)
    return {
        "train": _SplitSpec(ids, (steps,), ID_TEMPLATES),
        "dev": _SplitSpec(ids, (steps,), ID_TEMPLATES),
        "test": _SplitSpec(ids, (steps,), ID_TEMPLATES),
        "ood_digits": _SplitSpec(ood, (steps,), ID_TEMPLATES),
        "ood_steps": _SplitSpec(ids, (steps + 1, steps + 2), ID_TEMPLATES),
        "ood_phrasing": _SplitSpec(ids, (steps,), HELDOUT_TEMPLATES),
    }


def describe(digits: int = 2, steps: int = 2) -> dict[str, str]:
    """One-line human description of each split, in split order (for params digits, steps)."""
    lo, hi = id_range(digits)
    olo, ohi = ood_digit_range(digits)
    n = f"{steps} step{'s' if steps > 1 else ''}"
    return {
        "train": f"ID pool: {n} (ops +, -, * by default; task.params.ops), numbers {lo}..{hi} "
        f"(params.digits {digits}), 3 ID templates",
        "dev": "ID dev (not used by the arms): same distribution as train, disjoint problems",
        "test": "ID test: same distribution as train, disjoint from train/dev",
        "ood_digits": f"OOD number size: {n}, ID templates, {digits + 1}-digit numbers "
        f"({olo}..{ohi})",
        "ood_steps": f"OOD chain length: {steps + 1}-{steps + 2} steps, ID templates and "
        f"numbers {lo}..{hi}",
        "ood_phrasing": f"OOD surface form: {n}, numbers {lo}..{hi}, 2 held-out templates "
        "(story, 'Compute (a + b) * c.')",
    }


# --------------------------------------------------------------------------- sampling


def _sample_problem(
    rng: random.Random, spec: _SplitSpec, allowed: str = "+-*"
) -> tuple[int, list[Step]]:
    lo, hi = spec.num_range
    n_steps = rng.choice(spec.steps)
    start = rng.randint(lo, hi)
    value = start
    steps: list[Step] = []
    used_mul = False
    for _ in range(n_steps):
        ops = ["+"]
        if value >= lo and "-" in allowed:  # a subtraction that cannot go below 0 exists
            ops.append("-")
        if not used_mul and value > 0 and "*" in allowed:  # at most one multiply; never 0 * m
            ops.append("*")
        op = rng.choice(ops)
        if op == "+":
            n = rng.randint(lo, hi)
            value += n
        elif op == "-":
            n = rng.randint(lo, min(hi, value))
            value -= n
        else:
            n = rng.randint(*MUL_RANGE)
            value *= n
            used_mul = True
        steps.append((op, n))
    return start, steps


# --------------------------------------------------------------------------- rendering

_ID_VERBS: dict[str, dict[str, str]] = {
    "id_start": {"+": "add {n}", "-": "subtract {n}", "*": "multiply by {n}"},
    "id_take": {"+": "add {n}", "-": "take away {n}", "*": "multiply by {n}"},
    "id_begin": {"+": "add {n}", "-": "subtract {n}", "*": "multiply by {n}"},
}

_NAMES: tuple[tuple[str, str], ...] = (
    ("Mia", "She"),
    ("Leo", "He"),
    ("Ava", "She"),
    ("Sam", "He"),
    ("Zoe", "She"),
    ("Ben", "He"),
)
_ITEMS: tuple[tuple[str, str], ...] = (
    ("marble", "marbles"),
    ("sticker", "stickers"),
    ("coin", "coins"),
    ("card", "cards"),
    ("shell", "shells"),
    ("stamp", "stamps"),
)


def _render_id(template: str, start: int, steps: list[Step]) -> str:
    verbs = _ID_VERBS[template]
    phrases = [verbs[op].format(n=n) for op, n in steps]
    if template == "id_start":
        # "Start with 12. Add 35. Then multiply by 2. What is the result?"
        parts = [f"Start with {start}.", phrases[0].capitalize() + "."]
        parts += [f"Then {p}." for p in phrases[1:]]
        return " ".join(parts) + " What is the result?"
    if template == "id_take":
        # "Take 12, add 35, then multiply by 2. What number do you get?"
        chain = ", ".join([phrases[0]] + [f"then {p}" for p in phrases[1:]])
        return f"Take {start}, {chain}. What number do you get?"
    if template == "id_begin" and len(phrases) == 1:
        # "Begin at 12 and add 35. What is the final number?" (params.steps 1)
        return f"Begin at {start} and {phrases[0]}. What is the final number?"
    if template == "id_begin":
        # "Begin at 12, add 35 and then multiply by 2. What is the final number?"
        head = ", ".join(phrases[:-1])
        return f"Begin at {start}, {head} and then {phrases[-1]}. What is the final number?"
    raise ValueError(f"unknown ID template {template!r}")


def _render_story(rng: random.Random, start: int, steps: list[Step]) -> str:
    # "Mia has 12 marbles. She gets 35 more. Then she ends up with 2 times as many.
    #  How many marbles does Mia have now?"
    name, pronoun = rng.choice(_NAMES)
    singular, plural = rng.choice(_ITEMS)
    parts = [f"{name} has {start} {singular if start == 1 else plural}."]
    for i, (op, n) in enumerate(steps):
        subj = pronoun if i == 0 else f"Then {pronoun.lower()}"
        if op == "+":
            parts.append(f"{subj} gets {n} more.")
        elif op == "-":
            parts.append(f"{subj} gives away {n}.")
        else:
            parts.append(f"{subj} ends up with {n} times as many.")
    parts.append(f"How many {plural} does {name} have now?")
    return " ".join(parts)


def _render_compute(start: int, steps: list[Step]) -> str:
    # "Compute (12 + 35) * 2." -- fully left-nested, outermost parentheses omitted.
    expr = str(start)
    for i, (op, n) in enumerate(steps):
        if i > 0:
            expr = f"({expr})"
        expr = f"{expr} {op} {n}"
    return f"Compute {expr}."


def _render(rng: random.Random, template: str, start: int, steps: list[Step]) -> str:
    if template in ID_TEMPLATES:
        return _render_id(template, start, steps)
    if template == "ood_story":
        return _render_story(rng, start, steps)
    if template == "ood_compute":
        return _render_compute(start, steps)
    raise ValueError(f"unknown template {template!r}")


_APPLY: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


def _make_example(
    split: str, i: int, rng: random.Random, spec: _SplitSpec, start: int, steps: list[Step]
) -> Example:
    template = rng.choice(spec.templates)
    question = _render(rng, template, start, steps)
    value = start
    equations: list[str] = []
    lines: list[str] = []
    prev = str(start)
    for k, (op, n) in enumerate(steps, 1):
        new = _APPLY[op](value, n)
        assert new >= 0
        equations.append(f"{value} {op} {n} = {new}.")
        lines.append(f"s{k} = {prev} {op} {n}")
        prev = f"s{k}"
        value = new
    answer = str(value)
    lines.append(f"print({prev})")
    rationale = " ".join(equations) + f" The answer is {answer}."
    digits = max(len(str(x)) for x in [start] + [n for _, n in steps])
    meta = {
        "split": split,
        "steps": len(steps),
        "digits": digits,
        "template": template,
        "ops": [op for op, _ in steps],
    }
    return Example(
        id=f"{split}-{i:05d}",
        question=question,
        answer=answer,
        rationale=rationale,
        program="\n".join(lines),
        meta=meta,
    )


def signature(ex: Example) -> Signature:
    """The problem identity of an example: (start, ((op, operand), ...)), parsed from its
    program, independent of phrasing."""
    lines = ex.program.splitlines()[:-1]
    start = int(lines[0].split(" = ", 1)[1].split()[0])
    steps = []
    for line in lines:
        _, op, n = line.split(" = ", 1)[1].split()
        steps.append((op, int(n)))
    return start, tuple(steps)


def build_arithmetic(cfg: ArithmeticConfig) -> dict[str, list[Example]]:
    """Returns splits: "train", "dev", "test", "ood_digits", "ood_steps", "ood_phrasing"
    (in this order). Deterministic in ``cfg`` across processes and hash seeds."""
    sizes = {"train": cfg.n_train, "dev": cfg.n_dev}
    for split in SPLITS[2:]:
        sizes[split] = cfg.n_test
    for split, n in sizes.items():
        if n < 0:
            raise ValueError(f"split size for {split!r} must be >= 0, got {n}")
    specs = _specs(cfg.digits, cfg.steps)

    taken: set[Signature] = set()  # signatures of every earlier split (train, dev, evals)
    out: dict[str, list[Example]] = {}
    for split in SPLITS:
        spec = specs[split]
        rng = random.Random(f"arith-{cfg.seed}-{split}")
        examples: list[Example] = []
        attempts = 0
        max_attempts = 1000 + 100 * sizes[split]
        while len(examples) < sizes[split]:
            attempts += 1
            if attempts > max_attempts:
                raise LabError(
                    f"task arithmetic: could not sample {sizes[split]} unique {split!r} problems "
                    f"with params digits={cfg.digits}, steps={cfg.steps}, ops={cfg.ops!r} (too "
                    "few distinct problems); lower task.n_train / n_dev / n_test or raise "
                    "params.digits or params.steps"
                )
            start, steps = _sample_problem(rng, spec, cfg.ops)
            sig: Signature = (start, tuple(steps))
            if sig in taken:
                continue  # resample: duplicate within split or leak across splits
            taken.add(sig)
            examples.append(_make_example(split, len(examples), rng, spec, start, steps))
        out[split] = examples
    return out


@cache
def _built(cfg: ArithmeticConfig) -> dict[str, list[Example]]:
    return build_arithmetic(cfg)


def config_from_task(task: Any) -> ArithmeticConfig:
    """The generator's config for a recipe's task (seed, sizes, params ops / digits / steps);
    a parameter it does not understand is a LabError naming the fix."""
    params = dict(task.params)
    ops = params.get("ops", "+-*")
    digits, steps = params.get("digits", 2), params.get("steps", 2)
    if not isinstance(ops, str) or not ops or set(ops) - set("+-*") or "+" not in ops:
        raise LabError(
            f"task arithmetic: params.ops={ops!r} not understood; give a string of operations "
            "from '+-*' that includes '+' (e.g. ops: '+-'); the other params are `digits`, "
            "`steps` and `probes` (lab/tasks/probes.py)"
        )
    for key, value, top in (("digits", digits, MAX_DIGITS), ("steps", steps, MAX_STEPS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise LabError(
                f"task arithmetic: params.{key}={value!r} not understood; give a whole number "
                f"from 1 to {top} (e.g. {key}: 1; default 2)"
            )
    return ArithmeticConfig(task.seed, task.n_train, task.n_dev, task.n_test, ops, digits, steps)


def split_rows(task: Any, split: str) -> list[dict[str, Any]]:
    """The generator as a declarative task's source hook (`source: {hook:
    lab.tasks.arithmetic:split_rows, args: {split: ood_steps}}`; lab/tasks/yaml/arithmetic.yaml):
    one generated split, at the task's seed, sizes and `params` (ops, digits, steps), as rows
    (id, question, answer, rationale, program, and the meta fields: steps, digits, template,
    ops). Take them whole (`sample: all`): the generator already sampled them."""
    cfg = config_from_task(task)
    return [
        {
            **ex.meta,
            "id": ex.id,
            "question": ex.question,
            "answer": ex.answer,
            "rationale": ex.rationale,
            "program": ex.program,
        }
        for ex in _built(cfg)[split]
    ]
