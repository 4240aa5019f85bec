"""Run model-written Python in a subprocess: time and memory limits, no network, a fresh
temporary working directory, an empty environment, killed on timeout.

Network isolation uses a new network namespace (`unshare -rn`) where the kernel allows it;
elsewhere a prelude disables the socket module (weaker: a determined program could get
around it, which is recorded in `SandboxResult.isolation`).
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

MEMORY_LIMIT = 512 << 20  # bytes of address space
OUTPUT_LIMIT = 10_000  # characters of stdout kept

_PRELUDE = """\
import socket as _socket
def _no_network(*a, **k):
    raise PermissionError("network access is disabled in the sandbox")
_socket.socket = _socket.create_connection = _socket.socketpair = _no_network
del _socket, _no_network
"""


@dataclass(frozen=True)
class SandboxResult:
    stdout: str
    error: str | None  # None if the program exited 0
    isolation: str


@functools.cache
def _netns_prefix() -> tuple[str, ...]:
    exe = shutil.which("unshare")
    if not exe:
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return (exe, "-rn") if ok else ()


def _limits(cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    os.setsid()


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the program's whole session (it called setsid, so its pgid is its pid)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(code: str, timeout_s: float = 5.0) -> SandboxResult:
    """Execute `code`; return its stdout, or the reason it failed."""
    prefix = _netns_prefix()
    isolation = "netns" if prefix else "socket-prelude"
    with (
        tempfile.TemporaryDirectory(prefix="ftlab-sandbox-") as tmp,
        tempfile.TemporaryFile("w+") as out_f,
        tempfile.TemporaryFile("w+") as err_f,
    ):
        # Output goes to files, not pipes: a child the program leaves behind cannot hold
        # a pipe open, and the wait is on the program itself.
        cmd = [*prefix, sys.executable, "-I", "-S", "-c", _PRELUDE + code]
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env={"PATH": "/usr/bin:/bin", "HOME": tmp, "PYTHONHASHSEED": "0"},
            stdout=out_f,
            stderr=err_f,
            preexec_fn=functools.partial(_limits, max(1, int(timeout_s))),
            stdin=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            return SandboxResult("", f"timeout after {timeout_s:g}s", isolation)
        finally:
            _kill_group(proc)  # whatever the program started dies with it
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(OUTPUT_LIMIT), err_f.read()[-2000:]
    out = stdout[:OUTPUT_LIMIT]
    if proc.returncode != 0:
        last = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return SandboxResult(out, last[:200], isolation)
    return SandboxResult(out, None, isolation)
