"""Mid-training resume: periodic, atomic training checkpoints that a rerun continues from.

A checkpoint is `RESUME_DIR/step-NNNNNN/`, written by `accelerate.save_state` (the trainable
weights, optimizer, LR scheduler, every process's RNG states, the accelerator's micro-step)
plus `trainer_state_<rank>.json` (losses, ID-dev losses, FLOP/token counters, the best-dev
step) and `best.safetensors` (the best-dev trainable weights so far, gathered in full by the
main process: under FSDP `save_state` writes each process's shards, with
`fsdp_state_dict_type: SHARDED_STATE_DICT`). It is built in a
temporary directory, fsynced, and renamed into place by the main process, so a checkpoint
directory is either complete or absent; older ones are then deleted. The data position is
the step: the loader is a fixed precomputed order, so a resumed run skips
`step x grad_accum` micro-batches (`accelerator.skip_first_batches`).

For LoRA only the trainable (adapter) weights are stored; the frozen base is reloaded from
the base checkpoint. A checkpoint written for another training setup (method, format, seed,
steps, data) is ignored and deleted, never half-used.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from lab.core.io import atomic_write_json, fsync_tree
from train.sharded import from_main, sum_over_processes
from train.zero3 import load_state_kwargs

PREFIX = "step-"


def latest(resume_dir: Path) -> Path | None:
    """The newest complete checkpoint directory, or None."""
    if not resume_dir.is_dir():
        return None
    done = sorted(p for p in resume_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX))
    return done[-1] if done else None


def clear(resume_dir: Path) -> None:
    shutil.rmtree(resume_dir, ignore_errors=True)


class TrainCheckpointer:
    """Saves and restores the full training state of one `finetune` call."""

    def __init__(self, acc: Accelerator, resume_dir: Path, wrapped: Any, identity: dict[str, Any]):
        self.acc = acc
        self.dir = Path(resume_dir)
        self.identity = identity  # what must match for a checkpoint to be resumable
        trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
        self.full = all(p.requires_grad for p in wrapped.parameters())

        def keep_trainable(models: list[Any], weights: list[dict[str, Any]], _out: str) -> None:
            if not self.full:  # LoRA: only the adapter; the frozen base comes from disk
                for i, w in enumerate(weights):
                    weights[i] = {k: v for k, v in w.items() if k in trainable}

        self._hook = acc.register_save_state_pre_hook(keep_trainable)

    def close(self) -> None:
        self._hook.remove()

    def save(self, step: int, state: dict[str, Any], best: dict[str, torch.Tensor] | None) -> None:
        acc = self.acc
        tmp = self.dir / f".tmp-{PREFIX}{step:06d}"
        final = self.dir / f"{PREFIX}{step:06d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        rank = acc.process_index
        with open(tmp / f"trainer_state_{rank}.json", "w", encoding="utf-8") as f:
            json.dump({"identity": self.identity, "step": step, **state}, f)
        if acc.is_main_process and best is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in best.items()}, str(tmp / "best.safetensors"))
        acc.wait_for_everyone()
        if acc.is_main_process:
            fsync_tree(tmp)
            os.replace(tmp, final)
            fsync_tree(self.dir, files=False)
            for old in self.dir.iterdir():
                if old != final and old.name.startswith(PREFIX):
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def load(self) -> tuple[int, dict[str, Any], dict[str, torch.Tensor] | None] | None:
        """(step, trainer state, best weights) of the latest matching checkpoint, with the
        model, optimizer, scheduler and RNG states restored; None to start from scratch."""
        acc = self.acc
        # Decided on the main process, for all: processes that saw different checkpoints
        # (a shared file system's caches) would load different states or hang.
        ckpt = from_main(acc, lambda: latest(self.dir))
        if ckpt is None:
            return None
        state_file = ckpt / f"trainer_state_{acc.process_index}.json"
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        mine = state.get("identity") == self.identity
        if sum_over_processes(acc, [float(not mine)])[0] > 0:  # any process: all start over
            # Another setup (or another process count) wrote it: not resumable. Start over.
            self.acc.wait_for_everyone()
            if self.acc.is_main_process:
                clear(self.dir)
            self.acc.wait_for_everyone()
            return None
        # LoRA: the state holds the adapter only (the frozen base comes from the model)
        self.acc.load_state(str(ckpt), **load_state_kwargs(self.acc))
        best = None  # the best-dev snapshot lives on the main process, on the CPU
        if self.acc.is_main_process and (ckpt / "best.safetensors").is_file():
            from safetensors.torch import load_file

            best = load_file(str(ckpt / "best.safetensors"), device="cpu")
        step = int(state.pop("step"))
        state.pop("identity")
        return step, state, best


def write_result(path: Path, result: dict[str, Any]) -> None:
    atomic_write_json(path, result)
