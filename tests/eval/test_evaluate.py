"""Scoring a split's generations (eval/evaluate.py): programs run in the sandbox several at a
time, with the same verdicts, in the same order, as one at a time, and a hostile program
running beside honest ones cannot make them pass or fail. The processes of one node share its
cores, and the verdicts do not depend on how many processes score."""

from __future__ import annotations

import os
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


def test_the_processes_of_a_node_share_its_cores(monkeypatch):
    """Under `accelerate launch` with 2 processes on a node (LOCAL_WORLD_SIZE=2), each runs
    half the node's cores' worth of programs at a time, not all of them."""
    monkeypatch.setattr(evaluate, "usable_cores", lambda: 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
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
    texts = ["import time\ntime.sleep(0.5)\nprint(7)"] * 6
    got = evaluate.score_all(texts, [_printing(i, "7") for i in range(6)], "code", False, 5.0)
    assert [g["passed"] for g in got] == [True] * 6
    assert peak[0] == 2


BURN = (  # 1 s of CPU time, then the right answer: within a 2 s budget however busy the core
    "import time\ndef f(x):\n    t = time.process_time()\n"
    "    while time.process_time() - t < 1.0:\n        pass\n    return 2 * x"
)


def _score_on_one_core(programs: list[str], world: int, monkeypatch) -> list[list]:
    """`world` scorers of one node (LOCAL_WORLD_SIZE=world; threads standing in for its
    processes: each runs its programs from its own thread, as a process does), all pinned
    to one core, each scoring its strided share of `programs` from the same moment; the
    verdicts in order."""
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(world))
    core = min(os.sched_getaffinity(0))
    xs = [
        Example(
            f"t{i}", "q", "pass", "", "", meta={"tests": "assert f(1) == 2"}, output_type="code"
        )
        for i in range(len(programs))
    ]
    start = threading.Barrier(world)
    rows: list[list] = []

    def rank(r: int) -> None:
        os.sched_setaffinity(0, {core})  # this thread, and the programs it starts
        mine = list(range(r, len(programs), world))
        start.wait()
        got = evaluate.score_all(
            [programs[i] for i in mine], [xs[i] for i in mine], "answer", False, 2.0
        )
        rows.extend([i, g["passed"], g["error"]] for i, g in zip(mine, got, strict=True))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [row[1:] for row in sorted(rows)]


def test_verdicts_are_the_same_for_one_and_two_processes(monkeypatch):
    """A program that needs 1 s of CPU with a 2 s budget: alone on a core it passes; with a
    second process of the node scoring beside it on the same core it gets half the core and
    would pass a wall-clock timeout no more. Its timeout is CPU time, so it passes in both."""
    honest, wrong = "def f(x):\n    return 2 * x", "def f(x):\n    return 0"
    programs = [BURN, BURN, honest, honest, wrong, wrong]
    one = _score_on_one_core(programs, 1, monkeypatch)
    two = _score_on_one_core(programs, 2, monkeypatch)
    assert [p for p, _ in one] == [True, True, True, True, False, False], one
    assert two == one
