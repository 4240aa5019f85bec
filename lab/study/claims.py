"""Workers sharing one study: a cell is run by whoever claims it first.

Any number of `lab run` processes (on one machine, or jobs of a cluster array on a shared
file system) may work on the same `--out`. Before running a cell a worker claims it by
creating its lock file, `OUT/locks/<cell key>.<generation>.lock`, with O_CREAT | O_EXCL:
exactly one creator succeeds. The file holds the claimant's host, pid, start time and
lease; a background thread touches it (its mtime is the heartbeat) every quarter lease
while the cell runs, and the lock is deleted when the cell is done (its cell.json written
first) or the worker stops.

A lock whose worker is gone is taken over: at once when its process no longer runs (pid and
process start time, so a reused pid does not count), judged only where the pid means the
same process to the reader: the same host name, boot and PID namespace (containers with host
networking on one node share a host name, not a PID namespace); elsewhere (another host,
container or boot, or without /proc) when its lease ran out (mtime + lease: a killed
worker, or one that stopped heartbeating). Taking over creates the next generation's file, again
with O_EXCL, so of several workers that find the same stale lock exactly one wins; the
highest generation is the lock that counts, and a worker that finds a higher generation
above its own has lost its claim (`Lock.lost`).

A claim only says who runs a cell; whether the cell is still to be done is read from its
done marker after the claim (a cell finished and released just before is not run twice).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core.errors import LabError

DEFAULT_LEASE_S = 120.0
LEASE_ENV = "FTLAB_LEASE_S"
SUFFIX = ".lock"


def lease_seconds() -> float:
    """The lease of this worker's claims: $FTLAB_LEASE_S or 120 s. A worker killed on
    another host holds its cell this long; on the same host, only until its pid is gone."""
    text = os.environ.get(LEASE_ENV)
    if text is None:
        return DEFAULT_LEASE_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise LabError(f"{LEASE_ENV}={text!r}: write the claim lease in seconds (> 0), e.g. 120")
    return value


def _host() -> str:
    return socket.gethostname()


def pid_namespace() -> dict[str, str | None]:
    """Where this process's pid means this process: the kernel's boot id and the PID
    namespace (its inode, `pid:[...]`); None where /proc does not say."""

    def read(how: Callable[[], str]) -> str | None:
        try:
            return how().strip()
        except OSError:
            return None

    return {
        "boot_id": read(lambda: Path("/proc/sys/kernel/random/boot_id").read_text()),
        "pid_ns": read(lambda: os.readlink("/proc/self/ns/pid")),
    }


def _same_pid_space(holder: dict[str, Any]) -> bool:
    """Whether the holder's pid names a process the reader can see: same host name, boot
    and PID namespace, each known on both sides."""
    if holder.get("host") != _host():
        return False
    mine = pid_namespace()
    return all(mine[k] is not None and holder.get(k) == mine[k] for k in mine)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie, killed but not yet reaped, does
    not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _proc_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot, from /proc; None without /proc):
    with the pid, it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _generations(locks: Path, key: str) -> list[int]:
    """The generations of `key`'s lock files, ascending."""
    try:
        names = os.listdir(locks)
    except FileNotFoundError:
        return []
    prefix = key + "."
    gens = []
    for name in names:
        if name.startswith(prefix) and name.endswith(SUFFIX):
            middle = name[len(prefix) : -len(SUFFIX)]
            if middle.isdigit():
                gens.append(int(middle))
    return sorted(gens)


def _path(locks: Path, key: str, gen: int) -> Path:
    return locks / f"{key}.{gen}{SUFFIX}"


def read_holder(path: Path) -> dict[str, Any] | None:
    """The lock file's record with its heartbeat (`mtime`), or None if it is gone. A record
    still being written (empty or partial) reads as {"mtime": ...} only."""
    try:
        mtime = path.stat().st_mtime
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        rec = json.loads(text)
    except ValueError:
        rec = {}
    if not isinstance(rec, dict):
        rec = {}
    return {**rec, "mtime": mtime}


def is_stale(holder: dict[str, Any], lease_s: float, now: float | None = None) -> bool:
    """A lock whose worker is gone. In the reader's own host, boot and PID namespace: its
    process no longer runs (pid and start time; a live holder keeps its claim however long
    it is suspended). Elsewhere (another host, another container's PID namespace on this
    node, a record without them) or without /proc: its lease (the holder's own, else
    `lease_s`) ran out since the last heartbeat."""
    now = time.time() if now is None else now
    pid = holder.get("pid")
    if isinstance(pid, int) and _same_pid_space(holder):
        if not pid_alive(pid):
            return True
        start = holder.get("pid_start")
        if start is not None and (now_start := _proc_start(pid)) is not None:
            return now_start != start  # alive: the holder itself, or its pid reused
    lease = holder.get("lease_s")
    lease = float(lease) if isinstance(lease, int | float) and lease > 0 else lease_s
    return now > holder["mtime"] + lease


@dataclass
class Lock:
    """A held claim on one key; `release()` it when done (also on failure)."""

    locks: Path
    key: str
    gen: int
    lease_s: float
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lost: bool = field(default=False, repr=False)

    @property
    def path(self) -> Path:
        return _path(self.locks, self.key, self.gen)

    @property
    def lost(self) -> bool:
        """Another worker took this claim over (this one's heartbeat had stopped past its
        lease, e.g. the process was suspended), or the lock file was removed."""
        if not self._lost:
            gens = _generations(self.locks, self.key)
            self._lost = self.gen not in gens or gens[-1] > self.gen
        return self._lost

    def heartbeat(self) -> bool:
        """Renew the lease (touch the file); False once the claim is lost."""
        if self.lost:
            return False
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self._lost = True
        return not self._lost

    def start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.lease_s / 4):
                if not self.heartbeat():
                    return

        self._thread = threading.Thread(target=beat, name=f"claim-{self.key}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete this lock and the stale generations below it (a
        taker's higher generation is left alone)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for gen in _generations(self.locks, self.key):
            if gen <= self.gen:
                _path(self.locks, self.key, gen).unlink(missing_ok=True)


def claim(locks: str | Path, key: str, lease_s: float, heartbeat: bool = True) -> Lock | None:
    """Claim `key`: a Lock if this worker now holds it (a fresh lock, or one taken over from
    a worker that is gone), None if a live worker holds it."""
    locks = Path(locks)
    locks.mkdir(parents=True, exist_ok=True)
    gens = _generations(locks, key)
    gen = 0
    if gens:
        holder = read_holder(_path(locks, key, gens[-1]))
        if holder is not None and not is_stale(holder, lease_s):
            return None
        # gone (released just now: the next generation is free too) or stale: take over
        gen = gens[-1] + 1
    record = {
        "host": _host(),
        "pid": os.getpid(),
        "pid_start": _proc_start(os.getpid()),
        **pid_namespace(),
        "started": time.time(),
        "lease_s": lease_s,
        "key": key,
    }
    try:
        fd = os.open(_path(locks, key, gen), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:  # another worker claimed it first
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    lock = Lock(locks, key, gen, lease_s)
    if lock.lost:  # a worker that read an older listing made a higher generation meanwhile
        lock.release()
        return None
    if heartbeat:
        lock.start_heartbeat()
    return lock


def live_holders(locks: str | Path, lease_s: float) -> list[dict[str, Any]]:
    """The records of the locks under `locks` whose workers still run (for `--force`: a
    study being run by another worker is not deleted under it)."""
    locks = Path(locks)
    if not locks.is_dir():
        return []
    out = []
    for p in sorted(locks.glob(f"*{SUFFIX}")):
        holder = read_holder(p)
        if holder is not None and not is_stale(holder, lease_s):
            out.append(holder)
    return out
