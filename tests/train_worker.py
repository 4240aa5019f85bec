"""Run by tests/train/test_multiprocess_train.py as 2 ranks (tests/ranks.py: CPU processes, gloo): fine-tunes
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

import gc
import json
import os
import sys
import weakref
from functools import partial
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
        # the parameters handed to prepare: how many survive it (FSDP shards them; a full
        # copy kept alive by the caller is memory every process holds in vain)
        before = [
            weakref.ref(p) for o in objs if isinstance(o, torch.nn.Module) for p in o.parameters()
        ]
        seen["distributed_type"] = str(acc.distributed_type)  # what prepared the module
        out = prepare(*objs)
        seen["prepared"] = [o for o in out if isinstance(o, torch.nn.Module)]
        kept = {id(p) for m in seen["prepared"] for p in m.parameters()}
        gc.collect()
        seen["unsharded_alive"] = sum(1 for r in before if r() is not None and id(r()) not in kept)
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


def uninstrument(acc) -> None:  # noqa: ANN001
    """`acc`'s own methods back (instrument wraps each as an instance attribute)."""
    for name in ("gather", "reduce", "prepare", "clip_grad_norm_"):
        delattr(acc, name)


def force_fsdp(acc) -> None:  # noqa: ANN001
    """FSDP2 on these CPU processes. accelerate enables FSDP on accelerators only (CPU
    processes stay MULTI_CPU, i.e. DDP); past that gate its FSDP path is device-agnostic, and
    torch's fully_shard runs over gloo. So the gate alone is lifted: the plugin of
    accelerate_config_fsdp.yaml (FSDP2, one unit per decoder layer, sharded state dicts)."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        reshard_after_forward=True,
        state_dict_type="SHARDED_STATE_DICT",
        cpu_ram_efficient_loading=False,
    )
    from accelerate.state import PartialState

    acc.state.fsdp_plugin = plugin
    # both states: each later AcceleratorState() copies PartialState's fields over its own
    PartialState().distributed_type = acc.state.distributed_type = DistributedType.FSDP


def log_norm(norms: list[float], record: dict[str, float]) -> None:
    if "train/grad_norm" in record:
        norms.append(record["train/grad_norm"])


def main() -> None:
    torch.set_num_threads(1)
    cache, out_dir, methods = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(",")
    from worker_data import config, data

    from lab.study.models import resolve_model
    from train.finetune import finetune
    from train.sharded import accelerator, end_process_group

    path = resolve_model("tiny-random", cache).path
    train, dev = data()
    acc = accelerator(600.0)  # as a study makes it
    if os.environ.get("FTLAB_TEST_FSDP_ON_CPU") == "1":
        force_fsdp(acc)
    for method in methods:
        seen = instrument(acc)
        norms = seen["grad_norms"] = []
        res = finetune(
            path,
            train,
            "answer",
            method,
            config(method),
            0,
            out_dir / method,
            accelerator=acc,
            progress=False,
            dev_examples=dev,
            on_log=partial(log_norm, norms),
        )
        uninstrument(acc)  # (a second instrument would wrap this one's spies)
        seen.pop("prepared")  # the prepared (DDP/FSDP) module: freed with the run
        if acc.is_main_process:
            write(out_dir / method / "result.json", acc, res, seen)
    # The end of a launched run (lab/study/cli.py): no thread of the process group may
    # outlive it (into interpreter shutdown, where they could abort the process).
    rank = acc.process_index
    end_process_group()
    (out_dir / f"threads-after-end-{rank}.json").write_text(json.dumps(gloo_threads()))


def gloo_threads() -> list[str]:
    """This process's threads that gloo started (gloo_tcp_loop, pt_gloo_runloop)."""
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            names.append(Path(task, "comm").read_text().strip())
        except OSError:  # a thread that ended meanwhile
            pass
    return [n for n in names if "gloo" in n]


def write(out, acc, res, seen) -> None:  # noqa: ANN001
    report = {
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
