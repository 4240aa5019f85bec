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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PREFIX = "lm."  # SupervisedLoss keeps the model as `.lm` (the resume state's key prefix)


def accelerator(timeout_s: float) -> Any:
    """The study's Accelerator, its process group waiting `timeout_s` seconds in a collective
    (recipe `distributed.timeout_s`). The other processes wait in barriers while the main
    process alone saves checkpoints, uploads to W&B and deletes resume state: NCCL's default
    of 10 minutes ended runs that saved a 7B full fine-tune. Create it before any other
    accelerate state (the first one sets up the process group)."""
    import importlib.util
    import os
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    group: dict[str, Any] = {"timeout": timedelta(seconds=timeout_s)}
    if (
        os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
        and "LOCAL_RANK" in os.environ
        and not torch.cuda.is_available()
    ):
        # DeepSpeed on CPU processes (DS_ACCELERATOR=cpu): accelerate names no backend for
        # them and then counts 1 process in each (every one "main", batches sized for one),
        # while DeepSpeed partitions over all of them. Named, accelerate counts them right.
        group["backend"] = "gloo"
    # Imported before the process group exists: these modules take the default group as a
    # default argument (`group=group.WORLD`), evaluated at import. Imported later (DDP imports
    # the first through torch.distributed._shard, accelerate's unwrap_model the second), they
    # keep the group referenced for the life of the process: `destroy_process_group` cannot
    # free it, its gloo threads run on into interpreter shutdown, and now and then a process
    # of a finished launch aborted there ("terminate called without an active exception").
    # (One process makes no group: nothing to import then.)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        for module in ("torch.distributed.nn.functional", "deepspeed.comm.torch"):
            if importlib.util.find_spec(module.split(".")[0]) is not None:  # deepspeed: extra
                importlib.import_module(module)

    return Accelerator(kwargs_handlers=[InitProcessGroupKwargs(**group)])


def end_process_group() -> None:
    """The processes of an `accelerate launch` leave together, the process group destroyed
    (its gloo/NCCL threads joined): one that exits while another still writes the report,
    or with the group's threads alive, can abort in the C++ runtime at exit."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_over_processes(acc: Any, values: list[float]) -> list[float]:
    """Each value summed over all processes (float64: token counts stay exact)."""
    t = torch.tensor(values, dtype=torch.float64, device=acc.device)
    if acc.num_processes > 1:
        t = acc.reduce(t, reduction="sum")
    return t.tolist()


def global_norm(norm: Any) -> float:
    """The gradient norm `accelerator.clip_grad_norm_` returned, over all processes. Under
    FSDP it is a DTensor whose local value is this process's shard's part of the norm
    (`float()` of it read one shard's); its full tensor is the norm of the whole gradient."""
    from torch.distributed.tensor import DTensor

    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def from_main(acc: Any, decide: Callable[[], Any]) -> Any:
    """`decide()` run on the main process only, its value on every process. A decision
    read from the file system (is this cell trained, which checkpoint is the latest, are
    these predictions stored) is made once and broadcast: across nodes, each process's view
    of a shared file system (NFS attribute caching) may differ, and processes that disagree
    before a collective hang."""
    if acc.num_processes == 1:
        return decide()
    from accelerate.utils import broadcast_object_list

    box = [decide() if acc.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def no_split_modules(model: Any) -> list[str] | None:
    """The decoder-layer classes a transformers model must not split (`_no_split_modules`),
    looked up through a peft wrapper: FSDP's transformer auto-wrap makes each one a unit."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = getattr(base, "_no_split_modules", None)
    return list(names) if names else None


def full_state_dict(acc: Any, wrapped: Any) -> dict[str, torch.Tensor]:
    """The causal LM's full state dict (keys as `model.state_dict()`), on the main process;
    {} on the others. A collective under FSDP/ZeRO-3: every process must call it."""
    from torch.distributed.tensor import DTensor

    sd = acc.get_state_dict(wrapped) or {}  # ZeRO-3: None except on the main process
    # FSDP2 on CPU processes returns its DTensors as they are (on GPUs, gathered tensors):
    # gathered here, by every process (a collective), in the same order everywhere.
    sd = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in sd.items()}
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
    model: Any,
    state: dict[str, torch.Tensor],
    tok: Any,
    out: Path,
    overlay: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write `model` with the weights `state` (+ `overlay`: e.g. a best-dev snapshot) to `out`,
    like `save_pretrained` (an adapter only for a peft model). Main process only."""
    sd = {**state, **(overlay or {})}
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, state_dict=sd)
    tok.save_pretrained(out)


def saved_elements(out: Path) -> int:
    """Elements of every tensor in the safetensors files of a saved model or adapter
    (headers only: nothing is loaded); raises if a file cannot be read."""
    from safetensors import safe_open

    n = 0
    for f in sorted(out.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 - safe_open has no __iter__
                shape = st.get_slice(key).get_shape()
                n += int(torch.Size(shape).numel())
    return n


def incomplete(out: Path, expected: int) -> str | None:
    """Why `out` is not a complete, readable checkpoint with at least `expected` weights (the
    adapter's for LoRA, the model's for full fine-tuning; a tied LM head gathered from
    shards may be saved twice), or None: a training is marked done only once its
    checkpoint is complete."""
    try:
        got = saved_elements(out) if out.is_dir() else 0
    except Exception as e:  # noqa: BLE001 - any unreadable file means the same
        return f"the checkpoint saved to {out} cannot be read ({type(e).__name__}: {e})"
    if got < expected:
        return (
            f"the checkpoint saved to {out} holds {got} weights, not the {expected} the run "
            "trained: it is incomplete, and the training is not marked done"
        )
    return None
