"""In-context fine-tuning inputs (train/icft_data.py): k demos from the training set, never
the target itself (by id or by content), redrawn per draw and deterministic from the seed,
loss on the target's answer tokens only, tokenised as the evaluator tokenises the prompt."""

from __future__ import annotations

import pytest

from lab.core.example import Example
from lab.core.fairness import content_key
from lab.core.prompts import bos_prefix, demos_prefix, prompt, target
from train.data import IGNORE, Encoder, epoch_order
from train.icft_data import draw_demos, held_out_inputs, training_inputs


def ex(i: int, q: str | None = None) -> Example:
    return Example(
        f"train-{i}",
        q or f"What is {i} plus 1?",
        str(i + 1),
        f"{i} + 1 = {i + 1}. The answer is {i + 1}.",
        f"print({i} + 1)",
    )


TRAIN = [ex(i) for i in range(8)]


def _text(tok, ids):
    return tok.decode(ids)


def test_no_target_among_its_demos_and_demos_only_from_the_training_set():
    keys = [content_key(e) for e in TRAIN] + [content_key(TRAIN[2])]  # a twin of train-2
    import random

    for seed in range(20):
        for t in range(len(keys)):
            got = draw_demos(keys, t, 3, random.Random(seed))
            assert t not in got and len(set(got)) == 3
            assert all(keys[i] != keys[t] for i in got)  # the twin never shows the target


def test_inputs_hold_k_demos_loss_on_the_target_only(tiny_model):
    _model, tok = tiny_model
    bos = bos_prefix(tok)
    order = epoch_order(len(TRAIN), 24, seed=3)
    data = training_inputs(TRAIN, order, Encoder("answer", tok, bos), k=2, seed=3)
    assert len(data) == 24
    seen_demo_sets = set()
    for d, i in zip(data, order, strict=True):
        text = _text(tok, d["input_ids"])
        target_ex = TRAIN[i]
        supervised = [x for x in d["labels"] if x != IGNORE]
        assert supervised == tok(
            target(target_ex, "answer"), add_special_tokens=False
        ).input_ids + [tok.eos_token_id]
        # two solved demos, then the target's prompt; the target's question appears once
        assert text.count("Question:") == 3 and text.count(target_ex.question) == 1
        shown = [e for e in TRAIN if e.question in text and e is not target_ex]
        assert len(shown) == 2
        seen_demo_sets.add(tuple(e.id for e in shown))
        # the prefix and prompt tokenised together, as eval/lm.py tokenises prefix + text
        prefix = demos_prefix(
            shown if text.index(shown[0].question) < text.index(shown[1].question) else shown[::-1],
            "answer",
        )
        assert (
            d["input_ids"][: len(d["input_ids"]) - len(supervised)]
            == bos + tok(prefix + prompt(target_ex), add_special_tokens=False).input_ids
        )
    assert len(seen_demo_sets) > 5  # redrawn per draw, not fixed per example
    again = training_inputs(TRAIN, order, Encoder("answer", tok, bos), k=2, seed=3)
    assert again == data  # deterministic from the seed
    assert training_inputs(TRAIN, order, Encoder("answer", tok, bos), k=2, seed=4) != data


def test_k_zero_is_plain_fine_tuning(tiny_model):
    _model, tok = tiny_model
    bos = bos_prefix(tok)
    order = epoch_order(len(TRAIN), 10, seed=0)
    plain = [Encoder("cot", tok, bos)(TRAIN[i]) for i in order]
    assert training_inputs(TRAIN, order, Encoder("cot", tok, bos), k=0) == plain


def test_held_out_inputs_draw_demos_from_the_training_set_only(tiny_model):
    _model, tok = tiny_model
    held = [ex(100), ex(101)]
    data = held_out_inputs(held, TRAIN, Encoder("answer", tok, bos_prefix(tok)), k=3, seed=0)
    for h, d in zip(held, data, strict=True):
        text = _text(tok, d["input_ids"])
        assert text.count(h.question) == 1 and text.count("Question:") == 4
        assert not any(o.question in text for o in held if o is not h)


def test_too_few_examples_is_a_clear_error(tiny_model):
    _model, tok = tiny_model
    with pytest.raises(ValueError, match="lower train_k or raise the budget"):
        training_inputs(TRAIN[:2], [0, 1], Encoder("answer", tok, []), k=2)
