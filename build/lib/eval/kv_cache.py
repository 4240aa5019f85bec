"""KV-cache helpers for eval/lm.py: a shared prefix cache handed to many batches without
being written, and a cache that appends in place while decoding.

`expand(cache, n)`: the prefix cache repeated for a batch of n rows (n = 1: a shallow copy
whose layers get new tensors on update). The shared original is never written, so one
prefix cache serves every batch of its group.

`preallocate(cache, extra)`: the stock DynamicLayer concatenates the whole cache at every
decoding step (O(T^2) copying: with a k-shot prefix repeated over a batch that is most of
the decoding time on CPU). A preallocated layer writes each new token in place.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


def expand(cache: Any, n: int) -> Any:
    """The prefix cache for a batch of n (the original stays untouched); None stays None."""
    if cache is None:
        return None
    c = copy.copy(cache)
    c.layers = [copy.copy(layer) for layer in cache.layers]
    if n != 1:
        c.batch_repeat_interleave(n)  # builds new tensors; never writes the shared ones
    return c


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer that appends into preallocated storage; what `update` returns is the
    same tensor the stock layer would return (the keys and values so far)."""

    def reserve(self, extra: int) -> None:
        b, h, t, d = self.keys.shape
        self.length = t
        self.kbuf = self.keys.new_empty((b, h, t + extra, d))
        self.vbuf = self.values.new_empty((b, h, t + extra, d))
        self.kbuf[:, :, :t] = self.keys
        self.vbuf[:, :, :t] = self.values

    def update(self, key_states, value_states, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        end = self.length + key_states.shape[-2]
        if end > self.kbuf.shape[-2]:  # never in LM.generate; kept correct anyway
            self.reserve(max(end - self.length, self.length))
        self.kbuf[:, :, self.length : end] = key_states
        self.vbuf[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.kbuf[:, :, :end], self.vbuf[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
        self.keys, self.values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]


def preallocate(cache: Any, extra: int) -> None:
    """Give every plain dynamic layer room for `extra` more tokens (sliding-window and
    other special layers keep their own update)."""
    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            layer.__class__ = PreallocatedLayer
            layer.reserve(extra)
