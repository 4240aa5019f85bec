"""`python -m lab estimate`: peak memory per GPU of each cell (lab/study/memory.py), refusal of a
plan that cannot fit, GPU-hours from measured rates, and where evaluation time goes."""

from __future__ import annotations

import json

import pytest
import yaml

from lab.core.recipe import parse_recipe
from lab.study import memory
from lab.study.cli import main
from lab.study.estimate import estimate, measured_rates, param_counts

BASE = {
    "name": "m", "model": "tiny-random", "seeds": [0], "precision": "bf16",
    "task": {"n_train": 64, "n_dev": 8, "n_test": 4},
    "train": {"batch_size": 8},
    "arms": [{"name": "icl", "method": "icl", "k": 4}, {"name": "lora", "method": "lora"},
             {"name": "full", "method": "full"}],
}  # fmt: skip


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return str(tiny_cache)  # the session's model cache: the tiny models are built once


def by_arm(recipe, cache, **kw):  # noqa: ANN001, ANN003, ANN201
    return {r.arm: r for r in memory.plan_memory(parse_recipe(recipe), cache_dir=cache, **kw)}


def test_weights_gradients_and_optimizer_states_per_strategy(cache):
    p = param_counts("tiny-random", cache).total
    ddp = by_arm(BASE, cache)
    assert ddp["icl"].weights == 2 * p and ddp["icl"].train_peak == 0  # bf16, eval only
    assert ddp["full"].weights == 4 * p + 2 * p  # fp32 masters + autocast's bf16 copy
    assert ddp["full"].grads == 8 * p  # fp32 gradients + DDP buckets
    assert ddp["full"].optim == 8 * p  # AdamW: two fp32 states
    lora = ddp["lora"]
    n_lora = 16 * param_counts("tiny-random", cache).linear_io
    assert (lora.weights, lora.grads, lora.optim) == (2 * p + 4 * n_lora, 4 * n_lora, 8 * n_lora)
    fsdp = by_arm(BASE, cache, gpus=8, strategy="fsdp")
    assert fsdp["full"].optim == 8 * p / 8 and fsdp["full"].grads == 4 * p / 8
    fp32 = by_arm({**BASE, "precision": "fp32"}, cache)
    assert fp32["icl"].weights == 4 * p and fp32["full"].weights == 4 * p


def test_activations_follow_micro_batch_and_checkpointing(cache):
    one = by_arm(BASE, cache)["full"].activations
    eight = by_arm(BASE, cache, gpus=8)["full"].activations  # micro-batch 8 -> 1
    assert eight == pytest.approx(one / 8)
    ckpt = by_arm({**BASE, "train": {"batch_size": 8, "gradient_checkpointing": True}}, cache)
    assert ckpt["full"].activations < one / 1.5


def test_kv_cache_grows_with_demos_and_eval_batch(cache):
    small = by_arm(BASE, cache)
    more = by_arm({**BASE, "arms": [{"name": "icl", "method": "icl", "k": 16}]}, cache)
    assert more["icl"].kv_cache > small["icl"].kv_cache
    big = by_arm({**BASE, "eval": {"batch_size": 64}}, cache)
    assert big["icl"].kv_cache > small["icl"].kv_cache * 1.5


def test_estimate_refuses_a_plan_that_cannot_fit(cache, tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(BASE))
    args = ["estimate", str(path), "--cache-dir", cache, "--rates", "none"]
    assert main([*args, "--gpu-mem-gib", "80"]) == 0
    out = capsys.readouterr().out
    assert "peak memory per GPU" in out and "| tiny-random | full | full |" in out
    assert main([*args, "--gpu-mem-gib", "1.001"]) == 2  # 1 GiB of CUDA context + weights
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model tiny-random, arm 'icl'")
    assert "lower eval.batch_size" in err[0]


def test_refusal_names_training_fixes():
    arm = type("A", (), {"name": "full", "method": "full"})()
    sh = memory.Shape(2, 64, 4, 2, 16, 128, 100)
    ln = memory.Lengths(100, 10, 50, 8)
    cell = memory.cell_memory("m", arm, sh, 10**9, 0, 2, 64, 4, ln, 1, "ddp", False)
    assert cell.train_peak > cell.eval_peak
    with pytest.raises(Exception, match="gradient_checkpointing.*--strategy fsdp"):
        memory.check_fits([cell], 8 * memory.GIB, "ddp")


def test_gpu_hours_use_rates_measured_by_gpu_check(cache, tmp_path):
    fig = {"mode": "gpu", "phases": {
        "env": {"figures": {"device": "NVIDIA H200"}},
        "lora": {"figures": {"cells": {"lora": {"train_flops_per_s": 2e14,
                                                 "eval_accounted_flops_per_s": 4e13}}}},
        "full": {"figures": {"cells": {"full": {"train_flops_per_s": 4e14,
                                                 "eval_accounted_flops_per_s": 6e13}}}},
    }}  # fmt: skip
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(fig))
    train, infer, source = measured_rates(path)
    assert (train, infer) == (3e14, 5e13) and "NVIDIA H200" in source
    assert measured_rates(tmp_path / "missing.json") is None
    path.write_text(json.dumps({**fig, "mode": "cpu"}))
    assert measured_rates(path) is None  # CPU figures are no GPU rates


def test_eval_parts_add_up_to_the_eval_flops(cache):
    (e,) = estimate(parse_recipe(BASE), cache_dir=cache)
    assert sum(e.eval_parts.values()) == pytest.approx(e.eval_flops)
    assert {"answer: prompts", "answer: generated tokens", "log p(gold)"} <= set(e.eval_parts)
