"""Chat templates of the models the lab builds or converts (`prompt.style: chat`).

- A GGUF file keeps its chat template in its metadata (`tokenizer.chat_template`);
  transformers' GGUF loader carries it into the converted tokenizer, and where a loader
  version does not, `carry_gguf_chat_template` copies it from the metadata.
- `tiny-random-chat` (tests, --smoke of a chat recipe): the tiny character-level model with
  two added special tokens and a ChatML template shaped like SmolLM2-Instruct's (a default
  system turn, `<|im_end|>` closing every turn while EOS stays `</s>`), so that the chat
  path's end-of-turn handling is exercised with an end of turn that is not EOS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are tiny.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def gguf_chat_template(gguf: Path) -> str | None:
    """The chat template stored in a GGUF file's metadata, or None."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.chat_template")
    if field is None or not field.data:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def carry_gguf_chat_template(tok: Any, gguf: Path) -> None:
    """Give a tokenizer converted from `gguf` the file's chat template when it lacks one."""
    if not getattr(tok, "chat_template", None):
        template = gguf_chat_template(gguf)
        if template:
            tok.chat_template = template


def add_tiny_chat(tok: Any) -> None:
    """Make the tiny model's tokenizer a chat tokenizer (two special tokens, a template)."""
    tok.add_special_tokens({"additional_special_tokens": CHAT_TOKENS})
    tok.chat_template = TINY_CHAT_TEMPLATE
