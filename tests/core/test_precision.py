"""The study's precision (lab/core/precision.py): `auto` resolution, the recipe setting (smoke
pins fp32), bf16 loading, LoRA/full-FT training dtypes under bf16, gradient checkpointing,
and bf16-vs-fp32 agreement of evaluation."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from lab.core import precision
from lab.core.errors import LabError
from lab.core.recipe import SMOKE_DEFAULTS, TaskCfg, TrainCfg, parse_recipe
from lab.study.models import load_model
from lab.tasks import build_task
from train.finetune import finetune, load_finetuned

CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx512f {extra}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(
    "extra, fast", [("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx2", False)]
)
def test_cpu_flags_decide_cpu_bf16(tmp_path, monkeypatch, extra, fast):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO.format(extra=extra))
    assert ("avx512f" in precision.cpu_flags(info)) is True
    read = precision.cpu_flags
    monkeypatch.setattr(precision, "cpu_flags", lambda: read(info))
    precision.cpu_has_fast_bf16.cache_clear()
    try:
        assert precision.cpu_has_fast_bf16() is fast
        assert precision.resolve("auto", use_cpu=True) == ("bf16" if fast else "fp32")
    finally:
        precision.cpu_has_fast_bf16.cache_clear()


def test_resolve_explicit_and_auto_on_a_gpu(monkeypatch):
    assert precision.resolve("bf16", use_cpu=True) == "bf16"
    assert precision.resolve("fp32", use_cpu=False) == "fp32"
    monkeypatch.setattr(precision, "cuda_bf16", lambda: True)
    assert precision.resolve("auto", use_cpu=False) == "bf16"
    with pytest.raises(ValueError):
        precision.resolve("fp16")


def test_recipe_precision_default_smoke_and_bad_value():
    base = {"name": "p", "model": "tiny-random", "arms": [{"name": "z", "method": "icl"}]}
    assert parse_recipe(base).precision == "auto"
    assert SMOKE_DEFAULTS["precision"] == "fp32"
    assert parse_recipe(base, smoke=True).precision == "fp32"  # deterministic on any CPU
    assert parse_recipe({**base, "smoke": {"precision": "bf16"}}, smoke=True).precision == "bf16"
    assert parse_recipe(
        {**base, "train": {"gradient_checkpointing": True}}
    ).train.gradient_checkpointing
    with pytest.raises(LabError, match="precision.*bf16"):
        parse_recipe({**base, "precision": "bf61"})


def test_eval_precision_and_invariance_settings():
    """`eval.precision` apart from training's, `eval.invariant` on by default; both validated;
    a recipe leaving them at their defaults keeps its hash (studies started before resume)."""
    base = {"name": "p", "model": "tiny-random", "arms": [{"name": "z", "method": "icl"}]}
    r = parse_recipe(base)
    assert (r.eval.precision, r.eval.invariant) == ("study", True)
    assert precision.for_eval("study", "bf16") == "bf16"
    assert precision.for_eval("fp32", "bf16") == "fp32"
    assert precision.for_eval("bf16", "fp32") == "bf16"
    with pytest.raises(ValueError, match="eval.precision"):
        precision.for_eval("auto", "bf16")
    with pytest.raises(LabError, match=r"eval.precision.*'fp16'"):
        parse_recipe({**base, "eval": {"precision": "fp16"}})
    with pytest.raises(LabError, match="eval.invariant"):
        parse_recipe({**base, "eval": {"invariant": "sometimes"}})
    same = parse_recipe({**base, "eval": {"precision": "study", "invariant": True}})
    assert same.hash() == r.hash()
    assert parse_recipe({**base, "eval": {"precision": "fp32"}}).hash() != r.hash()
    assert parse_recipe({**base, "eval": {"invariant": False}}).hash() != r.hash()


def test_launch_config_contradicting_the_recipe_is_a_user_error():
    precision.check_launch("no", "bf16")
    precision.check_launch("no", "fp32")
    precision.check_launch("bf16", "bf16")
    with pytest.raises(LabError, match="mixed_precision=bf16.*precision is fp32"):
        precision.check_launch("bf16", "fp32")
    with pytest.raises(LabError):
        precision.check_launch("fp16", "bf16")


def test_bf16_loading(tiny_path):
    model, _ = load_model(tiny_path, precision="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in load_model(tiny_path)[0].parameters()} == {torch.float32}


class Spy(Accelerator):
    """Keeps what `prepare` returned (the prepared module and optimizer)."""

    def prepare(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.prepared = super().prepare(*args, **kwargs)
        return self.prepared


@pytest.fixture(scope="module")
def train_set(splits):
    return splits["train"][:8]


CFG = TrainCfg(steps=3, batch_size=4, lr=1e-3, lora={"r": 4, "alpha": 8, "dropout": 0.0})


@pytest.mark.parametrize("method", ["lora", "full"])
def test_bf16_training_keeps_fp32_masters_and_optimizer_states(
    tiny_path, train_set, tmp_path, method
):
    """LoRA: bf16 frozen base, fp32 adapter; full FT: fp32 weights. Optimizer states fp32;
    the forward runs in bf16 (losses close to fp32's, not equal)."""
    acc = Spy()
    res = finetune(
        tiny_path,
        train_set,
        "answer",
        method,
        CFG,
        0,
        tmp_path / "b",
        accelerator=acc,
        progress=False,
        precision="bf16",
    )
    module, optim = acc.prepared[0], acc.prepared[1]
    trainable = {p.dtype for p in module.parameters() if p.requires_grad}
    frozen = {p.dtype for p in module.parameters() if not p.requires_grad}
    assert trainable == {torch.float32}
    assert frozen == ({torch.bfloat16} if method == "lora" else set())
    states = [t for s in optim.optimizer.state.values() for t in s.values() if t.ndim > 0]
    assert states and {t.dtype for t in states} == {torch.float32}
    fp32 = finetune(tiny_path, train_set, "answer", method, CFG, 0, tmp_path / "f", progress=False)
    assert res.losses != fp32.losses  # bf16 compute happened
    assert res.losses == pytest.approx(fp32.losses, rel=2e-2)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_checkpointing_trains_the_same(tiny_path, train_set, tmp_path, method):
    cfg = CFG.model_copy(update={"gradient_checkpointing": True})
    on = finetune(tiny_path, train_set, "answer", method, cfg, 0, tmp_path / "on", progress=False)
    off = finetune(tiny_path, train_set, "answer", method, CFG, 0, tmp_path / "off", progress=False)
    assert on.losses == pytest.approx(off.losses, rel=1e-6)


def smoke_examples():
    """The quickstart smoke study's eval examples (its task config), larger splits."""
    splits = build_task(TaskCfg(n_train=64, n_dev=8, n_test=25, params={"ops": "+-"}))
    return splits, [
        e for s in ("test", "ood_digits", "ood_steps", "ood_phrasing") for e in splits[s]
    ]


# bf16 vs fp32 on the tiny model: |log p(gold)| agree to this relative tolerance (measured:
# at most 4e-4 on 100 examples; bf16 keeps ~3 significant digits).
LOGPROB_REL_TOL = 2e-3


def test_bf16_and_fp32_evaluations_agree(tiny_path):
    """The same exact-match outcome on >= 98% of the examples, the same extracted answers,
    log p(gold) within LOGPROB_REL_TOL. (The untrained tiny model extracts few answers; the
    GPU check's `agree` phase measures the same on a fine-tuned ~0.5B model.)"""
    splits, examples = smoke_examples()
    spec = PromptSpec("answer", tuple(splits["train"][:2]))
    preds = {}
    for p in ("fp32", "bf16"):
        model, tok = load_model(tiny_path, precision=p)
        preds[p], _ = evaluate_split(LM(model, tok, 16, progress=False), examples, spec, 8)
    a, b = preds["fp32"], preds["bf16"]
    same_em = sum(x["correct"] == y["correct"] for x, y in zip(a, b, strict=True)) / len(a)
    assert same_em >= 0.98
    assert sum(x["pred"] == y["pred"] for x, y in zip(a, b, strict=True)) / len(a) >= 0.98
    for x, y in zip(a, b, strict=True):
        assert y["gold_logprob"] == pytest.approx(x["gold_logprob"], rel=LOGPROB_REL_TOL)
        assert y["gold_logprob"] != x["gold_logprob"]  # bf16 did run


def test_load_finetuned_at_bf16_keeps_the_lora_adapter_fp32(tiny_path, train_set, tmp_path):
    """At bf16 the adapter is not merged (its update would partly round away in bf16
    weights): a bf16 base, an fp32 adapter, outputs close to the fp32 merged model's."""
    res = finetune(tiny_path, train_set, "answer", "lora", CFG, 0, tmp_path, progress=False)
    model, tok = load_finetuned(tiny_path, res.checkpoint, "lora", "bf16")
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if "lora_" not in n} == {torch.bfloat16}
    merged, _ = load_finetuned(tiny_path, res.checkpoint, "lora", "fp32")
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    ids = torch.tensor([tok("Question: 1 + 2 =").input_ids])
    with torch.no_grad():
        a, b = model(input_ids=ids).logits.float(), merged(input_ids=ids).logits
    assert torch.allclose(a, b, atol=0.05, rtol=0.02)
