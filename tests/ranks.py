"""Test worker scripts (tests/*_worker.py) run as the CPU processes of a distributed run: each
rank forked (tests/forked.py) with the environment torchrun gives its workers (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT, ...; accelerate's PartialState then sets up gloo,
with ACCELERATE_USE_CPU), each torch on one thread; one process runs the script alone. Or,
with `fresh`, started by torchrun itself.
A study launched by `accelerate launch` is forked the same way by `accelerate_ranks`, with the
environment accelerate's own launch command computes. The launchers themselves (`accelerate
launch`, torchrun) are run for real by one test each (tests/study/test_multiprocess_study.py:
ZeRO-3; tests/study/test_reliability.py: DDP)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

from forked import Forked, Group, run_all

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free local port: other launches may be running on this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, procs: int, port: int) -> dict[str, str]:
    """What torch.distributed.run sets for worker `rank` of `procs` on one node."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "GROUP_RANK": "0",
        "ROLE_RANK": str(rank),
        "ROLE_NAME": "default",
        "LOCAL_WORLD_SIZE": str(procs),
        "WORLD_SIZE": str(procs),
        "GROUP_WORLD_SIZE": "1",
        "ROLE_WORLD_SIZE": str(procs),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "0",
        "TORCHELASTIC_RUN_ID": "none",
        "TORCHELASTIC_USE_AGENT_STORE": "False",
    }


def run_ranks(
    script: str,
    *args: object,
    procs: int = 2,
    timeout: float = 300,
    fresh: bool = False,
    **env_extra: str,
) -> list[str]:
    """tests/<script> with `args` as the `procs` ranks of one run (`env_extra`: more
    environment); fails the test (with the end of each rank's output) unless every rank exits
    0, killing the others once one fails. Each rank's output.

    `fresh`: started by torchrun as new interpreters, for a test of what happens in a rank
    whose modules are imported after its process group exists (the fork server imported them
    before)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
        **env_extra,
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    if fresh:
        return [_torchrun(script, args, procs, timeout, env)]
    tmp = Path(tempfile.mkdtemp(prefix="ranks-"))
    logs = [tmp / f"rank-{r}.log" for r in range(procs)]
    port = free_port()
    target = [str(ROOT / "tests" / script), *map(str, args)]
    ranks = [
        Forked(target, {**env, **(rank_env(r, procs, port) if procs > 1 else {})}, ROOT, log)
        for r, log in enumerate(logs)
    ]
    codes = run_all(ranks, timeout)
    outputs = [log.read_text(errors="replace") for log in logs]
    shutil.rmtree(tmp)
    failed = [
        f"rank {r} exited {code}:\n{out[-3000:]}"
        for r, (code, out) in enumerate(zip(codes, outputs, strict=True))
        if code != 0
    ]
    assert not failed, "\n".join(failed)
    return outputs


def _torchrun(
    script: str, args: tuple[object, ...], procs: int, timeout: float, env: dict[str, str]
) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs)]
    cmd += ["--master_port", str(free_port()), str(ROOT / "tests" / script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def accelerate_env(launch_args: list[str], env: dict[str, str]) -> tuple[int, int, dict[str, str]]:
    """What `accelerate launch LAUNCH_ARGS` (in environment `env`) hands torchrun: the number of
    processes, the main process's port and the workers' environment, as accelerate's own launch
    command makes them (its parser, config file, checks and environment preparation), stopped
    where torchrun would start the workers."""
    import torch.distributed.run as torchrun
    from accelerate.commands.launch import launch_command, launch_command_parser

    seen: dict = {}

    def start_workers(args) -> None:  # noqa: ANN001 - torchrun's argparse.Namespace
        seen.update(procs=int(args.nproc_per_node), port=int(args.master_port), env={**os.environ})

    with (
        mock.patch.dict(os.environ, env, clear=True),
        mock.patch.object(torchrun, "run", start_workers),
    ):
        launch_command(launch_command_parser().parse_args([*launch_args, "script.py"]))
    return seen["procs"], seen["port"], seen["env"]


def accelerate_ranks(
    launch_args: list[str], target: list[str], env: dict[str, str], log: Path
) -> Group:
    """`accelerate launch LAUNCH_ARGS TARGET...` with its workers forked (tests/forked.py)
    rather than started by torchrun as new interpreters: each rank gets the environment
    accelerate computed (accelerate_env) and torchrun's rank variables; all write to `log`."""
    procs, port, worker_env = accelerate_env(launch_args, env)
    return Group(
        [
            Forked(target, {**worker_env, **rank_env(r, procs, port)}, ROOT, log)
            for r in range(procs)
        ]
    )
