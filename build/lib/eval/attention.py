"""Grouped-query attention without copies of the keys and values, for eval/lm.py's forwards.

With a padding or tree mask, transformers' sdpa path repeats every key/value head for each
query head of its group (`repeat_kv`: a copy of the whole KV cache per layer and forward; on
CPU, torch's own `enable_gqa` is no faster in bf16). `folded_sdpa` instead folds a group's
query heads into the query-length axis: queries (b, kv_heads * g, q, d) are viewed as
(b, kv_heads, g * q, d) and the mask repeated g times along the query axis, so every query
attends to exactly the keys it would, with the same scores, and the keys and values are read
in place. Decoding steps (q = 1) and masked scoring batches gain most.

`folded(model)` switches a model that uses "sdpa" to it for the duration of a forward (the
model is shared, e.g. with a reference tool in the benches, so it is not switched for good).
Anything else (no grouping, no mask with q > 1, dropout, softcapping, sinks) takes the stock
sdpa function unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "lab_folded_sdpa"


def folded_sdpa(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    b, h, q, d = query.shape
    kv_heads = key.shape[1]
    g = h // kv_heads
    plain = (
        g == 1
        or h != g * kv_heads
        or (attention_mask is None and q > 1)
        or dropout
        or kwargs.get("softcap")
        or kwargs.get("s_aux") is not None
        or value.shape[-1] != d
    )
    if plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
            is_causal=is_causal, **kwargs,
        )  # fmt: skip
    mask = attention_mask
    if mask is not None:
        mask = mask[:, :, :, : key.shape[-2]]
        mask = mask.expand(mask.shape[0], 1, q, mask.shape[-1]).repeat(1, 1, g, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query.reshape(b, kv_heads, g * q, d), key, value, attn_mask=mask, scale=scaling
    )
    return out.reshape(b, h, q, d).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, folded_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)


@contextmanager
def folded(model: Any) -> Iterator[None]:
    """Run `model`'s sdpa attention as `folded_sdpa` inside the block."""
    cfg = model.config
    if cfg._attn_implementation != "sdpa":
        yield
        return
    cfg._attn_implementation = NAME
    try:
        yield
    finally:
        cfg._attn_implementation = "sdpa"
