"""Chat-style prompts (lab/core/chat.py): the frames a chat template gives, exactly, with the
tiny model's ChatML template (lab/study/model_chat.py) and a template that writes BOS."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from lab.core.chat import chat_frame, chat_target, end_of_turn, frame, has_chat_template
from lab.core.example import Example
from lab.core.prompts import demos_prefix, prompt

EX = Example(
    id="t-0", question="Take 5 and add 4.", answer="9", rationale="5 + 4 = 9.", program="print(9)"
)
DEMO = Example(
    id="t-1", question="Take 2 and add 1.", answer="3", rationale="2 + 1 = 3.", program="print(3)"
)
SYS = "<|im_start|>system\nYou are tiny.<|im_end|>\n"


@pytest.fixture(scope="module")
def tok(tiny_chat_path):
    return AutoTokenizer.from_pretrained(tiny_chat_path)


def test_zero_shot_frame_exact(tok):
    fr = chat_frame(tok, (), "answer")
    assert fr.prefix == SYS + "<|im_start|>user\n"
    assert fr.tail == "<|im_end|>\n<|im_start|>assistant\n"
    assert fr.prefix + fr.wrap(prompt(EX)) == tok.apply_chat_template(
        [{"role": "user", "content": prompt(EX)}], tokenize=False, add_generation_prompt=True
    )


def test_single_turn_puts_demos_in_the_user_message(tok):
    fr = chat_frame(tok, (DEMO,), "answer", multi_turn=False)
    assert fr.prefix == SYS + "<|im_start|>user\n" + demos_prefix([DEMO], "answer")
    assert fr.prefix.endswith("Question: Take 2 and add 1.\nAnswer: 3\n\n")


def test_multi_turn_makes_demos_turns(tok):
    fr = chat_frame(tok, (DEMO,), "cot", multi_turn=True)
    assert fr.prefix == (
        SYS
        + "<|im_start|>user\nQuestion: Take 2 and add 1.\nAnswer:<|im_end|>\n"
        + "<|im_start|>assistant\n2 + 1 = 3.<|im_end|>\n"
        + "<|im_start|>user\n"
    )
    assert fr.tail == "<|im_end|>\n<|im_start|>assistant\n"


def test_plain_frame_is_the_demo_prefix(tok):
    fr = frame(tok, (DEMO,), "answer", "plain")
    assert (fr.prefix, fr.tail) == (demos_prefix([DEMO], "answer"), "")


def test_chat_target_drops_the_separator():
    assert chat_target(EX, "answer") == "9"
    assert chat_target(EX, "cot") == "5 + 4 = 9."
    assert chat_target(EX, "code") == "print(9)"


def test_end_of_turn_is_the_templates_not_eos(tok):
    eot = end_of_turn(tok)
    assert eot == tok.convert_tokens_to_ids("<|im_end|>") != tok.eos_token_id


def test_no_template(tiny_model):
    tok = tiny_model[1]
    assert not has_chat_template(tok)
    with pytest.raises(ValueError, match="no chat template"):
        chat_frame(tok, (), "answer")


class _BosTok:
    """A stand-in tokenizer whose template writes BOS and whose encode adds BOS too."""

    bos_token, bos_token_id = "<s>", 1
    chat_template = "x"

    def __call__(self, text, add_special_tokens=True):
        class R:
            input_ids = ([1] if add_special_tokens else []) + [ord(c) for c in text]

        return R()

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "<s>[U]" + messages[-1]["content"] + "[/U]"


def test_bos_written_by_template_is_not_doubled():
    fr = chat_frame(_BosTok(), (), "answer")
    assert (fr.prefix, fr.tail) == ("[U]", "[/U]")  # the evaluator and trainer add BOS
