"""Test worker scripts (tests/*_worker.py) run as CPU processes under `torch.distributed.run`
(gloo: accelerate's PartialState sets it up with ACCELERATE_USE_CPU), each torch on one
thread; one process runs the script directly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free local port: other launches may be running on this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(
    script: str, *args: object, procs: int = 2, timeout: float = 300, **env_extra: str
) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run` of tests/<script> with `args` over `procs`
    processes (`env_extra`: more environment); fails the test (with the end of stderr)
    unless every process exits 0."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
        **env_extra,
    }
    cmd = [sys.executable]
    if procs > 1:
        cmd += ["-m", "torch.distributed.run", "--nproc_per_node", str(procs)]
        cmd += ["--master_port", str(free_port())]
    cmd += [str(ROOT / "tests" / script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
