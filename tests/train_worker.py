"""Run by tests/train/test_multiprocess_train.py under torchrun (CPU processes, gloo): fine-tunes
the tiny model with train/finetune.py under DDP or FSDP (as the environment's accelerate
settings say) and writes what the test compares with one process (its checkpoints are in OUT/<method>).

The accelerator is instrumented, as a GPU run would check it:
- every tensor handed to a collective (gather, reduce) must be on `accelerator.device`
  (NCCL accepts CUDA tensors only; gloo on CPU accepts anything, so without this check a CPU
  test cannot see a misplaced tensor);
- every `clip_grad_norm_` call must get exactly the parameters of the prepared module (under
  FSDP they are new, sharded tensors: clipping the pre-`prepare` ones clips nothing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def same_device(a: torch.device, b: torch.device) -> bool:
    """`cpu` and `cpu:0` are one device (accelerate names the CPU `cpu:0`, tensors `cpu`)."""
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def instrument(acc) -> dict:  # noqa: ANN001
    """Wrap `acc`'s collectives, prepare and clip_grad_norm_; returns what they saw."""
    seen = {"collectives": 0, "off_device": [], "clips": 0, "clip_mismatch": 0, "prepared": []}

    def check(name, fn):  # noqa: ANN001, ANN202
        def wrapped(tensor, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            for t in tensor if isinstance(tensor, list | tuple) else [tensor]:
                seen["collectives"] += 1
                if isinstance(t, torch.Tensor) and not same_device(t.device, acc.device):
                    seen["off_device"].append(f"{name}: {t.device} != {acc.device}")
            return fn(tensor, *a, **k)

        return wrapped

    acc.gather = check("gather", acc.gather)
    acc.reduce = check("reduce", acc.reduce)
    prepare, clip = acc.prepare, acc.clip_grad_norm_

    def spy_prepare(*objs):  # noqa: ANN002, ANN202
        out = prepare(*objs)
        seen["prepared"] = [o for o in out if isinstance(o, torch.nn.Module)]
        return out

    def spy_clip(parameters, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        parameters = list(parameters)
        seen["clips"] += 1
        want = [p for m in seen["prepared"] for p in m.parameters()]
        if {id(p) for p in parameters} != {id(p) for p in want}:
            seen["clip_mismatch"] += 1
        return clip(parameters, *a, **k)

    acc.prepare, acc.clip_grad_norm_ = spy_prepare, spy_clip
    return seen


def main() -> None:
    torch.set_num_threads(1)
    cache, out_dir, methods = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(",")
    from accelerate import Accelerator
    from worker_data import config, data

    from lab.study.models import resolve_model
    from train.finetune import finetune

    path = resolve_model("tiny-random", cache).path
    train, dev = data()
    acc = Accelerator()
    for method in methods:
        seen = instrument(acc)
        res = finetune(
            path, train, "answer", method, config(method), 0, out_dir / method, accelerator=acc,
            progress=False, dev_examples=dev,
        )  # fmt: skip
        if acc.is_main_process:
            write(out_dir / method / "result.json", acc, res, seen)


def write(out, acc, res, seen) -> None:  # noqa: ANN001
    seen.pop("prepared")
    report = {
        "distributed_type": str(acc.distributed_type),
        "world": acc.num_processes,
        "losses": res.losses,
        "dev_losses": res.dev_losses,
        "best_step": res.best_step,
        "tokens": res.train_tokens,
        "flops": res.flops,
        **seen,
    }
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
