"""bf16 linears on pre-packed oneDNN weights (eval/packed.py): bitwise the stock results,
the stock path whenever autograd is on or the weight changed."""

from __future__ import annotations

import copy

import pytest
import torch
from sharp import sharpen
from torch import nn

from eval.lm import LM, GenRequest
from eval.packed import PackedLinear, available, pack_linears
from lab.core.prompts import demos_prefix, prompt, target
from lab.study.models import load_model

pytestmark = pytest.mark.skipif(
    not available(), reason="packing needs a CPU with native bf16 (this lab's CI machine has it)"
)


@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_is_bitwise_the_stock_linear(bias):
    torch.manual_seed(0)
    lin = nn.Linear(64, 96, bias=bias).to(torch.bfloat16)
    ref = copy.deepcopy(lin)
    assert pack_linears(lin) == 1 and type(lin) is PackedLinear
    for shape in [(1, 64), (8, 64), (3, 5, 64)]:
        x = torch.randn(*shape).to(torch.bfloat16)
        with torch.no_grad():
            assert torch.equal(lin(x), ref(x))
    with torch.no_grad():  # an in-place change of the weight: packed again
        lin.weight.mul_(2)
        ref.weight.mul_(2)
        x = torch.randn(4, 64).to(torch.bfloat16)
        assert torch.equal(lin(x), ref(x))
    y = lin(x)  # with autograd: the stock path, gradients flow
    y.sum().backward()
    assert lin.weight.grad is not None


def test_fp32_layers_are_left_alone():
    lin = nn.Linear(8, 8)
    assert pack_linears(lin) == 0 and type(lin) is nn.Linear


def test_lm_results_are_unchanged_by_packing(tiny_path, splits, monkeypatch):
    model, tok = load_model(tiny_path)
    model = sharpen(model, 0).to(torch.bfloat16)
    plain_model = copy.deepcopy(model)
    k3 = demos_prefix(splits["train"][:3], "cot")
    evals = splits["test"] + splits["dev"]
    gens = [GenRequest(k3, prompt(ex), (), 8) for ex in evals[:6]]
    gens += [GenRequest("", prompt(ex), (), 8) for ex in evals[6:9]]
    lls = [(k3, prompt(ex), target(ex, "answer")) for ex in evals[:6]]

    packed = LM(model, tok, batch_size=4, progress=False)
    assert any(type(m) is PackedLinear for m in model.modules())
    got = ([(g.text, g.new_tokens) for g in packed.generate(gens)], packed.loglikelihood(lls))

    import eval.lm as lm_mod

    monkeypatch.setattr(lm_mod, "pack_linears", lambda m: 0)
    plain = LM(plain_model, tok, batch_size=4, progress=False)
    assert not any(type(m) is PackedLinear for m in plain_model.modules())
    want = ([(g.text, g.new_tokens) for g in plain.generate(gens)], plain.loglikelihood(lls))
    assert got == want


def test_unpacked_runs_the_stock_layers_in_its_block():
    from eval.packed import unpacked

    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)).to(torch.bfloat16)
    assert pack_linears(model) == 2
    with unpacked(model):
        assert {type(m) for m in model} == {nn.Linear}
    assert {type(m) for m in model} == {PackedLinear}
