"""Explicit 4D attention masks: which models take them, and in which form.

Evaluation scores several continuations of one context in a single row (eval/tree.py), and
training packs several examples into one row (train/batching.py); both replace the model's
own causal mask with an explicit (rows, 1, queries, keys) mask. That is exact only where
that mask is all the model's attention needs (full attention in every layer, sdpa or eager
attention): `takes_4d_mask` says so, `attention_mask` gives the mask in the model's form.
"""

from __future__ import annotations

from typing import Any

import torch


def takes_4d_mask(model: Any) -> bool:
    """True when an explicit 4D mask is all the model's attention needs."""
    cfg = getattr(model.config, "text_config", model.config)
    impl = getattr(cfg, "_attn_implementation", None) or model.config._attn_implementation
    if impl not in ("sdpa", "eager"):
        return False
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types is not None:
        return all(t == "full_attention" for t in layer_types)
    return getattr(cfg, "sliding_window", None) is None or not getattr(
        cfg, "use_sliding_window", True
    )


def attention_mask(allowed: torch.Tensor, model: Any, dtype: torch.dtype) -> torch.Tensor:
    """The 4D mask in the form the model's attention takes (bool for sdpa; additive for eager)."""
    cfg = getattr(model.config, "text_config", model.config)
    impl = getattr(cfg, "_attn_implementation", None) or model.config._attn_implementation
    if impl == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    return allowed
