"""Run model-written Python in the code sandbox (the inside: eval/sandbox_child.py).

Each program runs in its own mount, PID, network and IPC namespaces as an unprivileged user
(root: a fresh uid with no capabilities; otherwise: a user namespace with none), with no
network, an empty environment, a file system built from an allowlist (the Python
installation, the system's programs and libraries, a few devices: eval/sandbox_fs.py; not
the project, the user's folders or anything else of the host), every mount read-only, and
one writable place: a fresh working directory on a tmpfs capped in bytes and files.
Limits: CPU seconds, address space, file size, processes (RLIMIT_NPROC, which binds a
non-root uid on any cgroup version), and time. When the program ends or times out, the
namespace's init ends and the kernel kills every process the program left, whatever session
it moved to.

Time: `timeout_s` is CPU time, so a verdict does not depend on how many other programs or
processes share the cores. The verdict's basis is the kernel's count of the CPU seconds of
every process of the run (the launcher, init, the program and all its children, each reaped
inside the namespace), which the lab reads with wait4() on the launcher: outside the
sandbox, where the program cannot write it. Over `timeout_s` is a timeout, whatever the
program reported. Each process is also killed by RLIMIT_CPU a second past the budget (the
rlimit samples CPU time at clock ticks and can fire a few percent before the exact count
reaches it, so it ends runaway processes but is not the verdict). A program that waits
rather than computes (a sleep, a blocked read) is stopped by a wall-clock limit,
`wall_limit(timeout_s)`, generous enough that CPU-bound programs within their budget finish
under it on a busy node.

`run_tests` (MBPP, HumanEval) runs the tests from the harness's own code after the program,
and a program passes only when the harness reported, through a pipe with a per-run nonce,
that every test statement ran: an exit, `os._exit`, a `SystemExit` inside a test, replaced
builtins or a forged marker on stdout does not pass. Threat model and what stops each
hostile program: README, "The code sandbox".

Where the kernel or the lab's privileges cannot give these guarantees, nothing runs:
`run_program` and `require_sandbox` raise a `LabError` naming what is missing.
"""

from __future__ import annotations

import ast
import functools
import marshal
import math
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from eval.sandbox_fs import layout
from lab.core.errors import LabError

MEMORY_LIMIT = 512 << 20  # bytes of address space
OUTPUT_LIMIT = 10_000  # characters of stdout kept
PIDS_LIMIT = 64  # processes and threads of one program, its children included
FILE_LIMIT = 1 << 20  # bytes in one file the program writes
DISK_LIMIT = 8 << 20  # bytes in the program's working directory
FILES_LIMIT = 512  # files and folders in it
ISOLATION = "namespaces"
_REPORT_LIMIT = 1 << 20  # bytes of report records read
_SETUP_FAILED = 111
WALL_FACTOR, WALL_MARGIN_S = 4.0, 5.0  # wall-clock limit: 4 x the CPU budget + 5 s
_UID_BASE = 1_500_000_000  # root runs each program as _UID_BASE + a random 24-bit number
_CHILD = (Path(__file__).parent / "sandbox_child.py").read_text()


@dataclass(frozen=True)
class SandboxResult:
    stdout: str
    error: str | None  # None if the program exited 0
    isolation: str = ISOLATION
    records: list[str] = field(default_factory=list, repr=False)  # from the harness


def wall_limit(timeout_s: float) -> float:
    """Seconds of wall-clock time a program with `timeout_s` CPU seconds may take."""
    return WALL_FACTOR * timeout_s + WALL_MARGIN_S


def _launch(mode: str, code: str, tests: str, timeout_s: float) -> tuple:
    """(exit code, stdout, stderr, the harness's records, why it timed out or None)."""
    fs = layout()
    nonce = secrets.token_hex(16)
    report_r, report_w = os.pipe()
    workdir = os.path.join(fs.tmp, f"ftlab-sandbox-{secrets.token_hex(6)}")
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "PYTHONHASHSEED": "0"}
    cfg = {
        "mode": mode,
        "code": code,
        "tests": tests,
        "nonce": nonce,
        "report_fd": report_w,
        "binds": fs.binds,
        "links": fs.links,
        "hide": fs.hide,
        "keep": fs.keep,
        "stage": fs.tmp,
        "workdir": workdir,
        "env": env,
        "userns": os.geteuid() != 0,
        "uid": _UID_BASE + secrets.randbelow(1 << 24),
        "cpu_s": math.ceil(timeout_s) + 1,
        "memory_bytes": MEMORY_LIMIT,
        "pids": PIDS_LIMIT,
        "file_bytes": FILE_LIMIT,
        "disk_bytes": DISK_LIMIT,
        "disk_files": FILES_LIMIT,
    }
    with (
        tempfile.TemporaryFile() as cfg_f,
        tempfile.TemporaryFile("w+", errors="replace") as out_f,  # any bytes the program wrote
        tempfile.TemporaryFile("w+", errors="replace") as err_f,
    ):
        cfg_f.write(marshal.dumps(cfg))
        cfg_f.flush()
        cfg_f.seek(0)
        try:
            try:
                proc = subprocess.Popen(
                    [
                        os.path.realpath(sys.executable),
                        "-I",
                        "-S",
                        "-c",
                        _CHILD,
                        str(cfg_f.fileno()),
                    ],
                    cwd="/",
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out_f,
                    stderr=err_f,
                    pass_fds=(cfg_f.fileno(), report_w),
                    start_new_session=True,
                )
            finally:
                os.close(report_w)
            try:
                deadline = time.monotonic() + wall_limit(timeout_s)
                records, cpu_s = _read_records(report_r, proc, deadline)
            finally:
                _stop(proc)
        finally:
            os.close(report_r)
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(OUTPUT_LIMIT), err_f.read()[-2000:]
    good = [r.split(" ", 1)[1].strip() for r in records if r.startswith(nonce + " ")]
    forged = len(good) != len(records)
    for r in good[: good.index("start") if "start" in good else None]:  # before the program
        if r.startswith("setup "):
            raise LabError(_refusal(r.removeprefix("setup ").strip()))
    if proc.returncode == _SETUP_FAILED and "start" not in good:
        raise LabError(_refusal(stderr.strip().splitlines()[-1] if stderr.strip() else "?"))
    if forged:
        good.append("forged")
    timeout = None
    if cpu_s is None:
        timeout = f"timeout after {wall_limit(timeout_s):g}s of wall-clock time"
    elif cpu_s > timeout_s:
        timeout = f"timeout after {timeout_s:g}s of CPU time"
    return proc.returncode, stdout, stderr, good, timeout


def _read_records(
    fd: int, proc: subprocess.Popen, deadline: float
) -> tuple[list[str], float | None]:
    """The report pipe's lines until every writer is gone, and the CPU seconds of the whole
    run (None: the wall-clock deadline passed first)."""
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        if len(buf) < _REPORT_LIMIT:
            buf += chunk
    cpu_s = _reap(proc, deadline)
    lines = buf.decode(errors="replace").split("\n")
    return lines[:-1] + ([lines[-1]] if lines[-1] else []), cpu_s


def _reap(proc: subprocess.Popen, deadline: float) -> float | None:
    """Wait for the launcher until `deadline`; the CPU seconds (user + system) of it and of
    every process reaped below it, as the kernel counted them, or None if it still runs."""
    pause = 0.001
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(2 * pause, 0.02)


def _stop(proc: subprocess.Popen) -> None:
    """End the launcher; it kills the namespace's init and waits for it, and with init every
    process in the namespace goes (the kernel's doing), so nothing is left when this returns."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _refusal(what: str) -> str:
    return (
        f"the code sandbox cannot be set up on this machine ({what}); code-format evaluation "
        "needs Linux >= 5.12 with mount, PID and network namespaces, run as root with "
        "CAP_SYS_ADMIN or as a user allowed unprivileged user namespaces"
    )


@functools.cache
def _probe() -> str | None:
    try:
        _launch("program", "print(1)", "", 30)
    except LabError as e:
        return str(e)
    return None


def require_sandbox() -> None:
    """Raise a LabError naming what is missing if programs cannot run in the sandbox here."""
    problem = _probe()
    if problem:
        raise LabError(problem)


def _failure(code: int, stderr: str, timeout: str | None) -> str | None:
    if timeout is not None:
        return timeout
    if code != 0:
        last = (stderr.strip().splitlines() or [f"exit code {code}"])[-1]
        return last[:200]
    return None


def run_program(code: str, timeout_s: float = 5.0) -> SandboxResult:
    """Execute `code` as a script; return its stdout, or the reason it failed. `timeout_s`
    is CPU seconds (wall-clock: `wall_limit(timeout_s)`)."""
    rc, stdout, stderr, records, timeout = _launch("program", code, "", timeout_s)
    error = _failure(rc, stderr, timeout)
    return SandboxResult("" if timeout else stdout[:OUTPUT_LIMIT], error, records=records)


def run_with_tests(program: str, tests: str, timeout_s: float = 5.0) -> SandboxResult:
    """Run `program`, then each top-level statement of `tests` from the harness's own code;
    error None only when the harness reported that every statement ran without an error."""
    try:
        n = len(ast.parse(tests).body)
    except SyntaxError as e:
        return SandboxResult("", f"the tests do not parse: {e.msg} (line {e.lineno})")
    rc, stdout, stderr, records, timeout = _launch("tests", program, tests, timeout_s)
    return SandboxResult(stdout, _verdict(records, n, rc, timeout), records=records)


def _verdict(records: list[str], n: int, rc: int, timeout: str | None) -> str | None:
    expected = ["start", *(f"ok {i}" for i in range(n)), f"done {n}"]
    got = records
    if got == expected and timeout is None:
        return None
    if "forged" in got:
        return "the program wrote to the harness's report pipe"
    for r in got:
        if r.startswith("fail "):
            i, _, msg = r.removeprefix("fail ").partition(" ")
            where = "before the tests ran" if i == "-1" else f"in test {int(i) + 1} of {n}"
            return f"{msg} ({where})"
    if timeout is not None:
        return timeout
    ran = sum(r.startswith("ok ") for r in got)
    if got != expected[: len(got)]:
        return "the harness's report is out of order"
    end = f"exit code {rc}" if rc < 128 else f"signal {rc - 128}"
    return f"the program ended ({end}) after {ran} of {n} tests ran"
