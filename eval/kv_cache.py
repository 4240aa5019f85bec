"""KV-cache helpers for eval/lm.py: a shared prefix cache handed to many batches without
being written, and a cache that appends in place while decoding.

`share(cache, extra)`: a batch's cache that keeps the prefix's keys and values once, shared
by every row, and gives each row storage for its own tokens only (`SharedPrefixLayer`);
eval/attention.py attends to the prefix once for all rows and merges it with each row's own
attention (the same softmax, computed in two parts). Without it, every row of a batch read
its own copy of the prefix at every decoding step: for an 8-shot CoT prefix (~470 tokens) at
batch 32, attention was 42% of a generation's time on this CPU. Where the attention cannot
be split so (not sdpa, no kernel on the device, special layers), `share` returns None and the caller uses:

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

from eval import lse_attention


class _AppendingLayer(DynamicLayer):
    """Keys and values written in place into preallocated storage (`kbuf`, `vbuf`: rows,
    heads, capacity, dim), of which the first `length` positions are filled."""

    kbuf: torch.Tensor | None = None
    vbuf: torch.Tensor | None = None

    def _write(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple:
        end = self.length + key_states.shape[-2]
        self.kbuf[:, :, self.length : end] = key_states
        self.vbuf[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.kbuf[:, :, :end], self.vbuf[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.kbuf is not None:
            self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
            self.keys, self.values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]


class SharedPrefixLayer(_AppendingLayer):
    """A layer whose prefix keys and values (1, kv heads, P, d) are shared by every row and
    never written; `update` stores each row's own tokens after it (in place, preallocated)
    and returns those own keys and values only. The sequence length it reports (for masks
    and positions) counts the prefix: P + own tokens."""

    def __init__(self, prefix: DynamicLayer, extra: int) -> None:
        super().__init__()
        self.prefix_keys, self.prefix_values = prefix.keys, prefix.values
        self.prefix_length = prefix.keys.shape[-2]
        self.extra = extra
        self.length = 0
        self.dtype, self.device = prefix.keys.dtype, prefix.keys.device
        self.is_initialized = True
        self.keys = self.values = None

    def get_seq_length(self) -> int:
        return self.prefix_length + self.length

    def _reserve(self, rows: int, size: int) -> None:
        old_k, old_v = self.kbuf, self.vbuf
        h, d = self.prefix_keys.shape[1], self.prefix_keys.shape[3]
        self.kbuf = self.prefix_keys.new_empty((rows, h, size, d))
        self.vbuf = self.prefix_values.new_empty((rows, h, size, d))
        if old_k is not None and self.length:
            self.kbuf[:, :, : self.length] = old_k[:, :, : self.length]
            self.vbuf[:, :, : self.length] = old_v[:, :, : self.length]

    def update(self, key_states, value_states, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        end = self.length + key_states.shape[-2]
        if self.kbuf is None:
            self._reserve(key_states.shape[0], end + self.extra)
        elif end > self.kbuf.shape[-2]:  # never in LM.generate; kept correct anyway
            self._reserve(key_states.shape[0], 2 * end)
        return self._write(key_states, value_states)


def share(cache: Any, extra: int) -> Any:
    """A batch's cache over the shared prefix `cache` (the original stays untouched), with
    room for `extra` tokens per row after its first forward; None where some layer is not a
    plain dynamic one (sliding windows and other special layers), or the cache is on a device
    without a log-sum-exp attention kernel (eval/lse_attention.py: CPU and CUDA have one)."""
    if cache is None:
        return None
    layers = getattr(cache, "layers", None)
    if not layers or any(
        type(layer) is not DynamicLayer
        or not layer.is_initialized
        or layer.keys.shape[0] != 1
        or not lse_attention.supported(layer.keys.device)
        for layer in layers
    ):
        return None
    c = copy.copy(cache)
    c.layers = [SharedPrefixLayer(layer, extra) for layer in layers]
    return c


def expand(cache: Any, n: int) -> Any:
    """The prefix cache for a batch of n (the original stays untouched); None stays None."""
    if cache is None:
        return None
    c = copy.copy(cache)
    c.layers = [copy.copy(layer) for layer in cache.layers]
    if n != 1:
        c.batch_repeat_interleave(n)  # builds new tensors; never writes the shared ones
    return c


class PreallocatedLayer(_AppendingLayer):
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
        if self.length + key_states.shape[-2] > self.kbuf.shape[-2]:  # never in LM.generate
            self.reserve(max(key_states.shape[-2], self.length))
        return self._write(key_states, value_states)


def preallocate(cache: Any, extra: int) -> None:
    """Give every plain dynamic layer room for `extra` more tokens (sliding-window and
    other special layers keep their own update)."""
    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            layer.__class__ = PreallocatedLayer
            layer.reserve(extra)
