"""Attention that also returns each query's log-sum-exp, on the devices that have a kernel
for it: what eval/attention.py's `split_sdpa` needs to merge a shared prefix's attention with
each row's own (one softmax computed in two parts).

- CPU: torch's flash attention for CPU returns (output, log-sum-exp) and takes an additive mask.
- CUDA: the memory-efficient kernel (`_scaled_dot_product_efficient_attention` with
  `compute_log_sumexp`) does the same. It reads the additive bias in rows aligned to
  `ALIGN` elements and pads its log-sum-exp to a multiple of 32 queries, so the bias is padded
  then sliced (as torch's own sdpa does before that kernel) and the log-sum-exp cut to the
  queries. Not yet run on a GPU here: bench/gpu_check.py's `split` phase compares it with
  `reference` on the device (README "GPU check").
- Elsewhere: `reference`, the same numbers by the plain formula in fp32 (also the yardstick
  of the tests and of the GPU check).

A query that sees no key: `reference` gives output 0 and log-sum-exp -inf; what the kernels
give there differs (CPU flash attention: output 0, log-sum-exp 0), so the caller sets it
(eval/attention.py `_part`).
"""

from __future__ import annotations

import torch

_FLASH_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
ALIGN = 16  # elements: the CUDA memory-efficient kernel's alignment of a bias row


def supported(device: torch.device) -> bool:
    """Whether `attend` has a fused kernel on `device` (else a shared prefix is repeated)."""
    return device.type in ("cpu", "cuda")


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    scale: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output (b, h, q, d) in q's dtype, log-sum-exp (b, h, q) in fp32) of softmax attention
    of q to k, v under the additive `bias` (broadcast to (b, h, q, k); None: every key seen)."""
    if q.device.type == "cpu":
        out, lse = _FLASH_CPU(q, k, v, 0.0, False, attn_mask=bias, scale=scale)[:2]
        return out, lse
    if q.device.type == "cuda":
        return _cuda(q, k, v, bias, scale)
    out, lse = reference(q, k, v, bias, scale)
    return out.to(q.dtype), lse


def aligned(bias: torch.Tensor) -> torch.Tensor:
    """The same values in storage whose last-dimension rows start at multiples of ALIGN
    elements (padded, then sliced back to the keys): what the CUDA kernel reads."""
    n = bias.shape[-1]
    return torch.nn.functional.pad(bias, (0, -n % ALIGN))[..., :n]


def _cuda(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    scale: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if bias is not None:
        bias = aligned(bias.to(q.dtype)).expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, bias, True, 0.0, False, scale=scale
    )[:2]
    return out, lse[..., : q.shape[2]].float()


def reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    scale: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain formula in fp32: (output, log-sum-exp); output 0 where a query sees no key."""
    s = scale if scale is not None else q.shape[-1] ** -0.5
    scores = (q.float() @ k.float().transpose(-1, -2)) * s
    if bias is not None:
        scores = scores + bias.float()
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse[..., None]).nan_to_num(0.0)
    return weights @ v.float(), lse
