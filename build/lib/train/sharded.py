"""What the training loop needs to be correct under DDP, FSDP and DeepSpeed ZeRO-3, not
only in one process: device-placed collectives, the model's full state dict gathered on the
main process (for saving and best-dev snapshots), and the FSDP auto-wrap unit.

- Collectives: NCCL gathers and reduces CUDA tensors only; every tensor handed to one here
  is created on `accelerator.device` (gloo on CPU accepts either, which is why a CPU test
  alone never caught a CPU tensor).
- State dicts: under FSDP (and ZeRO-3) each process holds a shard of every parameter;
  `accelerator.get_state_dict` gathers the full tensors (on the CPU, on the main process
  only). Every process must call it; only the main process gets the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

PREFIX = "lm."  # SupervisedLoss keeps the causal LM as `.lm`


def sum_over_processes(acc: Any, values: list[float]) -> list[float]:
    """Each value summed over all processes (float64: token counts stay exact)."""
    t = torch.tensor(values, dtype=torch.float64, device=acc.device)
    if acc.num_processes > 1:
        t = acc.reduce(t, reduction="sum")
    return t.tolist()


def no_split_modules(lm: Any) -> list[str] | None:
    """The decoder-layer classes a transformers model must not split (`_no_split_modules`),
    looked up through a peft wrapper: FSDP's transformer auto-wrap makes each one a unit."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    names = getattr(base, "_no_split_modules", None)
    return list(names) if names else None


def full_state_dict(acc: Any, wrapped: Any) -> dict[str, torch.Tensor]:
    """The causal LM's full state dict (keys as `lm.state_dict()`), on the main process;
    {} on the others. A collective under FSDP/ZeRO-3: every process must call it."""
    sd = acc.get_state_dict(wrapped)
    if not acc.is_main_process:
        return {}
    return {k.removeprefix(PREFIX): v for k, v in sd.items() if k.startswith(PREFIX)}


def snapshot(acc: Any, wrapped: Any, trainable: set[str] | None) -> dict[str, torch.Tensor] | None:
    """A CPU copy of the weights that training changes (all of them for full fine-tuning,
    `trainable` names for LoRA), gathered in full on the main process; None elsewhere."""
    sd = full_state_dict(acc, wrapped)
    if not acc.is_main_process:
        return None
    keep = sd if trainable is None else {k: v for k, v in sd.items() if k in trainable}
    return {k: v.detach().to("cpu", copy=True) for k, v in keep.items()}


def save(
    lm: Any,
    state: dict[str, torch.Tensor],
    tok: Any,
    out: Path,
    overlay: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write `lm` with the weights `state` (+ `overlay`: e.g. a best-dev snapshot) to `out`,
    like `save_pretrained` (an adapter only for a peft model). Main process only."""
    sd = {**state, **(overlay or {})}
    out.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(out, state_dict=sd)
    tok.save_pretrained(out)
