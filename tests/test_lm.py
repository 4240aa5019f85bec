"""eval/lm.py on the tiny random model: batching invariance, agreement with plain HF
generation and a plain forward pass, context-length errors, stop strings."""

from __future__ import annotations

import pytest
import torch
from sharp import sharpen

from eval.lm import LM, GenRequest
from eval.prompts import demos_prefix, prompt, target
from lab.models import load_model

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
