"""Probe evaluation sharded across processes like the eval splits (eval/parallel.py
`map_sharded`): each process generates only its share, every process gets all results in
order. Two ranks are simulated in one process (the collective is replaced by the list of
what each rank contributed)."""

from __future__ import annotations

from types import SimpleNamespace

import accelerate.utils
import pytest

import eval.parallel as parallel
from eval.lm import Generation
from eval.probes import evaluate_probe, probe_prompt
from lab.core.recipe import TaskCfg
from lab.tasks.probes import build_probes


class Gathered(Exception):  # noqa: N818
    pass


def run_ranks(monkeypatch, world: int, call, reset=lambda: None):  # noqa: ANN001, ANN201
    """`call()` as each rank of `world`: a first pass records what each rank hands the
    gather; in the second (after `reset()`) the gather returns every rank's pairs, as
    `gather_object` does. Returns each rank's output of the second pass."""
    contributed: dict[int, list] = {}
    outputs = {}
    for second in (False, True):
        if second:
            reset()
        for rank in range(world):
            monkeypatch.setattr(
                parallel,
                "_state",
                lambda r=rank: SimpleNamespace(num_processes=world, process_index=r),
            )

            def gather(pairs, r=rank, second=second):  # noqa: ANN001, ANN202
                if not second:
                    contributed[r] = list(pairs)
                    raise Gathered
                return [p for k in sorted(contributed) for p in contributed[k]]

            monkeypatch.setattr(accelerate.utils, "gather_object", gather)
            try:
                outputs[rank] = call()
            except Gathered:
                pass
    return outputs


def test_map_sharded_runs_each_share_once_and_gathers_in_order(monkeypatch):
    seen: list[list[int]] = []

    def fn(items):  # noqa: ANN001, ANN202
        seen.append(list(items))
        return [10 * i for i in items]

    out = run_ranks(
        monkeypatch, 3, lambda: parallel.map_sharded(fn, list(range(8))), reset=seen.clear
    )
    assert sorted(i for s in seen for i in s) == list(range(8))  # each item once
    assert all(out[r] == [10 * i for i in range(8)] for r in range(3))


class FakeLM:
    """Generates the request's question text back; records what it was asked."""

    def __init__(self):
        self.asked: list[str] = []

    def generate(self, requests, desc=""):  # noqa: ANN001, ANN201
        self.asked += [r.text for r in requests]
        return [Generation(f"So the answer is {r.text[-3:]}", 10, 3, "stop") for r in requests]


def test_bbh_probe_generations_are_sharded(monkeypatch):
    xs = build_probes({"bbh": {"n_per_task": 5, "tasks": ["navigate"]}}, TaskCfg(name="gsm8k"))
    xs = xs["probe_bbh_navigate"]
    one = FakeLM()
    want, _ = evaluate_probe(one, xs)
    lm = FakeLM()
    out = run_ranks(monkeypatch, 2, lambda: evaluate_probe(lm, xs), reset=lm.asked.clear)
    assert sorted(lm.asked) == sorted(probe_prompt(x) for x in xs)  # once, not per process
    assert out[0][0] == out[1][0] == want


@pytest.mark.parametrize("n", [0, 1])
def test_map_sharded_with_fewer_items_than_processes(monkeypatch, n):
    out = run_ranks(monkeypatch, 2, lambda: parallel.map_sharded(lambda xs: xs, list(range(n))))
    assert out[0] == out[1] == list(range(n))
