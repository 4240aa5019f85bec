"""Template parity: a fine-tuned arm trains on exactly the tokens it is evaluated with. For
one example of each format (answer, cot, code) and each prompt style (plain, chat), the
training input ids start with the evaluator's prompt ids (train/data.py vs eval/lm.py
`prompt_ids` of the frame eval/evaluate.py builds), and the rest is the target and its end:
EOS in plain style, the chat template's end of turn in chat style, which generation also
stops at."""

from __future__ import annotations

import pytest

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from lab.core.chat import chat_target, end_of_turn
from lab.core.prompts import prompt, target
from lab.study.models import load_model
from train.data import IGNORE, Encoder


@pytest.fixture(scope="module")
def chat_model(tiny_chat_path):
    return load_model(tiny_chat_path)


@pytest.mark.parametrize("style", ["plain", "chat"])
@pytest.mark.parametrize("fmt", ["answer", "cot", "code"])
def test_training_ids_are_the_eval_prompt_plus_target(chat_model, splits, fmt, style):
    model, tok = chat_model
    lm = LM(model, tok, progress=False)
    ex = splits["train"][0]
    fr = PromptSpec(fmt, (), None, style=style).frame(tok)
    eval_ids = lm.prompt_ids(fr.prefix, fr.wrap(prompt(ex)))
    enc = Encoder(fmt, tok, lm.bos, style)(ex)
    ids, labels = enc["input_ids"], enc["labels"]
    n = len(eval_ids)
    assert ids[:n] == eval_ids  # the prompt: the same tokens, BOS included
    assert labels[:n] == [IGNORE] * n
    if style == "chat":
        want = tok(chat_target(ex, fmt), add_special_tokens=False).input_ids + [end_of_turn(tok)]
        assert tok.decode(ids[:n]).endswith("<|im_start|>assistant\n")
        assert ids[-1] == tok.convert_tokens_to_ids("<|im_end|>") != tok.eos_token_id
    else:
        want = tok(target(ex, fmt), add_special_tokens=False).input_ids + [tok.eos_token_id]
        assert "<|im_start|>" not in tok.decode(ids)
    assert ids[n:] == want == labels[n:]


def test_chat_generation_stops_at_end_of_turn(chat_model, splits):
    model, tok = chat_model
    lm = LM(model, tok, progress=False)
    assert end_of_turn(tok) not in lm.eos_ids
    evaluate_split(
        lm, splits["test"][:2], PromptSpec("answer", style="chat"), 4, gold_logprob=False
    )
    assert end_of_turn(tok) in lm.eos_ids


@pytest.mark.parametrize(
    "style, turns", [("plain", "single_turn"), ("chat", "single_turn"), ("chat", "multi_turn")]
)
@pytest.mark.parametrize("fmt", ["answer", "cot"])
def test_in_context_training_ids_are_the_k_shot_eval_prompt_plus_target(
    chat_model, splits, fmt, style, turns
):
    """In-context fine-tuning (`train_k`) in every prompt style: the training input with k
    demos is the k-shot evaluation prompt with those demos, then the target."""
    model, tok = chat_model
    lm = LM(model, tok, progress=False)
    ex, demos = splits["train"][0], tuple(splits["train"][1:4])
    fr = PromptSpec(fmt, demos, None, style=style, turns=turns).frame(tok)
    eval_ids = lm.prompt_ids(fr.prefix, fr.wrap(prompt(ex)))
    enc = Encoder(fmt, tok, lm.bos, style, turns)(ex, demos)
    n = len(eval_ids)
    assert enc["input_ids"][:n] == eval_ids and enc["labels"][:n] == [IGNORE] * n
    answer = chat_target(ex, fmt) if style == "chat" else target(ex, fmt)
    end = end_of_turn(tok) if style == "chat" else tok.eos_token_id
    want = tok(answer, add_special_tokens=False).input_ids + [end]
    assert enc["input_ids"][n:] == want == enc["labels"][n:]
    if turns == "multi_turn":  # each demo its own user and assistant turn
        assert tok.decode(enc["input_ids"][:n]).count("<|im_start|>assistant") == len(demos) + 1


def test_an_encoder_renders_the_chat_template_once_not_per_example(chat_model, splits):
    """A fine-tuning run encodes every draw with one Encoder: the zero-demo chat frame and
    the end of turn are rendered when it is built, not per example (they were rendered
    twice per example), and each example's ids are those of an encoder built for it alone."""
    _model, tok = chat_model
    examples = splits["train"][:12]
    calls = {"n": 0}
    render = tok.apply_chat_template

    def counted(*args, **kwargs):
        calls["n"] += 1
        return render(*args, **kwargs)

    encode = Encoder("answer", tok, [], "chat")
    tok.apply_chat_template = counted
    try:
        got = [encode(ex) for ex in examples]
    finally:
        del tok.apply_chat_template
    assert calls["n"] == 0
    assert got == [Encoder("answer", tok, [], "chat")(ex) for ex in examples]
