"""A shared prefix read once for every row (eval/kv_cache.py `share`, eval/attention.py
`split_sdpa`): the same attention as one call over each row's whole key sequence, and the
same generations and log-likelihoods as the prefix repeated per row."""

from __future__ import annotations

import pytest
import torch
from sharp import sharpen

import eval.attention as attention
import eval.lm as lm_mod
from bench import gpu_split
from eval.kv_cache import share
from eval.lm import LM, GenRequest
from lab.core.prompts import demos_prefix, prompt, target
from lab.study.models import load_model


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-6), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("case", gpu_split.CASES)
def test_split_attention_equals_one_call_over_the_whole_row(dtype, atol, case):
    """Decoding and prefill steps, with and without padding and tree masks, and a pad
    query that sees none of its row's own keys (bench/gpu_split.py builds the same cases
    for the GPU check)."""
    q, pk, pv, ok, ov, mask = gpu_split.case_tensors(case, dtype, "cpu")
    got = attention.split_sdpa(q, gpu_split.prefix_layer(pk, pv, ok, ov), mask, 0.25)
    want = gpu_split.whole_row(q, pk, pv, ok, ov, mask, 0.25)
    assert got.shape == (3, q.shape[2], 6, 16) and got.dtype == dtype
    assert torch.allclose(got.float(), want, atol=atol), (got.float() - want).abs().max()


def test_share_refuses_what_it_cannot_split():
    assert share(None, 4) is None

    class Other:
        is_initialized = True
        keys = torch.zeros(1, 1, 2, 4)

    class Cache:
        layers = [Other()]

    assert share(Cache(), 4) is None


@pytest.fixture(scope="module")
def sharp(tiny_path):
    model, tok = load_model(tiny_path)
    return sharpen(model, 0), tok


def _lm(sharp, split: bool, batch_size: int = 8) -> LM:
    lm = LM(*sharp, batch_size=batch_size, progress=False)
    lm.split = split
    return lm


def _requests(splits):
    k4 = demos_prefix(splits["train"][:4], "cot")
    evals = splits["test"] + splits["dev"]
    gens = [GenRequest(k4, prompt(ex), (), 8) for ex in evals[:10]]
    gens += [GenRequest("", prompt(ex), (), 8) for ex in evals[10:13]]
    k3 = demos_prefix(splits["train"][4:7], "answer")
    lls = [(k3, prompt(ex), target(ex, "answer")) for ex in evals[:10]]
    return gens, lls


def test_lm_reads_the_prefix_once_with_the_same_results(sharp, splits, monkeypatch):
    gens, lls = _requests(splits)
    calls = []
    real = attention.split_sdpa
    monkeypatch.setattr(
        attention, "split_sdpa", lambda q, layer, *a: calls.append(q.shape[0]) or real(q, layer, *a)
    )
    repeated = []
    real_expand = lm_mod.expand

    def counting_expand(cache, n):
        if cache is not None:
            repeated.append(n)
        return real_expand(cache, n)

    monkeypatch.setattr(lm_mod, "expand", counting_expand)
    split, plain = _lm(sharp, True, 4), _lm(sharp, False, 4)
    got_gens, got_lls = split.generate(gens), split.loglikelihood(lls)
    assert calls and max(calls) > 1  # batches of several rows attended through the split
    assert repeated == []  # and no prefix was repeated per row
    calls.clear()
    want_gens, want_lls = plain.generate(gens), plain.loglikelihood(lls)
    assert calls == [] and repeated
    assert [(g.text, g.new_tokens, g.stopped) for g in got_gens] == [
        (g.text, g.new_tokens, g.stopped) for g in want_gens
    ]
    for a, b in zip(got_lls, want_lls, strict=True):
        assert a[0] == pytest.approx(b[0], abs=2e-5)
        assert a[1:] == b[1:]


def test_bf16_split_generations_match_the_repeated_prefix(sharp, splits):
    """At bf16 the two paths round differently (the split merges two bf16 outputs in fp32):
    greedy generations still agree on these requests, and the split's log-likelihoods are
    no further from the fp32 ones than the repeated prefix's (summed over the requests)."""
    model, tok = sharp
    import copy

    m16 = copy.deepcopy(model).to(torch.bfloat16)
    gens, lls = _requests(splits)
    split = LM(m16, tok, batch_size=4, progress=False)
    plain = LM(m16, tok, batch_size=4, progress=False)
    plain.split = False
    a, b = split.generate(gens), plain.generate(gens)
    same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
    assert same >= len(gens) - 1
    exact = [r[0] for r in _lm(sharp, False).loglikelihood(lls)]
    err_split = sum(abs(r[0] - e) for r, e in zip(split.loglikelihood(lls), exact, strict=True))
    err_plain = sum(abs(r[0] - e) for r, e in zip(plain.loglikelihood(lls), exact, strict=True))
    assert err_split <= 1.5 * err_plain + 0.05, (err_split, err_plain)


def test_layers_grow_past_their_reserve_and_keep_every_token():
    from transformers.cache_utils import DynamicLayer

    from eval.kv_cache import PreallocatedLayer

    gen = torch.Generator().manual_seed(2)
    parts = [torch.randn(2, 1, t, 4, generator=gen) for t in (3, 1, 5)]
    want = torch.cat(parts, dim=2)
    shared = gpu_split.prefix_layer(
        torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4), parts[0], parts[0]
    )
    for p in parts[1:]:
        shared.update(p, p)
    assert torch.equal(shared.keys, want) and torch.equal(shared.values, want)
    assert shared.get_seq_length() == 2 + want.shape[2]
    plain = DynamicLayer()
    plain.update(parts[0], parts[0])
    plain.__class__ = PreallocatedLayer
    plain.reserve(1)
    for p in parts[1:]:
        plain.update(p, p)
    assert torch.equal(plain.keys, want) and torch.equal(plain.values, want)


def test_masks_are_split_once_per_forward_not_per_layer(sharp, splits, monkeypatch):
    gens, lls = _requests(splits)
    layers = sharp[0].config.num_hidden_layers
    assert layers > 1
    made, attended = [], []
    real_masks, real_split = attention._split_masks, attention.split_sdpa
    monkeypatch.setattr(attention, "_split_masks", lambda *a: made.append(1) or real_masks(*a))
    monkeypatch.setattr(attention, "split_sdpa", lambda *a: attended.append(1) or real_split(*a))
    lm = _lm(sharp, True, 4)
    lm.generate(gens[:4])
    lm.loglikelihood(lls[:4])
    assert attended and len(attended) == layers * len(made)
