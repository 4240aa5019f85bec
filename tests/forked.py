"""Processes for tests, forked from a server that has imported the lab once.

A test that needs a process of its own (a study killed by a signal, a rank of a distributed
run) gets a real one here: its own pid, environment, working directory, arguments and output
file, exit status and signals as `subprocess.Popen` gives them. What it does not pay is a new
interpreter's imports (torch, transformers, accelerate, the lab: ~5 s of CPU each): the
processes are forked from a multiprocessing fork server that imported them once, at the start
of the pytest worker's first such test, before it ran any of the lab's code. What a fresh
interpreter reads from the environment while importing is the same here: the server starts
with the environment of the test process and OMP_NUM_THREADS=1, the value every launch of
these tests sets.

Tests whose subject is a fresh interpreter (what importing a module pulls in, the GPU check's
script, a user's `accelerate launch`) start one with subprocess instead.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # registers its exit handler (waiting for children) before ours
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PRELOAD = ["torch", "transformers", "accelerate", "peft", "lab.study.cli", "lab.study.run"]
_SERVER: Any = None
_STARTED: list[Forked] = []


@atexit.register  # runs before multiprocessing's exit handler, which waits for its children
def _kill_leftovers() -> None:
    """Processes a failed test left running end with the test process."""
    for proc in _STARTED:
        proc.kill()


def _context() -> Any:
    """The fork server's context, started on first use with the modules of PRELOAD."""
    global _SERVER
    if _SERVER is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        threads = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # read once, when libgomp loads in the server
        try:
            from multiprocessing import forkserver

            forkserver.ensure_running()
        finally:
            if threads is None:
                del os.environ["OMP_NUM_THREADS"]
            else:
                os.environ["OMP_NUM_THREADS"] = threads
        _SERVER = ctx
    return _SERVER


def _child(target: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """In the forked process: `python TARGET...` (TARGET: `-m module` or a script path) with
    `env` as its whole environment, in `cwd`, stdout and stderr appended to `log`."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt
    import torch

    # The intra-op pool is made on this thread first, as in a new interpreter (several threads
    # making it at once can fail: "Invalid thread pool!").
    torch.set_num_threads(int(env.get("OMP_NUM_THREADS", "1")))
    try:
        if target[0] == "-m":
            sys.argv = [target[1], *target[2:]]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(target)
            sys.path.insert(0, str(Path(target[0]).parent))
            runpy.run_path(target[0], run_name="__main__")
    finally:
        atexit._run_exitfuncs()  # what an interpreter runs at exit (a forked child skips it)


class Forked:
    """A forked process, with the part of `subprocess.Popen` the tests use."""

    def __init__(self, target: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.process = _context().Process(
            target=_child, args=(target, env, str(cwd), str(log)), daemon=False
        )
        self.process.start()
        self.pid = self.process.pid
        _STARTED.append(self)

    def poll(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout)
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        if self.process.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Group:
    """The processes of one run (its ranks), with the part of `subprocess.Popen` that a test
    uses on a launcher. Once one fails, the others are killed (a rank left alone waits in a
    collective), as torchrun does; the run's exit code is its first failed process's (0 when
    all succeed)."""

    def __init__(self, procs: list[Forked]) -> None:
        self.procs = procs

    def poll(self) -> int | None:
        codes = [p.poll() for p in self.procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            self.kill()
            return failed[0]
        return None if None in codes else 0

    def wait(self, timeout: float | None = None) -> int:
        codes = run_all(self.procs, float("inf") if timeout is None else timeout)
        return next((c for c in codes if c != 0), 0)

    def kill(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def run_all(procs: list[Forked], timeout: float) -> list[int]:
    """Wait for `procs` (the ranks of one run, see Group); at `timeout` they are all killed.
    Their exit codes."""
    group = Group(procs)
    deadline = time.monotonic() + timeout
    while group.poll() is None:
        if time.monotonic() > deadline:
            group.kill()
            break
        time.sleep(0.02)
    return [p.wait() for p in procs]
