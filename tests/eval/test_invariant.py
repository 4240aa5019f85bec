"""Batch-invariant evaluation (eval/invariant.py): log-likelihoods and generations bit-identical
at batch 1, 7 and 32, however requests are grouped (a shared prefix cached or run whole, other
requests beside them) and with 1 or 2 threads, at fp32 and bf16; the kernel properties the
design rests on; the two-process run is in tests/eval/test_parallel.py and the real model's
in tests/study/test_slow_real_model.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from ranks import run_ranks
from sharp import sharpen

from eval import invariant
from eval.evaluate import evaluate_split
from eval.lm import LM, GenRequest
from lab.core.prompts import demos_prefix, prompt
from lab.study.models import load_model

BATCHES = (1, 7, 32)


@pytest.fixture(scope="module")
def sharp(tiny_path):
    """The tiny model at std 0.2 (tests/sharp.py): every prompt its own scores."""
    model, tok = load_model(tiny_path)
    return sharpen(model, 0), tok


def at(sharp, precision: str):
    model, tok = sharp
    return copy.deepcopy(model).to({"fp32": torch.float32, "bf16": torch.bfloat16}[precision]), tok


def workload(splits):
    """Log-likelihood and generation requests that group differently at each batch size: a
    3-shot prefix shared by 9 requests, a 2-shot CoT prefix, zero-shot requests, and the same
    prefixed requests again with the prefix run whole (prefix '' + text: the same tokens)."""
    k3 = demos_prefix(splits["train"][:3], "answer")
    k2 = demos_prefix(splits["train"][3:5], "cot")
    evals = splits["test"] + splits["dev"]
    ll = [(k3, prompt(ex), c) for ex in evals[:9] for c in (" 12", " 7", f" {ex.answer}")]
    ll += [(k2, prompt(ex), " The answer") for ex in evals[9:12]]
    ll += [("", prompt(ex), f" {ex.answer}") for ex in evals[12:15]]
    ll += [("", k3 + prompt(ex), " 7") for ex in evals[:4]]  # = ll[1], ll[4], ll[7], ll[10]
    gen = [GenRequest(k3, prompt(ex), (), 8) for ex in evals[:9]]
    gen += [GenRequest(k2, prompt(ex), (), 8) for ex in evals[9:12]]
    gen += [GenRequest("", prompt(ex), (), 8) for ex in evals[12:15]]
    gen += [GenRequest("", k3 + prompt(ex), (), 8) for ex in evals[:4]]  # = gen[0..3]
    return ll, gen


def run(model, tok, batch_size: int, ll, gen) -> tuple[list, list]:
    lm = LM(model, tok, batch_size=batch_size, progress=False, invariant=True)
    scores = lm.loglikelihood(ll)
    texts = [(g.text, g.new_tokens, g.stopped) for g in lm.generate(gen)]
    return scores, texts


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bit_identical_at_any_batch_size_grouping_and_thread_count(sharp, splits, precision):
    model, tok = at(sharp, precision)
    ll, gen = workload(splits)
    ref_scores, ref_texts = run(model, tok, 1, ll, gen)
    assert len({s for s, _g, _n in ref_scores}) > len(ll) // 2  # distinct scores: not degenerate
    assert len({t for t, _n, _s in ref_texts}) > 5
    # A shared prefix cached or run whole: the same bits.
    assert [ref_scores[i] for i in (1, 4, 7, 10)] == ref_scores[-4:]
    assert ref_texts[:4] == ref_texts[-4:]
    for bs in BATCHES[1:]:
        assert run(model, tok, bs, ll, gen) == (ref_scores, ref_texts), f"batch {bs}"
    # Requests in another order and company (a different shared-prefix split in the groups).
    sub = [ll[i] for i in (20, 3, 31, 0, 28, 5)]
    got, _ = run(model, tok, 4, sub, gen[:1])
    assert got == [ref_scores[i] for i in (20, 3, 31, 0, 28, 5)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert run(model, tok, 32, ll, gen) == (ref_scores, ref_texts), "2 threads"
    finally:
        torch.set_num_threads(threads)


def test_invariant_scores_agree_with_the_plain_path_to_rounding(sharp, splits):
    """The invariant kernels compute the same function: fp32 scores equal the fast path's to
    float reassociation, generations equal."""
    model, tok = at(sharp, "fp32")
    ll, gen = workload(splits)
    scores, texts = run(model, tok, 8, ll, gen)
    fast = LM(model, tok, batch_size=8, progress=False)
    want = fast.loglikelihood(ll)
    assert [s for s, _g, _n in scores] == pytest.approx([s for s, _g, _n in want], abs=1e-4)
    assert [(g, n) for _s, g, n in scores] == [(g, n) for _s, g, n in want]
    assert texts == [(g.text, g.new_tokens, g.stopped) for g in fast.generate(gen)]


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 13, 64, 200])
def test_linear_rows_do_not_depend_on_how_many_rows_are_multiplied(rows):
    """What the design assumes of the CPU kernels: a bf16 linear row (oneDNN) and an fp32 one
    of at least MIN_ROWS rows come out the same whatever the number of rows beside it."""
    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(200, 576, generator=gen)
    w = torch.randn(1536, 576, generator=gen) * 0.05
    lin = invariant.InvariantLinear(576, 1536, bias=False)
    lin.weight.data = w
    for dt in (torch.bfloat16, torch.float32):
        lin = lin.to(dt)
        with invariant.invariant_forward():
            ref = lin(x[:1].to(dt))[0]
            assert torch.equal(lin(x[:rows].to(dt))[0], ref)
            assert torch.equal(lin(x[None, :rows].to(dt))[0, 0], ref)


def test_fp32_linears_of_one_row_differ_without_padding():
    """Why InvariantLinear pads: the stock fp32 kernel sums 1 row in another order (this CPU)."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 576, generator=gen), torch.randn(576, 576, generator=gen)
    assert not torch.equal(F.linear(x[:1], w)[0], F.linear(x, w)[0])


@pytest.mark.parametrize("n_rows, pad", [(1, 0), (1, 9), (2, 3), (5, 70)])
def test_attention_of_a_row_does_not_depend_on_padding_prefix_split_or_company(n_rows, pad):
    """`attend` directly: a sequence's outputs alone in one row, and as row 0 after `pad`
    padding keys, split at several points between a shared prefix and its own keys, beside
    rows of other (random, longer) sequences."""
    gen = torch.Generator().manual_seed(n_rows + pad)
    kv, g, d, length, q = 2, 3, 16, 150, 5

    def r(*shape):
        return torch.randn(*shape, generator=gen).to(torch.bfloat16)

    k, v, query = r(1, kv, length, d), r(1, kv, length, d), r(1, kv * g, q, d)
    with invariant.invariant_forward():
        ref = invariant.attend(query, k, v, None, None)  # the sequence alone, one row
    for split in (0, 30, 64, 100, 145):
        own = length - split
        width = own + pad
        keys, vals, qs = r(n_rows, kv, width, d), r(n_rows, kv, width, d), r(n_rows, kv * g, q, d)
        keys[0, :, pad:], vals[0, :, pad:], qs[0] = k[0, :, split:], v[0, :, split:], query[0]
        real = torch.ones(n_rows, split + width, dtype=torch.bool)
        real[0, split : split + pad] = False  # row 0's padding; the others are all real
        cols = torch.arange(split + width)
        causal = cols[None, :] <= cols[-q:, None]
        mask = (real[:, None, :] & causal[None])[:, None]
        prefix = (k[:, :, :split], v[:, :, :split]) if split else None
        with invariant.invariant_forward():
            out = invariant.attend(qs, keys, vals, mask, None, prefix)
        assert torch.equal(out[0], ref[0]), split


def test_a_long_prompt_in_tiles_is_exact_attention_and_the_same_in_company():
    """A prefill of 600 queries with 3 heads per KV head: 1800 folded rows, 8 tiles of 256,
    each over the key blocks up to its last query only. Equal to exact causal attention
    (float64) to fp32 rounding, so no block a query sees is skipped; and bit-identical when
    the sequence's first 200 keys are a shared prefix and its row, behind 100 padding keys,
    sits beside a longer row (other tiles, other block counts)."""
    gen = torch.Generator().manual_seed(0)
    kv, g, d, length, split, pad = 2, 3, 16, 600, 200, 100

    def r(*shape):
        return torch.randn(*shape, generator=gen)

    k, v, query = r(1, kv, length, d), r(1, kv, length, d), r(1, kv * g, length, d)
    with invariant.invariant_forward():
        alone = invariant.attend(query, k, v, None, None)
    wide = [x.double().repeat_interleave(g, 1) for x in (k, v)]
    exact = F.scaled_dot_product_attention(query.double(), *wide, is_causal=True)
    torch.testing.assert_close(alone.double(), exact.transpose(1, 2), rtol=1e-5, atol=1e-5)
    own = length - split
    keys, vals, qs = r(2, kv, own + pad, d), r(2, kv, own + pad, d), r(2, kv * g, own, d)
    keys[0, :, pad:], vals[0, :, pad:], qs[0] = (
        k[0, :, split:],
        v[0, :, split:],
        query[0, :, split:],
    )
    real = torch.ones(2, split + own + pad, dtype=torch.bool)
    real[0, split : split + pad] = False  # row 0's padding; row 1 is all real
    cols = torch.arange(split + own + pad)
    mask = (real[:, None, :] & (cols[None, :] <= cols[-own:, None])[None])[:, None]
    with invariant.invariant_forward():
        out = invariant.attend(qs, keys, vals, mask, None, (k[:, :, :split], v[:, :, :split]))
    assert torch.equal(out[0], alone[0, split:])


def test_a_tree_row_gives_each_branch_the_bits_of_its_sequence_alone():
    """A tree-shaped row (eval/tree.py: a context, then two branches each seeing the context
    and itself) after a shared prefix: every query's output is the one of its sequence (prefix,
    context, its branch) run alone. A mask that is no such tree is refused."""
    gen = torch.Generator().manual_seed(0)
    kv, g, d, p = 2, 3, 16, 70

    def r(*shape):
        return torch.randn(*shape, generator=gen).to(torch.bfloat16)

    pk, pv = r(1, kv, p, d), r(1, kv, p, d)
    k, v, qs = r(1, kv, 7, d), r(1, kv, 7, d), r(1, kv * g, 7, d)  # ctx 3, b1 2, b2 2
    unit = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    see = (unit[None, :] == 0) | (unit[:, None] == unit[None, :])
    see &= torch.arange(7)[None, :] <= torch.arange(7)[:, None]
    mask = torch.cat([torch.ones(7, p, dtype=torch.bool), see], -1)[None, None]
    with invariant.invariant_forward():
        tree = invariant.attend(qs, k, v, mask, None, (pk, pv))
    for cols in ([0, 1, 2, 3, 4], [0, 1, 2, 5, 6]):
        alone_k = torch.cat([pk, k[:, :, cols]], 2)
        alone_v = torch.cat([pv, v[:, :, cols]], 2)
        with invariant.invariant_forward():
            alone = invariant.attend(qs[:, :, cols], alone_k, alone_v, None, None)
        assert torch.equal(tree[0, cols], alone[0])
    gap = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.bool)[None, None]
    q3 = r(1, kv * g, 3, d)
    with invariant.invariant_forward(), pytest.raises(RuntimeError, match="sequences"):
        invariant.attend(q3, k[:, :, :3], v[:, :, :3], gap, None)


@pytest.mark.slow  # ~1 min on the shared 2-core machine (2 processes import torch)
def test_two_processes_give_the_bits_of_one(tiny_cache, tmp_path):
    """2 CPU processes (ranks + accelerate, as tests/eval/test_parallel.py) evaluating the
    examples sharded at batch 3: every generation and log-probability bit-identical to one
    process at batch 7, at fp32 and at bf16."""
    from dp_worker import case, sharp_model

    model, tok = sharp_model(str(tiny_cache))
    want = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        lm = LM(copy.deepcopy(model).to(dt), tok, batch_size=7, progress=False, invariant=True)
        want[name] = json.loads(json.dumps(evaluate_split(lm, *case(), 8)[0]))
    out = tmp_path / "dp.json"
    run_ranks("dp_worker.py", tiny_cache, out, "invariant", timeout=400)
    got = json.loads(out.read_text())
    assert got["world"] == 2
    for name in ("fp32", "bf16"):
        assert len({p["gold_logprob"] for p in want[name]}) > 3  # distinct: not degenerate
        assert got["preds"][name] == want[name], name


def test_next_token_logprobs_are_bit_identical_at_any_batch_size(sharp, splits):
    """The one-forward path of single-token verbalizers (eval/choice.py) is invariant too."""
    model, tok = at(sharp, "bf16")
    ll, _ = workload(splits)
    reqs = [(p, c) for p, c, _ in ll[::3]]
    ids = [[5, 9, 17]] * len(reqs)
    got = [
        LM(model, tok, bs, progress=False, invariant=True).next_token_logprobs(reqs, ids)
        for bs in BATCHES
    ]
    assert got[0] == got[1] == got[2]
    assert len({x for row in got[0] for x in row}) > len(reqs)
