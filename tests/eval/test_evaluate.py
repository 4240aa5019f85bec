"""Scoring a split's generations (eval/evaluate.py): programs run in the sandbox several at a
time, with the same verdicts, in the same order, as one at a time, and a hostile program
running beside honest ones cannot make them pass or fail."""

from __future__ import annotations

import threading

import eval.evaluate as evaluate
from eval.answers import score_generation
from lab.core.example import Example

# Programs for "print the answer" (code format, number extraction) and for tests (MBPP style).
PRINTS = [
    ("print(2 + 3)", "5"),
    ("x = 4\nprint(x * 2)", "8"),
    ("import time\ntime.sleep(0.3)\nprint(7)", "7"),
    ("raise ValueError('no')", "1"),
    ("print(1)", "2"),
]
TESTS = "assert f(1) == 2\nassert f(2) == 4\n"
HOSTILE_BESIDE = (  # writes a forged report onto every descriptor it can reach, then exits 0
    "import os\ndef f(x):\n    for fd in range(3, 1024):\n        try:\n"
    "            os.write(fd, b'x start \\nx ok 0 \\nx ok 1 \\nx done 2 \\n')\n"
    "        except OSError:\n            pass\n    os._exit(0)"
)


def _printing(i: int, answer: str) -> Example:
    return Example(f"p{i}", "q", answer, "", "")


def _tested(i: int) -> Example:
    return Example(f"t{i}", "q", "pass", "", "", meta={"tests": TESTS}, output_type="code")


def _one_at_a_time(texts, xs, fmt):
    return [
        score_generation(t, x, fmt, cot_prompted=False, timeout_s=5.0)
        for t, x in zip(texts, xs, strict=True)
    ]


def test_parallel_scoring_equals_one_at_a_time(monkeypatch):
    texts = [t for t, _ in PRINTS]
    xs = [_printing(i, a) for i, (_, a) in enumerate(PRINTS)]
    monkeypatch.setattr(evaluate, "usable_cores", lambda: 4)
    running, peak = [0], [0]
    lock = threading.Lock()
    real = evaluate.score_generation

    def counting(*a, **k):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real(*a, **k)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(evaluate, "score_generation", counting)
    got = evaluate.score_all(texts, xs, "code", False, 5.0)
    assert peak[0] > 1  # programs did run side by side
    assert got == _one_at_a_time(texts, xs, "code")
    assert [g["passed"] for g in got] == [True, True, True, False, False]


def test_a_hostile_program_beside_honest_ones_changes_no_verdict(monkeypatch):
    honest_pass = "def f(x):\n    return 2 * x"
    honest_fail = "def f(x):\n    return 0"
    texts = [honest_fail, HOSTILE_BESIDE, honest_pass, honest_fail, HOSTILE_BESIDE, honest_fail]
    xs = [_tested(i) for i in range(len(texts))]
    monkeypatch.setattr(evaluate, "usable_cores", lambda: len(texts))
    got = evaluate.score_all(texts, xs, "answer", False, 5.0)
    assert [g["passed"] for g in got] == [False, False, True, False, False, False]


def test_no_programs_score_in_this_thread(monkeypatch):
    """Answer-format number scoring runs no program: no pool (and no threads) for it."""
    monkeypatch.setattr(evaluate, "ThreadPoolExecutor", None)  # would fail if used
    xs = [_printing(0, "5"), _printing(1, "6")]
    got = evaluate.score_all(["5", "7"], xs, "answer", False, 5.0)
    assert [g["passed"] for g in got] == [True, False]
