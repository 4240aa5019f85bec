"""Claims on cells (lab/study/claims.py): one holder at a time, takeover of a gone worker's lock
(dead pid in this host's PID namespace, expired lease from another host or another PID
namespace on this host), heartbeat, loss, release."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.core.errors import LabError
from lab.core.io import create_json_exclusive
from lab.study import claims


def _foreign(locks: Path, key: str, gen: int = 0, age_s: float = 0.0, **rec) -> Path:
    """A lock file written by someone else (`rec`), last heartbeat `age_s` ago."""
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{key}.{gen}.lock"
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "lease_s": 10, **rec}))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def _here() -> dict[str, str]:
    """This process's boot and PID namespace, read from /proc (Linux, as in CI)."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return {"boot_id": boot, "pid_ns": os.readlink("/proc/self/ns/pid")}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_one_holder_until_released(tmp_path):
    lock = claims.claim(tmp_path, "a__d0", lease_s=60)
    assert lock is not None and lock.gen == 0
    rec = json.loads(lock.path.read_text())
    assert rec["pid"] == os.getpid() and rec["host"] and rec["lease_s"] == 60
    assert claims.claim(tmp_path, "a__d0", lease_s=60) is None  # held by a live worker
    assert claims.claim(tmp_path, "a__d1", lease_s=60) is not None  # another cell: free
    lock.release()
    assert not lock.path.exists()
    again = claims.claim(tmp_path, "a__d0", lease_s=60)
    assert again is not None
    again.release()


def test_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    here = {"host": socket.gethostname(), **_here()}
    old = _foreign(tmp_path, "c", pid=_dead_pid(), lease_s=3600, **here)
    lock = claims.claim(tmp_path, "c", lease_s=3600)
    assert lock is not None and lock.gen == 1  # the next generation
    lock.release()
    assert not old.exists() and not list(tmp_path.iterdir())  # stale generations go too


def test_reused_pid_does_not_keep_a_lock(tmp_path):
    # this process's pid, but another process's start time: the holder is gone
    here = {"host": socket.gethostname(), **_here()}
    _foreign(tmp_path, "c", pid=os.getpid(), pid_start="1", **here)
    lock = claims.claim(tmp_path, "c", lease_s=3600)
    assert lock is not None
    lock.release()


def test_a_holder_in_another_pid_namespace_is_judged_by_its_lease(tmp_path):
    """Same host name (containers with host networking), another PID namespace: its pid
    means nothing here (a dead pid here, or pid 1 here which is another process), so only
    its heartbeat counts."""
    ns = _here()
    other = {"host": socket.gethostname(), "boot_id": ns["boot_id"], "pid_ns": "pid:[1]"}
    for pid in (_dead_pid(), 1):
        _foreign(tmp_path, f"fresh{pid}", age_s=2, lease_s=10, pid=pid, pid_start="1", **other)
        assert claims.claim(tmp_path, f"fresh{pid}", lease_s=1) is None
        _foreign(tmp_path, f"old{pid}", age_s=11, lease_s=10, pid=pid, pid_start="1", **other)
        lock = claims.claim(tmp_path, f"old{pid}", lease_s=1000)
        assert lock is not None and lock.gen == 1
        lock.release()
    # another boot of this host (a record left before a reboot): its lease counts too
    rebooted = {**other, "pid_ns": ns["pid_ns"], "boot_id": "another-boot"}
    _foreign(tmp_path, "boot", age_s=2, lease_s=10, pid=_dead_pid(), **rebooted)
    assert claims.claim(tmp_path, "boot", lease_s=1) is None


HOLDER = """
import sys, time
from lab.study import claims
lock = claims.claim(sys.argv[1], "cell", lease_s=float(sys.argv[2]))
print("held" if lock else "refused", flush=True)
sys.stdin.read()  # until the test closes it
"""


def test_a_live_holder_in_another_pid_namespace_keeps_its_claim(tmp_path):
    """A real holder in its own PID namespace (`unshare --pid`: pid 1 there, another process
    here) that heartbeats keeps its claim past its lease; once it is gone, its lease runs
    out and the claim is taken over."""
    if not shutil.which("unshare"):
        pytest.fail("this check needs util-linux's unshare (as in CI)")
    root = Path(__file__).resolve().parents[2]
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    lease = 1.0
    holder = subprocess.Popen(
        [
            "unshare",
            *userns,
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-c",
            HOLDER,
            str(tmp_path),
            str(lease),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert json.loads((tmp_path / "cell.0.lock").read_text())["pid"] == 1  # its own PID 1
        deadline = time.time() + 3 * lease
        while time.time() < deadline:  # past its lease: alive, heartbeating
            assert claims.claim(tmp_path, "cell", lease_s=lease) is None
            time.sleep(0.2)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    time.sleep(1.5 * lease)  # its last heartbeat ages past the lease
    lock = claims.claim(tmp_path, "cell", lease_s=lease)
    assert lock is not None and lock.gen == 1
    lock.release()
    assert claims.pid_namespace() == _here()


def test_other_hosts_lock_is_taken_over_when_its_lease_expired(tmp_path):
    _foreign(tmp_path, "fresh", age_s=2, lease_s=10)
    assert claims.claim(tmp_path, "fresh", lease_s=1) is None  # the holder's lease counts
    _foreign(tmp_path, "expired", age_s=11, lease_s=10)
    lock = claims.claim(tmp_path, "expired", lease_s=1000)
    assert lock is not None and lock.gen == 1
    lock.release()


def test_a_half_written_lock_counts_as_held_until_its_lease(tmp_path):
    (tmp_path / "k.0.lock").write_text("")  # created, record not yet written
    assert claims.claim(tmp_path, "k", lease_s=30) is None
    t = time.time() - 31
    os.utime(tmp_path / "k.0.lock", (t, t))
    assert claims.claim(tmp_path, "k", lease_s=30) is not None


def test_of_many_workers_taking_over_the_same_stale_lock_exactly_one_wins(tmp_path):
    _foreign(tmp_path, "c", age_s=100, lease_s=10)
    start = time.time() + 0.5
    tried_r, tried_w = os.pipe()  # each worker writes one byte once it has tried
    go_r, go_w = os.pipe()  # closed by the test once all have tried: then they exit
    pids = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:  # a worker: claim at the same moment as the others, keep the lock
            code = 1
            try:
                os.close(tried_r), os.close(go_w)
                time.sleep(max(0.0, start - time.time()))
                code = 0 if claims.claim(tmp_path, "c", lease_s=10, heartbeat=False) else 3
                os.write(tried_w, b"x")
                os.read(go_r, 1)  # alive (holding any lock it won) until every worker tried:
                # a winner that exited first would leave a dead holder, rightly taken over
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(tried_w), os.close(go_r)
    tried = b""
    while len(tried) < 8 and (chunk := os.read(tried_r, 8)):
        tried += chunk
    os.close(go_w), os.close(tried_r)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert sorted(codes) == [0] + [3] * 7, codes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.0.lock", "c.1.lock"]


def test_heartbeat_renews_the_lease_and_a_takeover_is_noticed(tmp_path):
    lock = claims.claim(tmp_path, "c", lease_s=0.4)
    assert lock is not None
    t = time.time() - 100
    os.utime(lock.path, (t, t))
    time.sleep(0.3)  # a beat every lease/4
    assert lock.path.stat().st_mtime > time.time() - 1
    assert not lock.lost
    taker = _foreign(tmp_path, "c", gen=1, age_s=0)  # e.g. after this worker was suspended
    assert lock.lost and not lock.heartbeat()
    lock.release()
    assert taker.exists() and not lock.path.exists()  # the taker's lock is left alone


def test_live_holders(tmp_path):
    assert claims.live_holders(tmp_path / "none", 10) == []
    lock = claims.claim(tmp_path, "c", lease_s=60)
    _foreign(tmp_path, "old", age_s=100, lease_s=10)
    assert [h["pid"] for h in claims.live_holders(tmp_path, 60)] == [os.getpid()]
    lock.release()


def test_lease_from_the_environment(monkeypatch):
    monkeypatch.delenv(claims.LEASE_ENV, raising=False)
    assert claims.lease_seconds() == claims.DEFAULT_LEASE_S
    monkeypatch.setenv(claims.LEASE_ENV, "7.5")
    assert claims.lease_seconds() == 7.5
    for bad in ("0", "-3", "soon"):
        monkeypatch.setenv(claims.LEASE_ENV, bad)
        with pytest.raises(LabError, match="FTLAB_LEASE_S"):
            claims.lease_seconds()


def test_create_json_exclusive(tmp_path):
    path = tmp_path / "study.json"
    assert create_json_exclusive(path, {"a": 1})
    assert not create_json_exclusive(path, {"a": 2})  # another worker's is kept
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["study.json"]  # no temp file left
