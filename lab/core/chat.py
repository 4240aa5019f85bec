"""Chat-style prompts: the lab's plain prompt text inside the tokenizer's chat template.

`prompt.style: chat` renders every arm's prompt with the tokenizer's own chat template
(transformers `apply_chat_template`, generation prompt added), as lm-evaluation-harness's
`--apply_chat_template`; `prompt.demos` lays out the k demos:

- `single_turn`: one user message holds the k demos (the plain text, blank-line separated)
  and the question;
- `multi_turn` (lm-evaluation-harness's `--fewshot_as_multiturn`): each demo's prompt is a
  user turn and its target an assistant turn, then the question's user turn.

The answer is the assistant's turn: its content is the plain target without its leading
separator (`chat_target`), closed by the template's end-of-turn token (`end_of_turn`), which
fine-tuned arms learn in place of EOS and generation stops at. A zero-shot trigger stays in
the question's text, inside the user turn.

A rendered prompt is split the way the evaluator reads it (`Frame`): the `prefix` every
question of a split shares (system prompt, demos, the opening of the user turn), the
question's own text (`prompt(ex, trigger)`), then the `tail` (the end of the user turn and
the assistant's generation prompt). The split is found by rendering a sentinel in place of
the question. Plain style is the same split with an empty tail. Training encodes
`prefix + prompt(ex) + tail` of the zero-demo frame: exactly the evaluated prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.core.example import Example
from lab.core.formats import DEFAULT, PromptFormat
from lab.core.prompts import bos_prefix, demos_prefix, prompt, target

SENTINEL = "@@lab-question-7f3a@@"  # stands for the question's text while rendering


@dataclass(frozen=True)
class Frame:
    """What surrounds each question's text: `prefix + prompt(ex, trigger) + tail`."""

    prefix: str
    tail: str = ""

    def wrap(self, text: str) -> str:
        """The question's text with the tail (the part after the shared prefix)."""
        return text + self.tail


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_target(ex: Example, fmt: str, prompt_format: PromptFormat = DEFAULT) -> str:
    """The assistant turn's content: the plain target without its separator (the space after
    'Answer:', or the newline before a program)."""
    return chat_text(target(ex, fmt, prompt_format))


def chat_text(text: str) -> str:
    """A plain continuation (' 5', ' Yes', a gold program after '\\n') as an assistant turn's
    content: without its one leading separator."""
    return text[1:] if text[:1] in (" ", "\n") else text


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )


def chat_frame(
    tokenizer: Any,
    demos: Sequence[Example],
    fmt: str,
    multi_turn: bool = False,
    prompt_format: PromptFormat = DEFAULT,
) -> Frame:
    """The chat frame of a question after `demos` (format `fmt`, written in `prompt_format`).
    A BOS the template writes is dropped from the prefix when the evaluator and the trainer
    add it anyway (`bos_prefix`), so a sequence starts with exactly one."""
    if not has_chat_template(tokenizer):
        raise ValueError("the tokenizer has no chat template")
    pf = prompt_format
    if multi_turn:
        messages = []
        for d in demos:
            messages.append({"role": "user", "content": prompt(d, None, pf)})
            messages.append({"role": "assistant", "content": chat_target(d, fmt, pf)})
        messages.append({"role": "user", "content": SENTINEL})
    else:
        messages = [{"role": "user", "content": demos_prefix(demos, fmt, pf) + SENTINEL}]
    text = _render(tokenizer, messages, generation_prompt=True)
    if text.count(SENTINEL) != 1:
        raise ValueError("the chat template does not write a user message's content verbatim")
    prefix, tail = text.split(SENTINEL)
    bos = getattr(tokenizer, "bos_token", None)
    if bos and bos_prefix(tokenizer) and prefix.startswith(bos):
        prefix = prefix[len(bos) :]
    return Frame(prefix, tail)


def frame(
    tokenizer: Any,
    demos: Sequence[Example],
    fmt: str,
    style: str = "plain",
    turns: str = "",
    prompt_format: PromptFormat = DEFAULT,
) -> Frame:
    """The frame of a question in `style` ('plain': the demos as the prefix, no tail)."""
    if style == "chat":
        return chat_frame(tokenizer, demos, fmt, turns == "multi_turn", prompt_format)
    return Frame(demos_prefix(demos, fmt, prompt_format))


def end_of_turn(tokenizer: Any) -> int:
    """The token that closes an assistant turn: the first token the template writes after an
    assistant message's content when it is a special (added) token, else EOS."""
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": SENTINEL},
    ]
    after = _render(tokenizer, messages, generation_prompt=False).split(SENTINEL, 1)[1]
    ids = tokenizer(after, add_special_tokens=False).input_ids if after else []
    special = set(getattr(tokenizer, "all_special_ids", [])) | set(
        getattr(tokenizer, "added_tokens_decoder", {}) or {}
    )
    if ids and ids[0] in special:
        return int(ids[0])
    return int(tokenizer.eos_token_id)
