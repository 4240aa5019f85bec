"""bf16 linear layers on CPU read their weights pre-packed for oneDNN while evaluating.

A bf16 `F.linear` on CPU runs oneDNN's matmul on the plain (out, in) weight, which it
re-lays out into its blocked format on every call: for the few rows of a decoding step
(batch 8) that re-layout costs more than the product. The 210 body matmuls of a SmolLM2
decoding step at batch 8 took 24.0 ms with plain weights and 14.1 ms with weights packed
once (`torch.ops.mkldnn._reorder_linear_weight`, the kernel inductor's CPU freezing uses),
when each weight is read from memory as in a real step; at batch 32, 35.1 vs 30.5 ms. The
outputs are bitwise equal (the same oneDNN kernel; tested).

`pack_linears(model)` switches every bf16 `nn.Linear` of a CPU model to `PackedLinear` (a
subclass: isinstance checks, state dicts, deep copies and peft's adapters see a Linear). It
uses a packed copy only without autograd (evaluation), for bf16 inputs, and while the weight
is the one packed: the same tensor, not modified since (`_version`; an optimizer step or a
merged adapter writes in place). Anything else runs the stock `F.linear`. The packed copies
live beside the model (one more copy of the bf16 linear weights, made on first use).

Only where the CPU computes bf16 natively (AVX-512 BF16 or AMX, lab.core.precision): there
the stock path is the same oneDNN kernel, so packing changes speed, not results.

`contiguous_head_input(model)`: the LM head's input made contiguous, so its product is one
matrix product (below).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab.core.precision import cpu_has_fast_bf16

_PACKED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def available() -> bool:
    """Whether this torch and CPU run bf16 linears on pre-packed oneDNN weights."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and cpu_has_fast_bf16()
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_reorder_linear_weight")
    )


class PackedLinear(nn.Linear):
    """An nn.Linear that evaluates bf16 inputs on a packed copy of its weight (see above)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if torch.is_grad_enabled() or x.dtype != torch.bfloat16 or w.dtype != torch.bfloat16:
            return F.linear(x, w, self.bias)
        key = (w.data_ptr(), w._version, tuple(w.shape))
        got = _PACKED.get(self)
        if got is None or got[0] != key:
            got = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), 8))
            _PACKED[self] = got
        return torch.ops.mkldnn._linear_pointwise(x, got[1], self.bias, "none", [], "")


def pack_linears(model: Any) -> int:
    """Switch `model`'s bf16 CPU linear layers to PackedLinear (once); how many were."""
    if not available():
        return 0
    n = 0
    for m in model.modules():
        if (
            type(m) is nn.Linear
            and m.weight.dtype == torch.bfloat16
            and m.weight.device.type == "cpu"
        ):
            m.__class__ = PackedLinear
            n += 1
    return n


@contextmanager
def unpacked(model: Any) -> Iterator[None]:
    """`model`'s linear layers run stock `F.linear` inside the block (a reference tool
    sharing the model, in the benches, is timed as it runs)."""
    switched = [m for m in model.modules() if type(m) is PackedLinear]
    for m in switched:
        m.__class__ = nn.Linear
    try:
        yield
    finally:
        for m in switched:
            m.__class__ = PackedLinear


def _contiguous_input(module: Any, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def contiguous_head_input(model: Any) -> None:
    """Give the LM head a contiguous input (once per model). The model hands it a slice of
    the hidden states (`logits_to_keep`: the last position of each row), and torch.matmul
    multiplies a non-contiguous (rows, 1, d) input by a weight that needs no gradient (a
    frozen base under a LoRA adapter, a merged adapter) as a batched product against the
    weight expanded once per row: the whole vocabulary matrix copied per row, 1.6 s instead
    of 0.01 s for 32 rows of SmolLM2 on this CPU. Contiguous, it is one matrix product, the
    kernel the base model's own head already uses (same values at bf16; at fp32 within
    float reassociation, e.g. 5e-5 on a logit)."""
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, "_lab_contiguous_input", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._lab_contiguous_input = True
