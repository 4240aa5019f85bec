"""Tests for the synthetic arithmetic task: determinism, real shifts, correctness, no leakage."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from digests import split_digest

from lab.core.example import Example
from lab.tasks.arithmetic import ArithmeticConfig, build_arithmetic, describe

REPO = Path(__file__).resolve().parents[2]
SPLITS = ["train", "dev", "test", "ood_digits", "ood_steps", "ood_phrasing"]
ID_SPLITS = ["train", "dev", "test"]
EVAL_SPLITS = ["test", "ood_digits", "ood_steps", "ood_phrasing"]
SMALL = ArithmeticConfig(seed=3, n_train=300, n_dev=40, n_test=50)

EQ_RE = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)\.")
LINE_RE = re.compile(r"s(\d+) = (\d+|s\d+) ([-+*]) (\d+)")


@pytest.fixture(scope="module")
def data() -> dict[str, list[Example]]:
    return build_arithmetic(ArithmeticConfig())


def _parse_program(program: str) -> tuple[int, list[tuple[str, int]]]:
    """(start, [(op, operand), ...]) parsed from the program, independently of the module."""
    *lines, last = program.splitlines()
    assert re.fullmatch(rf"print\(s{len(lines)}\)", last), program
    start = None
    steps = []
    for k, line in enumerate(lines, 1):
        m = LINE_RE.fullmatch(line)
        assert m, line
        assert int(m.group(1)) == k
        lhs = m.group(2)
        if k == 1:
            start = int(lhs)
        else:
            assert lhs == f"s{k - 1}", line
        steps.append((m.group(3), int(m.group(4))))
    assert start is not None
    return start, steps


def _sig(ex: Example) -> tuple:
    start, steps = _parse_program(ex.program)
    return start, tuple(steps)


def _run_program(program: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(program, "<program>", "exec"), {"__builtins__": {"print": print}})
    return buf.getvalue()


# ------------------------------------------------------------------------- structure


def test_split_names_order_and_sizes() -> None:
    out = build_arithmetic(SMALL)
    assert list(out) == SPLITS
    want = {"train": 300, "dev": 40}
    for name in SPLITS:
        assert len(out[name]) == want.get(name, 50), name


def test_default_sizes(data: dict[str, list[Example]]) -> None:
    cfg = ArithmeticConfig()
    assert len(data["train"]) == cfg.n_train
    assert len(data["dev"]) == cfg.n_dev
    for name in EVAL_SPLITS:
        assert len(data[name]) == cfg.n_test


def test_ids_meta_and_answers(data: dict[str, list[Example]]) -> None:
    for name, exs in data.items():
        for i, ex in enumerate(exs):
            assert isinstance(ex, Example)
            assert ex.id == f"{name}-{i:05d}"
            assert ex.meta["split"] == name
            assert set(ex.meta) >= {"split", "steps", "digits", "template", "ops"}
            assert ex.answer == str(int(ex.answer)) and int(ex.answer) >= 0
            assert ex.meta["steps"] == len(ex.meta["ops"])
            start, steps = _parse_program(ex.program)
            assert ex.meta["ops"] == [op for op, _ in steps]
            assert ex.meta["digits"] == max(len(str(x)) for x in [start] + [n for _, n in steps])
            assert "\n" not in ex.question and "\n" not in ex.rationale
            assert str(start) in ex.question


def test_describe_covers_all_splits() -> None:
    d = describe()
    assert list(d) == SPLITS
    assert all(isinstance(v, str) and v and "\n" not in v for v in d.values())


# ------------------------------------------------------------------------- determinism


def test_deterministic_in_process() -> None:
    a, b = build_arithmetic(SMALL), build_arithmetic(SMALL)
    assert a == b
    assert split_digest(a) == split_digest(b)


def test_deterministic_across_hash_seeds() -> None:
    code = (
        "import hashlib, json\n"
        "from lab.tasks.arithmetic import ArithmeticConfig, build_arithmetic\n"
        "out = build_arithmetic(ArithmeticConfig(seed=3, n_train=300, n_dev=40, n_test=50))\n"
        "h = hashlib.sha256()\n"
        "for name, exs in out.items():\n"
        "    for ex in exs:\n"
        "        h.update(json.dumps([name, ex.to_dict()], sort_keys=True).encode())\n"
        "print(h.hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        res = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        digests.add(res.stdout.strip())
    assert digests == {split_digest(build_arithmetic(SMALL))}


def test_different_seed_gives_different_data() -> None:
    a = build_arithmetic(SMALL)
    b = build_arithmetic(ArithmeticConfig(seed=4, n_train=300, n_dev=40, n_test=50))
    for name in SPLITS:
        qa = [ex.question for ex in a[name]]
        qb = [ex.question for ex in b[name]]
        assert qa != qb, name
        assert len(set(qa) & set(qb)) < len(qa) // 2, name


# ------------------------------------------------------------------------- shifts


def _id_templates(data: dict[str, list[Example]]) -> set[str]:
    return {ex.meta["template"] for name in ID_SPLITS for ex in data[name]}


def test_id_splits_in_distribution(data: dict[str, list[Example]]) -> None:
    for name in ID_SPLITS:
        for ex in data[name]:
            start, steps = _parse_program(ex.program)
            assert ex.meta["steps"] == 2 == len(steps)
            assert 1 <= start <= 99
            for op, n in steps:
                assert 2 <= n <= 9 if op == "*" else 1 <= n <= 99
            assert [op for op, _ in steps].count("*") <= 1
            assert ex.meta["digits"] <= 2
    assert len(_id_templates(data)) == 3


def test_ood_digits_has_three_digit_operands(data: dict[str, list[Example]]) -> None:
    id_templates = _id_templates(data)
    for ex in data["ood_digits"]:
        start, steps = _parse_program(ex.program)
        assert len(steps) == 2
        assert 100 <= start <= 999
        for op, n in steps:
            assert 2 <= n <= 9 if op == "*" else 100 <= n <= 999
        assert ex.meta["digits"] == 3
        assert ex.meta["template"] in id_templates


def test_ood_steps_has_longer_chains(data: dict[str, list[Example]]) -> None:
    id_templates = _id_templates(data)
    lengths = set()
    for ex in data["ood_steps"]:
        start, steps = _parse_program(ex.program)
        assert ex.meta["steps"] == len(steps) in (3, 4)
        lengths.add(len(steps))
        assert 1 <= start <= 99
        for op, n in steps:
            assert 2 <= n <= 9 if op == "*" else 1 <= n <= 99
        assert ex.meta["template"] in id_templates
    assert lengths == {3, 4}


def test_ood_phrasing_uses_held_out_templates(data: dict[str, list[Example]]) -> None:
    id_templates = _id_templates(data)
    ood_templates = {ex.meta["template"] for ex in data["ood_phrasing"]}
    assert len(ood_templates) == 2
    assert ood_templates.isdisjoint(id_templates)
    for ex in data["ood_phrasing"]:
        start, steps = _parse_program(ex.program)
        assert ex.meta["steps"] == 2 == len(steps)
        assert 1 <= start <= 99
        for op, n in steps:
            assert 2 <= n <= 9 if op == "*" else 1 <= n <= 99
    # surface form really differs: no ID question opening appears in the held-out split
    id_openings = {" ".join(ex.question.split()[:2]) for n in ID_SPLITS for ex in data[n]}
    ood_openings = {" ".join(ex.question.split()[:2]) for ex in data["ood_phrasing"]}
    assert id_openings.isdisjoint(ood_openings)


# ------------------------------------------------------------------------- correctness


def test_rationales_are_correct(data: dict[str, list[Example]]) -> None:
    for exs in data.values():
        for ex in exs:
            assert ex.rationale.endswith(f"The answer is {ex.answer}.")
            body = ex.rationale[: -len(f"The answer is {ex.answer}.")].strip()
            eqs = EQ_RE.findall(body)
            assert " ".join(f"{a} {op} {b} = {c}." for a, op, b, c in eqs) == body
            start, steps = _parse_program(ex.program)
            assert len(eqs) == len(steps) == ex.meta["steps"]
            value = start
            for (a, op, b, c), (p_op, p_n) in zip(eqs, steps, strict=True):
                a, b, c = int(a), int(b), int(c)
                assert a == value and op == p_op and b == p_n
                want = {"+": a + b, "-": a - b, "*": a * b}[op]
                assert c == want >= 0, ex.rationale
                value = c
            assert str(value) == ex.answer


def test_programs_print_the_answer(data: dict[str, list[Example]]) -> None:
    for exs in data.values():
        for ex in exs:
            assert _run_program(ex.program) == ex.answer + "\n", ex.id


def test_programs_in_subprocess_sample(data: dict[str, list[Example]]) -> None:
    sample = [data[name][0] for name in SPLITS]
    for ex in sample:
        res = subprocess.run(
            [sys.executable, "-c", ex.program], capture_output=True, text=True, timeout=30
        )
        assert res.returncode == 0 and res.stdout == ex.answer + "\n", ex.id


def test_question_mentions_every_operand(data: dict[str, list[Example]]) -> None:
    for exs in data.values():
        for ex in exs:
            numbers = [int(x) for x in re.findall(r"\d+", ex.question)]
            start, steps = _parse_program(ex.program)
            assert numbers == [start] + [n for _, n in steps], ex.question


# ------------------------------------------------------------------------- leakage


@pytest.mark.parametrize("cfg", [ArithmeticConfig(), SMALL, ArithmeticConfig(seed=7)])
def test_no_signature_leakage(cfg: ArithmeticConfig) -> None:
    out = build_arithmetic(cfg)
    sigs = {name: [_sig(ex) for ex in exs] for name, exs in out.items()}
    for name, s in sigs.items():
        assert len(set(s)) == len(s), f"duplicates within {name}"
    train, dev = set(sigs["train"]), set(sigs["dev"])
    assert train.isdisjoint(dev)
    for name in EVAL_SPLITS:
        assert set(sigs[name]).isdisjoint(train | dev), name
