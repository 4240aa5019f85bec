"""Training data: prompt + target in one format, tokenised, loss only on the target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lab.core.chat import Frame, chat_frame, chat_target, end_of_turn
from lab.core.example import Example
from lab.core.prompts import demos_prefix, prompt, target

IGNORE = -100


class Encoder:
    """Writes a study's training inputs: input_ids = bos + [demos +] prompt + target + eos,
    labels masking everything but target + eos.

    Prompt and target are tokenised separately, exactly as the evaluator sees the prompt
    alone and the model then produces the target tokens. Chat style (lab/core/chat.py): the
    prompt is the chat frame of the demos around the plain prompt (ending with the
    assistant's generation prompt), the target the assistant's content, then the end-of-turn
    token. The zero-demo frame and the end-of-turn token are rendered once per encoder, not
    per example; a call with demos (in-context fine-tuning, train/icft_data.py; test-time
    tasks, train/ttt.py) renders its own frame, in the k-shot layout.
    """

    def __init__(
        self,
        fmt: str,
        tokenizer: Any,
        bos: list[int],
        style: str = "plain",
        turns: str = "single_turn",
    ) -> None:
        self.fmt, self.tokenizer, self.bos = fmt, tokenizer, bos
        self.chat, self.multi_turn = style == "chat", turns == "multi_turn"
        self.alone = self._frame(())  # the frame of a prompt without demos
        self.eos = end_of_turn(tokenizer) if self.chat else tokenizer.eos_token_id

    def _frame(self, demos: Sequence[Example]) -> Frame:
        if self.chat:
            return chat_frame(self.tokenizer, demos, self.fmt, multi_turn=self.multi_turn)
        return Frame(demos_prefix(demos, self.fmt))

    def __call__(self, ex: Example, demos: Sequence[Example] = ()) -> dict[str, list[int]]:
        fr = self._frame(demos) if demos else self.alone
        answer = chat_target(ex, self.fmt) if self.chat else target(ex, self.fmt)
        text = fr.prefix + fr.wrap(prompt(ex))
        p = self.bos + self.tokenizer(text, add_special_tokens=False).input_ids
        t = self.tokenizer(answer, add_special_tokens=False).input_ids + [self.eos]
        return {"input_ids": p + t, "labels": [IGNORE] * len(p) + t}


def collate(batch: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence in the batch; padded labels are ignored."""
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[i, :n] = torch.tensor(b["input_ids"])
        labels[i, :n] = torch.tensor(b["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def epoch_order(n: int, total: int, seed: int) -> list[int]:
    """`total` indices into range(n): successive seeded permutations (epochs)."""
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < total:
        order.extend(torch.randperm(n, generator=g).tolist())
    return order[:total]
