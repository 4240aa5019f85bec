"""The log-likelihood classification / multiple-choice path (eval/choice.py): verbalizer
scores against a hand computation, Brier score, batch-size independence, FT targets."""

from __future__ import annotations

import math

import pytest
import torch
from sharp import sharpen

from eval.choice import brier, choice_probs, evaluate_choices
from eval.evaluate import PromptSpec, evaluate_split, summarize
from eval.lm import LM
from lab.core.example import Example
from lab.core.prompts import demos_prefix, prompt, target
from lab.core.recipe import TaskCfg
from lab.study.models import load_model
from lab.tasks import build_task
from train.data import IGNORE, Encoder


@pytest.fixture(scope="module")
def sharp(tiny_path):
    """The tiny model with re-drawn (std 0.2) matrices: prompts get distinct scores."""
    model, tok = load_model(tiny_path)
    return sharpen(model, 1), tok


@pytest.fixture(scope="module")
def nli():
    return build_task(TaskCfg(name="mnli_hans", n_train=32, n_dev=4, n_test=7))


def _ex(answer="Yes", choices=(" Yes", " No"), **kw):
    return Example(
        id="x-0",
        question="p h",
        answer=answer,
        rationale="",
        program="",
        prompt="P question: H Yes or No? answer:",
        choices=choices,
        **kw,
    )


def test_choice_probs_and_brier_by_hand():
    probs = choice_probs([math.log(0.2), math.log(0.6)])  # normalised over the choices
    assert probs == pytest.approx([0.25, 0.75])
    assert brier(probs, 1) == pytest.approx(0.25**2 + 0.25**2)  # 0.125
    assert brier(probs, 0) == pytest.approx(0.75**2 + 0.75**2)  # 1.125
    assert brier([0.5, 0.5], 0) == pytest.approx(0.5)  # uniform guess over two choices
    assert brier([1.0, 0.0, 0.0], 0) == 0.0 and brier([0.0, 1.0, 0.0], 0) == 2.0
    assert sum(choice_probs([-1000.0, -1001.0, -999.0])) == pytest.approx(1.0)  # no underflow


def test_gold_must_be_a_choice():
    assert _ex().gold_index == 0 and _ex("No").gold_index == 1
    with pytest.raises(ValueError, match="not one of its choices"):
        _ex("Maybe")


def test_pattern_is_the_prompt_for_demos_ft_and_eval(nli, tiny_model):
    ex = nli["test"][0]
    assert prompt(ex) == ex.prompt and ex.prompt.endswith(" Yes or No? answer:")
    assert ex.prompt.startswith(ex.question.split(" ")[0])
    assert target(ex, "answer") == f" {ex.answer}" == ex.choices[ex.gold_index]
    d = nli["train"][0]
    assert demos_prefix([d], "answer") == f"{d.prompt} {d.answer}\n\n"
    model, tok = tiny_model
    enc = Encoder("answer", tok, [])(ex)
    supervised = [
        t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE
    ]
    assert supervised == tok(f" {ex.answer}", add_special_tokens=False).input_ids + [
        tok.eos_token_id
    ]  # FT learns exactly the gold verbalizer (+ EOS) after the shared pattern


def _hand_logprob(model, tok, bos, context: str, cont: str) -> float:
    """log p(cont | context) from one plain forward pass over the whole sequence."""
    ctx = bos + tok(context, add_special_tokens=False).input_ids
    full = bos + tok(context + cont, add_special_tokens=False).input_ids
    assert full[: len(ctx)] == ctx  # the verbalizer does not merge into the prompt
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[i - 1, full[i]] for i in range(len(ctx), len(full))))


@pytest.mark.parametrize("k", [0, 3])
def test_verbalizer_scores_match_a_hand_computation(sharp, nli, k):
    model, tok = sharp
    lm = LM(model, tok, batch_size=4, progress=False)
    prefix = demos_prefix(nli["train"][:k], "answer")
    exs = nli["test"] + nli["ood_hans"][:3]
    preds, m = evaluate_choices(lm, exs, prefix)
    for ex, p in zip(exs, preds, strict=True):
        hand = [_hand_logprob(model, tok, lm.bos, prefix + ex.prompt, c) for c in ex.choices]
        assert p["choice_logprobs"] == pytest.approx(hand, abs=1e-4)
        assert p["pred_index"] == max(range(2), key=lambda i: hand[i])
        assert p["correct"] == (p["pred_index"] == ex.gold_index)
        assert p["gold_logprob"] == pytest.approx(hand[ex.gold_index], abs=1e-4)
        z = math.exp(hand[0]) + math.exp(hand[1])
        probs = [math.exp(h) / z for h in hand]
        assert p["choice_probs"] == pytest.approx(probs, abs=1e-5)
        assert p["brier"] == pytest.approx(brier(probs, ex.gold_index), abs=1e-5)
    assert m["exact_match"] == pytest.approx(sum(p["correct"] for p in preds) / len(exs))
    assert m["brier"] == pytest.approx(sum(p["brier"] for p in preds) / len(exs))
    assert m["gold_logprob"] == pytest.approx(sum(p["gold_logprob"] for p in preds) / len(exs))


def test_scores_do_not_depend_on_batch_size(sharp, nli):
    model, tok = sharp
    exs = nli["test"] + nli["ood_hans"] + nli["ood_mnli_mm"]
    spec = PromptSpec("answer", tuple(nli["train"][:4]))
    runs = []
    for bs in (1, 3, 32):
        lm = LM(model, tok, batch_size=bs, progress=False)
        runs.append(evaluate_split(lm, exs, spec, max_new_tokens=4))
    ref_p, ref_m = runs[0]
    assert summarize(ref_p) == ref_m  # what the data-parallel path recomputes after gathering
    assert len({round(p["choice_logprobs"][0], 4) for p in ref_p}) > 1  # not degenerate
    for preds, m in runs[1:]:
        for a, b in zip(ref_p, preds, strict=True):
            assert a["choice_logprobs"] == pytest.approx(b["choice_logprobs"], abs=1e-5)
            assert a["pred_index"] == b["pred_index"]
        for key in ("exact_match", "gold_logprob", "brier"):
            assert m[key] == pytest.approx(ref_m[key], abs=1e-6)


def test_multiple_choice_with_five_options(sharp):
    splits = build_task(TaskCfg(name="gsm8k", n_train=10, n_dev=2, n_test=4))
    aqua = splits["ood_aqua"]
    assert len(aqua) == 4 and all(len(e.choices) == 5 for e in aqua)
    model, tok = sharp
    preds, m = evaluate_split(LM(model, tok, progress=False), aqua, PromptSpec("answer"), 4)
    for ex, p in zip(aqua, preds, strict=True):
        assert p["gold"] == ex.answer and len(p["choice_logprobs"]) == 5
        assert sum(p["choice_probs"]) == pytest.approx(1.0)
        assert p["pred"] == ex.choices[p["pred_index"]].strip()
    assert 0.0 <= m["brier"] <= 2.0 and m["no_answer"] == 0.0


def test_a_split_mixing_choice_and_generation_examples_is_an_error(sharp, nli):
    model, tok = sharp
    gen = Example(id="g", question="1+1?", answer="2", rationale="", program="")
    with pytest.raises(ValueError, match="every example of a split must carry `choices`"):
        evaluate_split(
            LM(model, tok, progress=False), [nli["test"][0], gen], PromptSpec("answer"), 4
        )


def test_next_token_logprobs_equal_loglikelihood_of_single_tokens(sharp, nli):
    """The one-pass fast path (used when every choice is one token, as " Yes" / " No" are
    for SmolLM2) gives the numbers of `loglikelihood`, whatever the batch size."""
    model, tok = sharp
    conts = ["Y", "N", "a"]
    ids = [tok(c, add_special_tokens=False).input_ids for c in conts]
    assert all(len(i) == 1 for i in ids)
    exs = nli["test"] + nli["ood_hans"][:3]
    prefix = demos_prefix(nli["train"][:2], "answer")
    ref = LM(model, tok, batch_size=4, progress=False).loglikelihood(
        [(prefix, ex.prompt, c) for ex in exs for c in conts]
    )
    for bs in (1, 5):
        lm = LM(model, tok, batch_size=bs, progress=False)
        fast = lm.next_token_logprobs(
            [(prefix, ex.prompt) for ex in exs], [[i[0] for i in ids]] * len(exs)
        )
        flat = [x for row in fast for x in row]
        assert flat == pytest.approx([lp for lp, _g, _n in ref], abs=1e-4)
