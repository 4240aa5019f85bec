"""Compute accounting: honest FLOP counts for training and inference of a decoder LM.

2 FLOPs per parameter per token forward for the decoder body; the LM head (V x d) only
where it is applied. Full FT = 3 x forward (backward computes activation and weight
gradients). LoRA = 2 x the frozen model's forward (the backward still propagates activation
gradients through every frozen layer, but computes no frozen weight gradients) + 6 x LoRA
parameters x tokens. Embedding lookups are free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FlopCounter:
    body: int  # decoder parameters excluding embeddings / LM head
    head: int  # V x d
    lora: int = 0  # trainable LoRA parameters (0 for full FT and inference)
    method: str = "full"

    def forward(self, tokens: int, head_tokens: int) -> float:
        return 2.0 * (self.body + self.lora) * tokens + 2.0 * self.head * head_tokens

    def train(self, tokens: int, head_tokens: int) -> float:
        if self.method == "full":
            return 3.0 * self.forward(tokens, head_tokens)
        frozen = 2.0 * self.body * tokens + 2.0 * self.head * head_tokens
        return 2.0 * frozen + 6.0 * self.lora * tokens

    def generate(self, prompt_tokens: int, new_tokens: int) -> float:
        """One request without any caching across requests: the prompt is run once (head
        at its last position), then one token at a time (head every step)."""
        return self.forward(prompt_tokens + new_tokens, 1 + new_tokens)


def numel(p: Any) -> int:
    """A parameter's full size, also when DeepSpeed ZeRO-3 holds only this process's
    partition of it (the tensor is then empty; `ds_numel` is the full size)."""
    return int(getattr(p, "ds_numel", 0) or p.numel())


def flop_counter(model: Any, method: str = "full") -> FlopCounter:
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    base = sum(numel(p) for n, p in model.named_parameters() if "lora_" not in n)
    lora = sum(numel(p) for n, p in model.named_parameters() if "lora_" in n)
    # partitioned (empty) tensors share no storage: a tie is then the same parameter
    tied = head is emb or (emb.numel() > 0 and head.data_ptr() == emb.data_ptr())
    body = base - numel(emb) - (0 if tied else numel(head))
    return FlopCounter(body, numel(head), lora, method)


def baseline_mode() -> bool:
    """True when FTLAB_BASELINE=1: evaluation and training without the lab's optimisations."""
    return os.environ.get("FTLAB_BASELINE") == "1"
