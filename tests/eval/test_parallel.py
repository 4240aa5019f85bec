"""Data-parallel evaluation (eval/parallel.py): sharding, ordered gathering, and 2 CPU
processes (the ranks `accelerate launch --multi_gpu` starts, tests/ranks.py) giving what one
process gives."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from ranks import run_ranks

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from eval.parallel import evaluate_split_parallel, gather_in_order, shard

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' helpers
from code_dp_worker import TIMEOUT_S, ProgramWriter, code_case, verdicts  # noqa: E402
from dp_worker import case, sharp_model  # noqa: E402


@pytest.mark.parametrize("n, world", [(9, 2), (4, 3), (1, 2), (0, 2), (10, 1)])
def test_shards_cover_every_example_once(n, world):
    got = sorted(i for r in range(world) for i in shard(n, r, world))
    assert got == list(range(n))


def test_gather_in_order_single_process():
    assert gather_in_order([(2, "c"), (0, "a"), (1, "b")]) == ["a", "b", "c"]


def test_one_process_is_evaluate_split(tiny_cache):
    model, tok = sharp_model(str(tiny_cache))
    examples, spec = case()
    want = evaluate_split(LM(model, tok, 4, progress=False), examples, spec, 8)
    assert evaluate_split_parallel(LM(model, tok, 4, progress=False), examples, spec, 8) == want


@pytest.mark.slow  # ~45 s on the shared 2-core machine (2 processes import torch)
def test_two_processes_match_one(tiny_cache, tmp_path):
    """2 CPU processes (ranks + accelerate): every prediction equal to one process's, in the
    original order (log-probs to float tolerance: shards batch the examples differently)."""
    model, tok = sharp_model(str(tiny_cache))
    examples, spec = case()
    lm = LM(model, tok, 4, progress=False)
    want, want_m = evaluate_split(lm, examples, spec, 8)
    out = tmp_path / "dp.json"
    # The ranks `accelerate launch --multi_gpu` starts (torchrun's), made CPU processes: on CPU,
    # `accelerate launch --cpu --num_processes 2` wants mpirun, and --multi_gpu sets
    # ACCELERATE_USE_CPU=false. accelerate's PartialState then sets up gloo (MULTI_CPU).
    run_ranks("dp_worker.py", tiny_cache, out)
    got = json.loads(out.read_text())
    assert got["world"] == 2
    assert [p["id"] for p in got["preds"]] == [ex.id for ex in examples]
    for g, w in zip(got["preds"], want, strict=True):
        lp_g, lp_w = g.pop("gold_logprob"), w.pop("gold_logprob")
        assert lp_g == pytest.approx(lp_w, abs=1e-4)
        assert g == json.loads(json.dumps(w))
    assert got["metrics"]["exact_match"] == want_m["exact_match"]
    assert got["metrics"]["new_tokens"] == want_m["new_tokens"]
    # each process ran the shared prefix once and its own examples: more than one process
    assert got["tokens"] > lm.counts["tokens"] / 2


@pytest.mark.slow  # 2 processes import torch and accelerate: ~1 min on the shared machine
def test_two_processes_on_one_core_score_code_as_one(tmp_path):
    """A code task where one program needs 1 s of CPU (2 s budget): one process alone on a
    core, and 2 processes (ranks, gloo, LOCAL_WORLD_SIZE=2) sharing that core, give the
    same verdicts, because the sandbox's timeout is CPU time, not wall-clock time."""
    core = min(os.sched_getaffinity(0))
    mask = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        want, _ = evaluate_split(
            ProgramWriter(), code_case(), PromptSpec("answer"), 8, TIMEOUT_S, gold_logprob=False
        )
    finally:
        os.sched_setaffinity(0, mask)
    assert [c for _, c, _ in verdicts(want)] == [True, True, True, True, False, False]
    out = tmp_path / "code.json"
    run_ranks("code_dp_worker.py", core, out, timeout=600)
    got = json.loads(out.read_text())
    assert got["world"] == 2
    assert got["verdicts"] == verdicts(want)
