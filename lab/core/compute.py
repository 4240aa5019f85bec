"""Compute accounting: honest FLOP counts for training and inference of a decoder LM.

2 FLOPs per parameter per token forward for the decoder body; the LM head (V x d) only
where it is applied. Full FT = 3 x forward (backward computes activation and weight
gradients). LoRA = 2 x the frozen model's forward (the backward still propagates activation
gradients through every frozen layer, but computes no frozen weight gradients) + 6 x LoRA
parameters x tokens. Embedding lookups are free. Attention is left out of these (2N per
token), except where a cached demo prefix makes it the per-query cost that grows with the
prefix: `cached_query_flops` adds every own token's attention to the prefix (`attn` FLOPs per
query-key pair: QK^T and AV, 2 FLOPs per multiply-add, over every layer and head).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FlopCounter:
    body: int  # decoder parameters excluding embeddings / LM head
    head: int  # V x d
    lora: int = 0  # trainable LoRA parameters (0 for full FT and inference)
    method: str = "full"
    attn: int = 0  # FLOPs per attended (query, key) pair: 4 x layers x heads x head dim

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


def cached_query_flops(
    counter: FlopCounter, prompt_tokens: int, new_tokens: int, prefix_tokens: int
) -> float:
    """One request whose first `prefix_tokens` (a demo prefix shared by every query) are
    cached: its own prompt tokens and generated tokens run, each attending to the prefix.
    The prefix itself is a one-off cost, `counter.forward(prefix_tokens, 0)`."""
    own = prompt_tokens - prefix_tokens + new_tokens
    return counter.forward(own, 1 + new_tokens) + float(counter.attn) * own * prefix_tokens


def break_even(one_off: float, per_query: float, other_one_off: float, other: float) -> float:
    """Queries after which a build-once arm (one-off cost, cost per query) costs less than
    another (its one-off cost, its cost per query) for good: 0 at once, inf never. An arm
    that costs more per query never does, whatever it saves up front (test-time training:
    nothing one-off, a costlier query)."""
    saved = other - per_query
    extra = one_off - other_one_off
    if saved < 0 or (saved == 0 and extra > 0):
        return math.inf
    if extra <= 0:
        return 0.0
    return float(round(extra / saved))


def attention_flops(model: Any) -> int:
    """FLOPs per attended (query, key) pair of a decoder: 4 x layers x heads x head dim."""
    cfg = getattr(model.config, "text_config", model.config)
    heads = getattr(cfg, "num_attention_heads", 0) or 0
    head_dim = getattr(cfg, "head_dim", None) or (cfg.hidden_size // heads if heads else 0)
    return 4 * int(getattr(cfg, "num_hidden_layers", 0) or 0) * heads * int(head_dim)


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
    return FlopCounter(body, numel(head), lora, method, attention_flops(model))


def baseline_mode() -> bool:
    """True when FTLAB_BASELINE=1: evaluation and training without the lab's optimisations."""
    return os.environ.get("FTLAB_BASELINE") == "1"
