"""Chat templates of the models the lab converts (lab/study/model_chat.py): a GGUF's template
is read from its metadata and carried to a converted tokenizer that lacks one; the real
SmolLM2 GGUF keeps its template through the lab's conversion (`-m slow`)."""

from __future__ import annotations

import pytest
from gguf import GGUFWriter
from transformers import AutoTokenizer

from lab.core.chat import chat_frame, end_of_turn
from lab.study.model_chat import carry_gguf_chat_template, gguf_chat_template
from lab.study.models import resolve_model

TEMPLATE = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"


def _gguf(path, template=None):
    w = GGUFWriter(str(path), "llama")
    if template is not None:
        w.add_chat_template(template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_chat_template_is_carried_when_missing(tmp_path, tiny_path):
    with_t, without = _gguf(tmp_path / "a.gguf", TEMPLATE), _gguf(tmp_path / "b.gguf")
    assert gguf_chat_template(with_t) == TEMPLATE and gguf_chat_template(without) is None
    tok = AutoTokenizer.from_pretrained(tiny_path)
    assert not tok.chat_template
    carry_gguf_chat_template(tok, without)
    assert not tok.chat_template
    carry_gguf_chat_template(tok, with_t)
    assert tok.chat_template == TEMPLATE
    tok.chat_template = "kept"
    carry_gguf_chat_template(tok, with_t)  # a tokenizer's own template wins
    assert tok.chat_template == "kept"


@pytest.mark.slow
def test_smollm2_conversion_keeps_its_chat_template():
    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct").path)
    fr = chat_frame(tok, (), "answer")
    assert fr.prefix.startswith("<|im_start|>system\n") and fr.prefix.endswith("<|im_start|>user\n")
    assert fr.tail == "<|im_end|>\n<|im_start|>assistant\n"
    assert end_of_turn(tok) == tok.convert_tokens_to_ids("<|im_end|>")
