"""`python -m lab estimate`: peak memory per GPU of each cell (lab/study/memory.py), refusal of a
plan that cannot fit, GPU-hours from measured rates, and where evaluation time goes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab.core.recipe import parse_recipe
from lab.study import memory
from lab.study.cli import main
from lab.study.estimate import estimate, measured_rates, param_counts

BASE = {
    "name": "m",
    "model": "tiny-random",
    "seeds": [0],
    "precision": "bf16",
    "task": {"n_train": 64, "n_dev": 8, "n_test": 4},
    "train": {"batch_size": 8},
    "arms": [
        {"name": "icl", "method": "icl", "k": 4},
        {"name": "lora", "method": "lora"},
        {"name": "full", "method": "full"},
    ],
}


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


def test_fsdp_holds_unsharded_reduce_dtype_gradients_between_micro_batches(cache):
    """FSDP reduces at bf16 under mixed precision and, with grad_accum > 1, keeps the full
    unsharded gradients (2 bytes/parameter at bf16, 4 at fp32) between micro-batches; DDP
    and ZeRO-3 do not."""
    p = param_counts("tiny-random", cache).total
    accum = {**BASE, "train": {"batch_size": 16, "grad_accum": 2}}
    one = by_arm(BASE, cache, gpus=8, strategy="fsdp")["full"]
    two = by_arm(accum, cache, gpus=8, strategy="fsdp")["full"]
    assert one.grads == 4 * p / 8 and two.grads == 4 * p / 8 + 2 * p
    fp32 = by_arm({**accum, "precision": "fp32"}, cache, gpus=8, strategy="fsdp")["full"]
    assert fp32.grads == 4 * p / 8 + 4 * p
    assert by_arm(accum, cache, gpus=8, strategy="zero3")["full"].grads == 4 * p / 8
    assert by_arm(accum, cache, gpus=8)["full"].grads == 8 * p  # DDP: fp32 + buckets


def test_refusal_advises_grad_accum_only_where_it_lowers_the_peak():
    arm = type("A", (), {"name": "full", "method": "full"})()
    sh = memory.Shape(2, 64, 4, 2, 16, 128, 100)
    ln = memory.Lengths(100, 10, 50, 8)
    # FSDP, one row per micro-batch: more accumulation halves nothing and adds the
    # unsharded bf16 gradients
    fsdp = memory.cell_memory("m", arm, sh, 10**9, 0, 2, 1, 4, ln, 8, "fsdp", False, 1)
    assert fsdp.accum_saving < 0
    with pytest.raises(Exception, match="lower train.batch_size or use more GPUs") as e:
        memory.check_fits([fsdp], 1 * memory.GIB, "fsdp")
    assert "grad_accum" not in str(e.value)
    # DDP with 64 long rows per micro-batch: accumulation halves the activations (most of
    # the peak here), costs nothing
    wide, long = memory.Shape(8, 1024, 8, 8, 128, 4096, 100), memory.Lengths(1000, 10, 50, 8)
    ddp = memory.cell_memory("m", arm, wide, 10**8, 0, 2, 64, 4, long, 1, "ddp", False, 1)
    assert ddp.accum_saving > 0
    with pytest.raises(Exception, match="raise train.grad_accum"):
        memory.check_fits([ddp], 8 * memory.GIB, "ddp")
    # ... but where it saves next to nothing of what is missing, it is not advised
    small = memory.cell_memory("m", arm, sh, 10**10, 0, 2, 2, 4, ln, 1, "ddp", False, 1)
    assert 0 < small.accum_saving < 0.1 * (small.train_peak - 8 * memory.GIB)
    with pytest.raises(Exception, match="lower train.batch_size, or shard") as e:
        memory.check_fits([small], 8 * memory.GIB, "ddp")
    assert "grad_accum" not in str(e.value)


def test_estimate_reads_the_projects_measured_rates_by_default(cache, tmp_path, capsys):
    """Without --rates, the GPU-hours use bench/gpu_check.json's measured rates (the
    project's own file), not the assumed 100 / 20 TFLOP/s."""
    bench = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.json"
    measured = measured_rates(bench)
    assert measured is not None  # the project ships figures measured on a GPU
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert main(["estimate", str(path), "--cache-dir", cache, "--gpu-mem-gib", "80"]) == 0
    out = capsys.readouterr().out
    assert "assumed, not measured" not in out
    assert f"training {measured[0] / 1e12:.3g} TFLOP/s" in out and measured[2] in out
    args = ["estimate", str(path), "--cache-dir", cache, "--rates", str(tmp_path / "no.json")]
    assert main(args) == 2  # a rates file named but absent: one line, not the assumed rates
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rates" in err[0] and "--rates none" in err[0]


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


def test_chat_style_counts_the_template_tokens(cache):
    """prompt.style: chat wraps every prompt and training input in the template's turns:
    the memory plan's widths and the FLOP estimate count them (they counted plain text)."""
    plain = {**BASE, "model": "tiny-random-chat"}
    chat = {**plain, "prompt": {"style": "chat"}}
    p, c = by_arm(plain, cache), by_arm(chat, cache)
    assert c["icl"].kv_cache > p["icl"].kv_cache  # the k-shot prompt inside the template
    assert c["full"].activations > p["full"].activations  # training inputs in the template
    (ep,) = estimate(parse_recipe(plain), cache_dir=cache)
    (ec,) = estimate(parse_recipe(chat), cache_dir=cache)
    assert ec.eval_flops > ep.eval_flops and ec.train_flops > ep.train_flops
