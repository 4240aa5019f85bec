"""Classification in chat style (eval/choice.py with a chat frame): each choice is scored as
the assistant turn's content after the chat-framed prompt, the same text a chat fine-tuned
arm learns as its target."""

from __future__ import annotations

import pytest

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from lab.core.chat import chat_target, chat_text
from lab.core.prompts import prompt
from lab.core.recipe import TaskCfg
from lab.study.models import load_model
from lab.tasks import build_task


@pytest.fixture(scope="module")
def nli():
    return build_task(TaskCfg(name="mnli_hans", n_train=32, n_dev=4, n_test=3))


def test_chat_choices_are_assistant_content(nli, tiny_chat_path):
    model, tok = load_model(tiny_chat_path)
    lm = LM(model, tok, batch_size=2, progress=False)
    xs, demos = nli["test"], tuple(nli["train"][:2])
    for turns in ("single_turn", "multi_turn"):
        spec = PromptSpec("answer", demos, style="chat", turns=turns)
        preds, _m = evaluate_split(lm, xs, spec, 4)
        fr = spec.frame(tok)
        assert fr.tail == "<|im_end|>\n<|im_start|>assistant\n"
        assert fr.prefix.count("<|im_start|>assistant") == (2 if turns == "multi_turn" else 0)
        for ex, p in zip(xs, preds, strict=True):
            want = lm.loglikelihood(
                [(fr.prefix, fr.wrap(prompt(ex)), chat_text(c)) for c in ex.choices]
            )
            assert p["choice_logprobs"] == pytest.approx([lp for lp, _g, _n in want], abs=1e-4)
            assert chat_target(ex, "answer") == chat_text(ex.choices[ex.gold_index])
