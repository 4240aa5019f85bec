"""eval/lm.py on the tiny random model: batching invariance, agreement with plain HF
generation and a plain forward pass, context-length errors, stop strings."""

from __future__ import annotations

import pytest
import torch
from sharp import sharpen

from eval.lm import LM, GenRequest
from lab.core.prompts import demos_prefix, prompt, target
from lab.study.models import load_model

MAX_NEW = 8


@pytest.fixture(scope="module")
def sharp(tiny_path):
    """The tiny model with its matrices re-drawn at std 0.2 (see tests/sharp.py)."""
    model, tok = load_model(tiny_path)
    return sharpen(model, 0), tok


def make_lm(sharp, batch_size=8):
    model, tok = sharp
    return LM(model, tok, batch_size=batch_size, progress=False)


@pytest.fixture(scope="module")
def requests(splits):
    """8 requests sharing a 3-shot prefix, 3 with a 2-shot CoT prefix, 3 zero-shot; mixed."""
    k3 = demos_prefix(splits["train"][:3], "answer")
    k2 = demos_prefix(splits["train"][3:5], "cot")
    evals = splits["test"] + splits["dev"]
    reqs = [GenRequest(k3, prompt(ex), (), MAX_NEW) for ex in evals[:8]]
    reqs += [GenRequest(k2, prompt(ex), (), MAX_NEW) for ex in evals[8:11]]
    reqs += [GenRequest("", prompt(ex), (), MAX_NEW) for ex in evals[11:14]]
    reqs.append(GenRequest(k3, "", (), MAX_NEW))  # the prefix alone: no text of its own
    order = [0, 8, 11, 1, 2, 9, 3, 12, 4, 5, 14, 10, 6, 13, 7]  # interleave the groups
    return [reqs[i] for i in order]


def hf_greedy(sharp, lm, req, max_new_tokens=MAX_NEW):
    """Generated token ids from plain HF generate on the whole prompt."""
    model, tok = sharp
    ids = torch.tensor([lm.bos + lm.encode(req.prefix + req.text)])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=tok.pad_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


def as_tuple(g):
    return (g.text, g.prompt_tokens, g.new_tokens, g.stopped)


# ------------------------------------------------------------------------- generate


def test_generations_are_not_degenerate(sharp, requests):
    gens = make_lm(sharp).generate(requests)
    assert len({g.text for g in gens}) >= len(requests) - 3


def test_generate_batch_size_invariant(sharp, requests):
    results = {bs: make_lm(sharp, bs).generate(requests) for bs in (1, 3, 8)}
    want = [as_tuple(g) for g in results[1]]
    for bs in (3, 8):
        assert [as_tuple(g) for g in results[bs]] == want, bs


def test_generate_batch_size_invariant_with_rows_finishing_early(sharp, requests):
    """Different max_new_tokens per request: finished rows leave the batch mid-generation."""
    reqs = [GenRequest(r.prefix, r.text, r.stop, 2 + (i * 5) % 9) for i, r in enumerate(requests)]
    one = make_lm(sharp, 1).generate(reqs)
    for bs in (4, 16):
        assert [as_tuple(g) for g in make_lm(sharp, bs).generate(reqs)] == [
            as_tuple(g) for g in one
        ]
    for r, g in zip(reqs, one, strict=True):
        assert g.new_tokens == r.max_new_tokens and g.stopped == "length"


@pytest.mark.parametrize("batch_size", [1, 8])
def test_generate_matches_hf_generate(sharp, requests, batch_size):
    """bs 1: the shared prefix cache is reused by many batches and must stay untouched."""
    model, tok = sharp
    lm = make_lm(sharp, batch_size)
    assert lm.bos == []  # the tiny tokenizer adds no BOS
    gens = lm.generate(requests)
    for req, g in zip(requests, gens, strict=True):
        new = hf_greedy(sharp, lm, req)
        assert g.text == tok.decode(new, skip_special_tokens=True), req
        assert g.new_tokens == len(new)
        assert g.prompt_tokens == len(lm.encode(req.prefix + req.text))


def test_generate_stops_at_eos(sharp, requests):
    """Make the 4th generated token an EOS id: the generation ends before it."""
    lm = make_lm(sharp)
    req = requests[0]
    new = hf_greedy(sharp, lm, req)
    j = new.index(new[3])  # first occurrence of that token
    lm.eos_ids = {new[3]}
    (g,) = lm.generate([req])
    assert g.stopped == "eos"
    assert g.new_tokens == j + 1
    assert g.text == lm.tok.decode(new[:j])


def test_generate_cuts_at_stop_string(sharp, requests):
    lm = make_lm(sharp)
    free = lm.generate(requests)
    checked = 0
    for req, g in zip(requests, free, strict=True):
        text = g.text
        lead = len(text) - len(text.lstrip())
        stop = text[lead + 2 : lead + 3]
        if len(text) < lead + 4 or not stop.strip():
            continue
        (cut,) = lm.generate([GenRequest(req.prefix, req.text, (stop, "never"), MAX_NEW)])
        assert cut.stopped == "stop"
        assert cut.text == text[: text.find(stop, lead)]
        assert stop not in cut.text[lead:]
        checked += 1
    assert checked >= 5


def test_split_shared_reassembles_every_request(sharp, requests):
    lm = make_lm(sharp)
    for prefix in {r.prefix for r in requests}:
        texts = {i: r.text for i, r in enumerate(requests) if r.prefix == prefix}
        shared, rest = lm._split_shared(prefix, texts)
        for i, t in texts.items():
            assert shared + rest[i] == lm.bos + lm.encode(prefix + t)
            assert len(rest[i]) >= 1


# ------------------------------------------------------------------------- loglikelihood


@pytest.fixture(scope="module")
def ll_requests(splits, sharp):
    k3 = demos_prefix(splits["train"][:3], "answer")
    k2 = demos_prefix(splits["train"][3:5], "cot")
    evals = splits["test"] + splits["dev"]
    reqs = [(k3, prompt(ex), target(ex, "answer")) for ex in evals[:6]]
    reqs += [(k2, prompt(ex), target(ex, "cot")) for ex in evals[6:9]]
    reqs += [("", prompt(ex), target(ex, "answer")) for ex in evals[9:12]]
    reqs.append((k3, "", " 12"))
    # a continuation that is the model's own greedy output: greedy must come out True
    lm = make_lm(sharp)
    own = lm.generate([GenRequest(k3, prompt(evals[12]), (), 5)])[0].text
    reqs.append((k3, prompt(evals[12]), own))
    return reqs


def plain_loglikelihood(sharp, lm, prefix, context, continuation):
    model, _ = sharp
    ctx = lm.bos + lm.encode(prefix + context)
    cont = lm.encode(continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[len(ctx) - 1 : -1], dim=-1)
    target_ids = torch.tensor(cont)
    total = float(logp.gather(-1, target_ids[:, None]).sum())
    greedy = bool((logp.argmax(-1) == target_ids).all())
    return total, greedy, len(cont)


def test_loglikelihood_matches_plain_forward(sharp, ll_requests):
    lm = make_lm(sharp, 8)
    got = lm.loglikelihood(ll_requests)
    for req, (lp, greedy, n) in zip(ll_requests, got, strict=True):
        want_lp, want_greedy, want_n = plain_loglikelihood(sharp, lm, *req)
        assert lp == pytest.approx(want_lp, abs=1e-4), req
        assert (greedy, n) == (want_greedy, want_n), req
        assert lp < 0
    assert got[-1][1] is True  # the model's own greedy continuation
    assert not all(g for _, g, _ in got)


def test_loglikelihood_batch_size_invariant(sharp, ll_requests):
    one = make_lm(sharp, 1).loglikelihood(ll_requests)
    for bs in (3, 8):
        other = make_lm(sharp, bs).loglikelihood(ll_requests)
        for a, b in zip(one, other, strict=True):
            assert a[0] == pytest.approx(b[0], abs=1e-4)
            assert a[1:] == b[1:]


def test_loglikelihood_rejects_empty_parts(sharp):
    lm = make_lm(sharp)
    with pytest.raises(ValueError, match="continuation"):
        lm.loglikelihood([("", "Question: 1\nAnswer:", "")])
    with pytest.raises(ValueError, match="context"):
        lm.loglikelihood([("", "", " 1")])  # no BOS in the tiny tokenizer


# ------------------------------------------------------------------------- grouping


def test_results_do_not_depend_on_request_order_or_grouping(sharp, requests, ll_requests):
    """The shared driver (LM._grouped): each prefix group alone, and the requests reversed,
    give bit-identical results to the interleaved list, in request order."""
    lm = make_lm(sharp, 3)
    gens = [as_tuple(g) for g in lm.generate(requests)]
    lls = lm.loglikelihood(ll_requests)
    assert [as_tuple(g) for g in lm.generate(requests[::-1])] == gens[::-1]
    assert lm.loglikelihood(ll_requests[::-1]) == lls[::-1]
    for prefix in {r.prefix for r in requests}:
        idx = [i for i, r in enumerate(requests) if r.prefix == prefix]
        alone = lm.generate([requests[i] for i in idx])
        assert [as_tuple(g) for g in alone] == [gens[i] for i in idx]
    for prefix in {r[0] for r in ll_requests}:
        idx = [i for i, r in enumerate(ll_requests) if r[0] == prefix]
        assert lm.loglikelihood([ll_requests[i] for i in idx]) == [lls[i] for i in idx]


def test_baseline_mode_gives_the_same_results(sharp, requests, ll_requests, monkeypatch):
    """FTLAB_BASELINE=1 (bench/quickstart.py's "before": no prefix cache, concatenating KV
    cache, LM head everywhere, batches decoding until their last row stops) changes the work
    done, not the results: identical generations, log-likelihoods within float tolerance."""
    lm = make_lm(sharp, 4)
    gens = [as_tuple(g) for g in lm.generate(requests)]
    lls = lm.loglikelihood(ll_requests)
    monkeypatch.setenv("FTLAB_BASELINE", "1")
    base = make_lm(sharp, 4)
    assert base.baseline and not lm.baseline
    assert [as_tuple(g) for g in base.generate(requests)] == gens
    got = base.loglikelihood(ll_requests)
    for a, b in zip(got, lls, strict=True):
        assert a[0] == pytest.approx(b[0], abs=1e-4)
        assert a[1:] == b[1:]
    assert base.counts["tokens"] > 2 * lm.counts["tokens"]  # it really ran every prefix


# ------------------------------------------------------------------------- context length


def test_generate_too_long_raises_not_truncates(sharp, splits):
    lm = make_lm(sharp)
    prefix = demos_prefix(splits["train"][:2], "answer")
    text = prompt(splits["test"][0])
    n = len(lm.bos + lm.encode(prefix + text))
    req = GenRequest(prefix, text, (), 4)
    lm.max_len = n + 4  # exactly fits
    (g,) = lm.generate([req])
    assert g.prompt_tokens == n
    lm.max_len = n + 3
    with pytest.raises(ValueError, match="nothing is truncated"):
        lm.generate([req])
    with pytest.raises(ValueError, match="nothing is truncated"):
        lm.generate([GenRequest("", prefix + text, (), 4)])


def test_generate_beyond_model_context_raises(sharp):
    lm = make_lm(sharp)
    assert lm.max_len == sharp[0].config.max_position_embeddings == 4096
    with pytest.raises(ValueError, match="context is 4096"):
        lm.generate([GenRequest("", "x" * 4100, (), 4)])


def test_loglikelihood_too_long_raises(sharp, splits):
    lm = make_lm(sharp)
    prefix = demos_prefix(splits["train"][:2], "answer")
    ex = splits["test"][0]
    req = (prefix, prompt(ex), target(ex, "answer"))
    n = len(lm.bos + lm.encode(prefix + req[1])) + len(lm.encode(req[2]))
    lm.max_len = n
    assert lm.loglikelihood([req])[0][2] == len(lm.encode(req[2]))
    lm.max_len = n - 1
    with pytest.raises(ValueError, match="nothing is truncated"):
        lm.loglikelihood([req])


# ------------------------------------------------------------------------- LM._cut


@pytest.mark.parametrize(
    "text, stops, want",
    [
        (" 42\nQuestion: next", ("\n",), (" 42", True)),
        ("\n42\nmore", ("\n",), ("\n42", True)),  # the leading newline is not a stop
        (
            "\n\ns1 = 1\nprint(s1)\n\nQuestion:",
            ("\n\n", "\nQuestion:"),
            ("\n\ns1 = 1\nprint(s1)", True),
        ),
        ("a\nQuestion: b\n\nc", ("\n\n", "\nQuestion:"), ("a", True)),  # first stop wins
        ("  \n \n", ("\n",), ("  \n \n", False)),  # only whitespace: nothing to cut
        ("abc", (), ("abc", False)),
        ("abc", ("",), ("abc", False)),  # an empty stop string is ignored
        ("abc", ("x",), ("abc", False)),
    ],
)
def test_cut(text, stops, want):
    assert LM._cut(text, stops) == want


# ------------------------------------------------------------------------- scoring speed-ups


@pytest.fixture(scope="module")
def choice_requests(splits):
    """Multiple choice: 4 continuations of 1-3 tokens per context (each context's choices
    share it), under a shared 3-shot prefix and zero-shot."""
    k3 = demos_prefix(splits["train"][:3], "answer")
    evals = splits["test"] + splits["dev"]
    reqs = []
    for j, ex in enumerate(evals[:10]):
        prefix = k3 if j < 6 else ""
        reqs += [(prefix, prompt(ex), c) for c in (" 1", " 12", " 345", f" {ex.answer}")]
    return reqs


@pytest.fixture(scope="module")
def per_example_requests(splits):
    """A different 3-shot demo set per example (lm-eval's default sampling), 4 choices each."""
    evals = splits["test"] + splits["dev"]
    reqs = []
    for j, ex in enumerate(evals[:6]):
        prefix = demos_prefix(splits["train"][3 * j : 3 * j + 3], "answer")
        reqs += [(prefix, prompt(ex), c) for c in (" 7", " 12", " 345", f" {ex.answer}")]
    return reqs


def check_against_plain(sharp, lm, reqs, got):
    for req, (lp, greedy, n) in zip(reqs, got, strict=True):
        want_lp, want_greedy, want_n = plain_loglikelihood(sharp, lm, *req)
        assert lp == pytest.approx(want_lp, abs=1e-4), req
        assert (greedy, n) == (want_greedy, want_n), req


def calls(module):
    """A list that grows by one entry per forward call of `module` (removed by .remove())."""
    seen: list[int] = []
    handle = module.register_forward_hook(lambda *_: seen.append(1))
    return seen, handle


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_choices_sharing_their_context_match_plain_forward(sharp, choice_requests, batch_size):
    """The second cache level (eval/tree.py): a context's continuations share one row after
    it; each log-likelihood is still that of the request run alone."""
    lm = make_lm(sharp, batch_size)
    assert lm.trees
    check_against_plain(sharp, lm, choice_requests, lm.loglikelihood(choice_requests))


def test_a_context_runs_once_for_all_its_choices(sharp, choice_requests):
    """Forward tokens: the shared prefix once, each context once, each choice's tokens once
    (before: the context once per choice)."""
    lm = make_lm(sharp, 8)
    lm.loglikelihood(choice_requests)
    k3 = choice_requests[0][0]
    want = len(lm.bos + lm.encode(k3))  # the shared prefix (the tiny tokenizer splits chars)
    for j in range(0, len(choice_requests), 4):
        prefix, ctx = choice_requests[j][:2]
        want += len(lm.encode(prefix + ctx)) - (len(lm.encode(prefix)) if prefix else 0)
        want += sum(len(lm.encode(r[2])) for r in choice_requests[j : j + 4])
    assert lm.counts["tokens"] == want


def test_lm_head_runs_once_per_scored_batch(sharp, choice_requests):
    """The LM head runs once per batch over the gathered positions, never per request, and
    the prefix cache is built without it."""
    lm = make_lm(sharp, 16)
    head, handle = calls(lm.model.get_output_embeddings())
    body, handle2 = calls(lm.model.get_decoder())
    try:
        lm.loglikelihood(choice_requests)
    finally:
        handle.remove()
        handle2.remove()
    # two groups (3-shot: 6 contexts, zero-shot: 4): one batch each, plus the 3-shot prefix
    assert len(head) == 2
    assert len(body) == 3


def test_per_example_prefixes_are_batched_whole(sharp, per_example_requests):
    """A prefix used by one context only gets no cache of its own: all such requests run in
    shared batches (here one forward for 6 examples x 4 choices), same numbers as alone."""
    lm = make_lm(sharp, 8)
    body, handle = calls(lm.model.get_decoder())
    try:
        got = lm.loglikelihood(per_example_requests)
    finally:
        handle.remove()
    assert len(body) == 1
    check_against_plain(sharp, lm, per_example_requests, got)
    for bs in (1, 5):
        other = make_lm(sharp, bs).loglikelihood(per_example_requests)
        for a, b in zip(got, other, strict=True):
            assert a[0] == pytest.approx(b[0], abs=1e-4)
            assert a[1:] == b[1:]


def test_generate_with_per_example_prefixes_matches_hf(sharp, splits):
    evals = splits["test"] + splits["dev"]
    reqs = [
        GenRequest(demos_prefix(splits["train"][2 * j : 2 * j + 2], "cot"), prompt(ex), (), 6)
        for j, ex in enumerate(evals[:5])
    ]
    lm = make_lm(sharp, 4)
    gens = lm.generate(reqs)
    for req, g in zip(reqs, gens, strict=True):
        new = hf_greedy(sharp, lm, req, 6)
        assert g.text == lm.tok.decode(new, skip_special_tokens=True)
        assert g.prompt_tokens == len(lm.encode(req.prefix + req.text))
    assert [as_tuple(g) for g in make_lm(sharp, 1).generate(reqs)] == [as_tuple(g) for g in gens]


def test_trees_under_eager_attention_and_the_plain_path(tiny_path, choice_requests, sharp):
    """Eager attention takes the tree mask in its additive form; a model that takes no
    explicit mask (here: forced) uses the plain path. Same numbers either way."""
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_path, attn_implementation="eager")
    eager.load_state_dict(sharp[0].state_dict())
    eager.eval()
    lm = LM(eager, sharp[1], batch_size=8, progress=False)
    assert lm.trees and eager.config._attn_implementation == "eager"
    check_against_plain(sharp, lm, choice_requests, lm.loglikelihood(choice_requests))
    plain = make_lm(sharp, 8)
    plain.trees = False
    check_against_plain(sharp, plain, choice_requests, plain.loglikelihood(choice_requests))


def test_sliding_window_models_take_the_plain_path():
    from types import SimpleNamespace

    from lab.core.masks import takes_4d_mask

    def model(**cfg):
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa", **cfg))

    assert takes_4d_mask(model())
    assert takes_4d_mask(model(layer_types=["full_attention"] * 2))
    assert not takes_4d_mask(model(layer_types=["sliding_attention", "full_attention"]))
    assert not takes_4d_mask(model(sliding_window=512))
    assert takes_4d_mask(model(sliding_window=512, use_sliding_window=False))
    assert not takes_4d_mask(
        SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    )


def test_phase_clock_accounts_for_every_forward(sharp, choice_requests, requests):
    """eval/phases.py: every forward lands in one phase; tokens add up to lm.counts."""
    lm = make_lm(sharp, 8)
    lm.loglikelihood(choice_requests)
    ph = lm.clock.phases
    assert set(ph) == {"prefix", "scored"}
    n = len(lm.encode(choice_requests[0][0]))
    assert ph["prefix"]["tokens"] == n and ph["prefix"]["attn_pairs"] == n * (n + 1) // 2
    lm.generate(requests)
    assert set(ph) == {"prefix", "scored", "prefill", "decode"}
    assert sum(p["tokens"] for p in ph.values()) == lm.counts["tokens"]
    assert sum(p["head"] for p in ph.values()) == lm.counts["head"]
    assert all(p["s"] > 0 and p["calls"] > 0 and p["attn_pairs"] > 0 for p in ph.values())


def test_tree_layout_rows():
    from eval.tree import Unit, layout

    units = [Unit([1] * 5, [[2], [3, 3]]) for _ in range(5)]  # 8 tokens each
    assert layout(units, 0) == [[0], [1], [2], [3], [4]]  # no shared prefix
    assert layout(units, 7) == [[0], [1], [2], [3], [4]]  # a prefix shorter than a unit
    assert layout(units, 16) == [[0, 1], [2, 3], [4]]
    assert layout(units, 100) == [[0, 1, 2, 3, 4]]


def test_baseline_mode_same_choice_scores(
    sharp, choice_requests, per_example_requests, monkeypatch
):
    """Trees, per-example batching and the gathered head change the work, not the numbers:
    the same as FTLAB_BASELINE=1 (one whole request per row, head everywhere)."""
    reqs = choice_requests + per_example_requests
    lm = make_lm(sharp, 5)
    fast = lm.loglikelihood(reqs)
    monkeypatch.setenv("FTLAB_BASELINE", "1")
    base = make_lm(sharp, 5)
    assert not base.trees
    for a, b in zip(base.loglikelihood(reqs), fast, strict=True):
        assert a[0] == pytest.approx(b[0], abs=1e-4)
        assert a[1:] == b[1:]
    assert base.counts["tokens"] > 2 * lm.counts["tokens"]


@pytest.mark.parametrize("q_len, masked", [(1, False), (1, True), (5, True)])
def test_folded_gqa_attention_equals_stock_sdpa(sharp, q_len, masked):
    """eval/attention.py: query heads folded into the query axis, keys and values read in
    place; the same output as transformers' sdpa (which repeats the KV heads)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from eval.attention import folded_sdpa

    module = sharp[0].model.layers[0].self_attn
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, q_len, 16, generator=g)
    k, v = torch.randn(3, 2, 9, 16, generator=g), torch.randn(3, 2, 9, 16, generator=g)
    mask = None
    if masked:
        mask = torch.rand(3, 1, q_len, 9, generator=g) > 0.4
        mask[..., -1] = True  # no empty row
    want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    got, _ = folded_sdpa(module, q, k, v, mask, scaling=0.3)
    assert got.shape == want.shape == (3, q_len, 4, 16)
    assert torch.allclose(got, want, atol=1e-6)


def test_lm_forwards_use_folded_attention_and_restore_the_model(sharp, choice_requests):
    from eval.attention import NAME

    lm = make_lm(sharp, 8)
    seen: list[str] = []
    layer = lm.model.model.layers[0]
    handle = layer.register_forward_pre_hook(
        lambda *_: seen.append(lm.model.config._attn_implementation)
    )
    try:
        lm.loglikelihood(choice_requests[:8])
        lm.generate([GenRequest("", "Question: 1 + 2\nAnswer:", (), 3)])
    finally:
        handle.remove()
    assert seen and set(seen) == {NAME}
    assert lm.model.config._attn_implementation == "sdpa"


def test_a_frozen_head_runs_as_one_product_with_the_same_results(tiny_path, requests, ll_requests):
    """A model whose weights need no gradient (a frozen base under a LoRA adapter, a merged
    adapter) used to send the head's last-position slice through a batched product against
    the vocabulary matrix expanded once per row (`aten::bmm`, 1.6 s instead of 0.01 s for
    32 rows of SmolLM2). Now the head gets a contiguous input: one `mm`, and at bf16 the same
    generations and log-likelihoods as the same model with trainable weights (the path a base
    model takes)."""
    import copy

    frozen, tok = load_model(tiny_path)
    frozen = sharpen(frozen, 0).to(torch.bfloat16)
    trainable = copy.deepcopy(frozen)
    frozen.requires_grad_(False)
    vocab = frozen.get_output_embeddings().weight.shape[0]

    lm = LM(frozen, tok, batch_size=8, progress=False)
    with torch.profiler.profile(record_shapes=True) as prof:
        gens = [as_tuple(g) for g in lm.generate(requests)]
        lls = lm.loglikelihood(ll_requests)
    expanded = [
        e.input_shapes
        for e in prof.events()
        if e.name == "aten::bmm" and any(vocab in s for s in e.input_shapes if s)
    ]
    assert expanded == []
    ref = LM(trainable, tok, batch_size=8, progress=False)
    assert gens == [as_tuple(g) for g in ref.generate(requests)]
    assert lls == ref.loglikelihood(ll_requests)
