"""Training data: prompt + target in one format, tokenised, loss only on the target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lab.core.chat import chat_frame, chat_target, end_of_turn
from lab.core.example import Example
from lab.core.prompts import demos_prefix, prompt, target

IGNORE = -100


def encode_example(
    ex: Example,
    fmt: str,
    tokenizer: Any,
    bos: list[int],
    style: str = "plain",
    demos: Sequence[Example] = (),
    turns: str = "single_turn",
) -> dict[str, list[int]]:
    """input_ids = bos + [demos +] prompt + target + eos; labels mask everything but
    target + eos.

    Prompt and target are tokenised separately, exactly as the evaluator sees the prompt
    alone and the model then produces the target tokens. Chat style (lab/core/chat.py): the
    prompt is the chat frame of the demos around the plain prompt (ending with the
    assistant's generation prompt), the target the assistant's content, then the end-of-turn
    token. `demos`: in-context fine-tuning's (train/icft_data.py), in the k-shot layout.
    """
    if style == "chat":
        fr = chat_frame(tokenizer, demos, fmt, multi_turn=turns == "multi_turn")
        text, answer, eos = (
            fr.prefix + fr.wrap(prompt(ex)),
            chat_target(ex, fmt),
            end_of_turn(tokenizer),
        )
    else:
        text = demos_prefix(demos, fmt) + prompt(ex)
        answer, eos = target(ex, fmt), tokenizer.eos_token_id
    p = bos + tokenizer(text, add_special_tokens=False).input_ids
    t = tokenizer(answer, add_special_tokens=False).input_ids + [eos]
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
