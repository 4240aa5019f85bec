"""`python -m lab ARGS` as `accelerate launch` starts it, with test-only faults injected by the
environment (tests/study/test_multiprocess_study.py):

- FTLAB_TEST_HIDE: comma-separated fnmatch patterns; on rank 1 only, paths matching one do not
  exist (is_file, is_dir, exists: False): the stale view of a shared file system that one
  node's NFS cache can give.
- FTLAB_TEST_MAIN_DELAY_S: the main process sleeps that long in `Tracker.log_cell` (its W&B
  work after a cell, which the other processes wait for at a barrier).

At the end each process prints how accelerate set it up (`report_setup`), so a test can check
that the launch it meant (DeepSpeed, DDP over 2 processes) is the one that ran.

Under DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu, the ZeRO-3 tests) the processes do not
build DeepSpeed's shared-memory all-reduce kernel: see `without_shm_kernel`.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import pathlib
import sys
import time


def hide(patterns: list[str]) -> None:
    for name in ("is_file", "is_dir", "exists"):
        real = getattr(pathlib.Path, name)

        def hidden(self, *a, _real=real, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            if any(fnmatch.fnmatch(str(self), p) for p in patterns):
                return False
            return _real(self, *a, **k)

        setattr(pathlib.Path, name, hidden)


def delay_main(seconds: float) -> None:
    from lab.report.tracking import Tracker

    real = Tracker.log_cell

    def slow(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        time.sleep(seconds)
        return real(self, *a, **k)

    Tracker.log_cell = slow


def without_shm_kernel() -> None:
    """DeepSpeed's CPU accelerator compiles a C++ all-reduce kernel over shared memory
    (`deepspeed_shm_comm`) the first time a process group starts: about 65 s of CPU, done again
    whenever the virtual environment's path changes (every fresh clone, so every CI run). It is
    a CPU-only speed-up (GPU runs reduce with NCCL) and not the lab's code; without it
    DeepSpeed reduces over gloo, as the DDP and FSDP tests do."""
    # (importlib: the name `deepspeed.comm.torch` is torch itself, which deepspeed.comm imports)
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def report_setup() -> None:
    """`[launched] process I of N: TYPE` (TYPE: accelerate's DistributedType, e.g. DEEPSPEED,
    MULTI_CPU), when the run set up an Accelerator."""
    from accelerate.state import AcceleratorState, is_initialized

    if is_initialized():
        state = AcceleratorState()
        print(
            f"[launched] process {state.process_index} of {state.num_processes}: "
            f"{state.distributed_type.value}",
            flush=True,
        )


if __name__ == "__main__":
    if os.environ.get("DS_ACCELERATOR") == "cpu":
        without_shm_kernel()
    if os.environ.get("RANK") == "1" and os.environ.get("FTLAB_TEST_HIDE"):
        hide(os.environ["FTLAB_TEST_HIDE"].split(","))
    if os.environ.get("FTLAB_TEST_MAIN_DELAY_S"):
        delay_main(float(os.environ["FTLAB_TEST_MAIN_DELAY_S"]))
    from lab.study.cli import main

    code = main(sys.argv[1:])
    report_setup()
    sys.exit(code)
