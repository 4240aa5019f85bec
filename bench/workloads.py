"""Benchmark workloads shared by bench/vs_lmeval.py and bench/phases.py.

- `arith`: the lab's arithmetic task (questions of ~20-30 tokens), as before;
- `short`: short questions "a + b" (about 5 tokens; a, b < 50) with answers of 1-3 tokens,
  the multiple-choice shape where per-request overheads show most.

Multiple choice: the gold answer plus 3 near misses, fixed per example (`choices_for`).
Demos: the first k train examples (shared by every example), or a seeded sample of k per
example (`per_example_demos`, like lm-eval's default sampling).
"""

from __future__ import annotations

import random

from lab.core.example import Example
from lab.core.prompts import demos_prefix, prompt


def choices_for(ex: Example) -> tuple[list[str], int]:
    """Gold plus three near misses, in a shuffled order fixed by the example id."""
    g = int(ex.answer)
    rnd = random.Random(ex.id)
    wrong = rnd.sample([-10, -2, -1, 1, 2, 10], 3)
    opts = [g] + [g + d for d in wrong]
    rnd.shuffle(opts)
    return [str(o) for o in opts], opts.index(g)


def short_examples(n: int, split: str, seed: int = 0) -> list[Example]:
    """`n` short addition questions ("17 + 25", ~5 tokens), distinct per split and seed."""
    rnd = random.Random(f"short-{split}-{seed}")
    out = []
    for i in range(n):
        a, b = rnd.randint(1, 49), rnd.randint(1, 49)
        out.append(
            Example(
                id=f"short_{split}-{i:04d}",
                question=f"{a} + {b}",
                answer=str(a + b),
                rationale=f"{a} + {b} = {a + b}. The answer is {a + b}.",
                program=f"print({a} + {b})",
                meta={"split": split},
            )
        )
    return out


def per_example_demos(train: list[Example], ex: Example, k: int) -> list[Example]:
    """A seeded sample of k train examples for `ex` (its own demo set)."""
    return random.Random(f"demos-{ex.id}").sample(train, k)


def mc_requests(
    train: list[Example], test: list[Example], k: int, per_example: bool
) -> tuple[list[tuple[str, str, str]], list[int], list[str]]:
    """(log-likelihood requests, choices per example, each example's full prompt)."""
    shared = demos_prefix(train[:k], "answer")
    reqs, spans, prompts = [], [], []
    for ex in test:
        prefix = demos_prefix(per_example_demos(train, ex, k), "answer") if per_example else shared
        ch, _ = choices_for(ex)
        spans.append(len(ch))
        prompts.append(prefix + prompt(ex))
        reqs += [(prefix, prompt(ex), f" {c}") for c in ch]
    return reqs, spans, prompts
