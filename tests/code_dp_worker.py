"""Run by tests/eval/test_parallel.py as 2 CPU ranks (tests/ranks.py) pinned to one core:
data-parallel evaluation of a code task whose "model" writes fixed programs (one needs 1 s
of CPU); the main process writes the verdicts it gathered."""

from __future__ import annotations

import json
import os
import sys

from eval.evaluate import PromptSpec
from eval.lm import Generation
from eval.parallel import evaluate_split_parallel
from lab.core.example import Example

BURN = (  # 1 s of CPU time, then the right answer: within a 2 s budget however busy the core
    "import time\ndef f(x):\n    t = time.process_time()\n"
    "    while time.process_time() - t < 1.0:\n        pass\n    return 2 * x"
)
PROGRAMS = [
    BURN,
    BURN,
    "def f(x):\n    return 2 * x",
    "def f(x):\n    return 2 * x",
    "def f(x):\n    return 0",
    "def f(x):\n    return 0",
]
TIMEOUT_S = 2.0


def code_case() -> list[Example]:
    """MBPP-like examples, one per program (the question names it)."""
    return [
        Example(
            f"c{i}",
            f"<<{i}>>",
            "pass",
            "",
            "",
            meta={"tests": "assert f(1) == 2"},
            output_type="code",
        )
        for i in range(len(PROGRAMS))
    ]


class ProgramWriter:
    """An LM stand-in: generates the program its example's question names."""

    def generate(self, requests, desc=""):  # noqa: ANN001, ANN201
        out = []
        for r in requests:
            i = next(i for i in range(len(PROGRAMS)) if f"<<{i}>>" in r.text)
            out.append(Generation("\n" + PROGRAMS[i], 10, 5, "stop"))
        return out


def verdicts(preds: list[dict]) -> list[list]:
    return [[p["id"], p["correct"], p["error"]] for p in preds]


def main() -> None:
    os.sched_setaffinity(0, {int(sys.argv[1])})  # every process of the node on one core
    from accelerate import Accelerator

    state = Accelerator()  # as lab/study/run.py
    preds, _ = evaluate_split_parallel(
        ProgramWriter(), code_case(), PromptSpec("answer"), 8, TIMEOUT_S, gold_logprob=False
    )
    if state.is_main_process:
        with open(sys.argv[2], "w") as f:
            json.dump({"verdicts": verdicts(preds), "world": state.num_processes}, f)


if __name__ == "__main__":
    main()
