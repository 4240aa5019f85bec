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

Inside `shared_prefix(cache)` (a cache from eval/kv_cache.py's `share`), a layer's attention
is split in two (`split_sdpa`): every row's queries attend to the shared prefix's keys in
one call (the rows folded into the query axis, the prefix read once), and each row attends
to its own keys under the mask's own columns; the fused kernel of the device (CPU flash
attention, CUDA memory-efficient attention: eval/lse_attention.py) returns each part's
log-sum-exp, and the two are merged as one softmax over all the keys would weigh them:
out = (e^lse_p * out_p + e^lse_o * out_o) / (e^lse_p + e^lse_o), in fp32. The same numbers as
one call over the whole row up to float reassociation (tested).

Inside `eval.invariant.invariant_forward()` (LM(invariant=True)), every layer's attention,
split or not, is eval/invariant.py's `attend` instead: the same softmax, summed in an order
that does not depend on the batch, its padding or where the shared prefix ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from eval import invariant, lse_attention
from eval.kv_cache import SharedPrefixLayer

NAME = "lab_folded_sdpa"
_SHARED: ContextVar[tuple[Any, dict]] = ContextVar("lab_shared_prefix", default=(None, {}))


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
    cache, memo = _SHARED.get()
    if invariant.active():
        return _invariant(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if cache is not None:
        layer = cache.layers[module.layer_idx]
        if isinstance(layer, SharedPrefixLayer):
            if key is not layer.keys or value is not layer.values or dropout:
                raise RuntimeError("a shared-prefix cache needs the keys its layer returned")
            return split_sdpa(query, layer, attention_mask, scaling, memo), None
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
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    mask = attention_mask
    if mask is not None:
        mask = mask[:, :, :, : key.shape[-2]]
        mask = mask.expand(mask.shape[0], 1, q, mask.shape[-1]).repeat(1, 1, g, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query.reshape(b, kv_heads, g * q, d), key, value, attn_mask=mask, scale=scaling
    )
    return out.reshape(b, h, q, d).transpose(1, 2).contiguous(), None


def _invariant(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    dropout: float,
    scaling: float | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """eval/invariant.py's attention, over the shared prefix's layer where there is one."""
    if dropout or kwargs.get("softcap") or kwargs.get("s_aux") is not None:
        raise RuntimeError("batch-invariant attention has no dropout, softcapping or sinks")
    cache, _ = _SHARED.get()
    prefix = None
    if cache is not None:
        layer = cache.layers[module.layer_idx]
        if isinstance(layer, SharedPrefixLayer):
            if key is not layer.keys or value is not layer.values:
                raise RuntimeError("a shared-prefix cache needs the keys its layer returned")
            prefix = (layer.prefix_keys, layer.prefix_values)
    return invariant.attend(query, key, value, mask, scaling, prefix), None


Masks = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


def _split_masks(
    mask: torch.Tensor | None, n: int, g: int, q: int, p: int, t: int, like: torch.Tensor
) -> Masks:
    """(prefix mask, prefix queries that see no key, own mask, own queries that see no key)
    in the layout of `split_sdpa`'s two calls: additive masks of `like`'s dtype (what CPU flash
    attention takes), None where every key is visible. `mask`: bool (rows, 1, q, prefix +
    own) or None (every key visible, except own keys after a query: causal, aligned at the
    end). The same for every layer of a forward: `split_sdpa` computes it once per forward."""

    dtype, device = like.dtype, like.device

    def additive(allowed: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros(allowed.shape, dtype=dtype, device=device)
        return zeros.masked_fill(~allowed, float("-inf"))

    if mask is None:
        if q == 1:
            return None, None, None, None
        see_o = torch.ones(q, t, dtype=torch.bool, device=device).tril(t - q).expand(n, 1, q, t)
        return None, None, additive(see_o.repeat(1, 1, g, 1)), None
    see_p = mask[:, :, :, :p].expand(n, 1, q, p)
    see_o = mask[:, :, :, p : p + t].expand(n, 1, q, t).repeat(1, 1, g, 1)  # folded queries
    m1 = none_p = None
    if not bool(see_p.all()):  # one query axis of rows x g x q for the prefix call
        see_p = see_p.expand(n, g, q, p).reshape(1, 1, n * g * q, p)
        m1, none_p = additive(see_p), ~see_p.any(-1)
    return m1, none_p, additive(see_o), ~see_o.any(-1)


def _part(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any, none: Any, scale: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, log-sum-exp in fp32) of one attention call (eval/lse_attention.py's kernel
    for the device); where a query sees no key: output 0 and log-sum-exp -inf."""
    out, lse = lse_attention.attend(q, k, v, mask, scale)
    if none is None:
        return out, lse
    return out.masked_fill(none[..., None], 0.0), lse.masked_fill(none, float("-inf"))


def split_sdpa(
    query: torch.Tensor,
    layer: SharedPrefixLayer,
    mask: torch.Tensor | None,
    scaling: Any,
    memo: dict | None = None,
) -> torch.Tensor:
    """Attention of `query` (rows, heads, q, d) to the shared prefix plus each row's own keys
    (`layer.keys`, already holding this forward's tokens), as (rows, q, heads, d). `mask`:
    as `_split_masks` takes it; `memo` (one per forward) keeps its split forms for the next
    layers."""
    n, h, q, d = query.shape
    pk, pv, ok, ov = layer.prefix_keys, layer.prefix_values, layer.keys, layer.values
    kv, p, t = pk.shape[1], pk.shape[-2], ok.shape[-2]
    g = h // kv
    memo = {} if memo is None else memo
    key = (id(mask), n, q, t)
    if key not in memo:  # the mask object is kept with it, so its id stays its own
        memo[key] = (mask, _split_masks(mask, n, g, q, p, t, query))
    m1, none_p, m2, none_o = memo[key][1]
    qf = query.reshape(n, kv, g * q, d)  # a group's query heads along the query axis
    # The prefix, once for every row: queries (1, kv, rows * g * q, d).
    q1 = qf.transpose(0, 1).reshape(1, kv, n * g * q, d)
    out_p, lse_p = _part(q1, pk, pv, m1, none_p, scaling)
    out_p = out_p.reshape(kv, n, g * q, d).transpose(0, 1)
    lse_p = lse_p.reshape(kv, n, g * q).transpose(0, 1)
    # Each row's own keys.
    out_o, lse_o = _part(qf, ok, ov, m2, none_o, scaling)
    lse = torch.logaddexp(lse_p, lse_o)
    w_p = torch.exp(lse_p - lse).nan_to_num(0.0)[..., None]
    w_o = torch.exp(lse_o - lse).nan_to_num(0.0)[..., None]
    out = (out_p.float() * w_p + out_o.float() * w_o).to(query.dtype)
    return out.reshape(n, h, q, d).transpose(1, 2).contiguous()


@contextmanager
def shared_prefix(cache: Any) -> Iterator[None]:
    """Attend through `cache`'s shared prefix layers (eval/kv_cache.py `share`) in the block
    (one forward: the masks' split forms are kept for its layers); None: a no-op."""
    token = _SHARED.set((cache, {}))
    try:
        yield
    finally:
        _SHARED.reset(token)


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
