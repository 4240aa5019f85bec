"""Hostile model-written programs in the sandbox (eval/sandbox.py): each is contained, gets a
per-example error, and the evaluation goes on with the next example."""

from __future__ import annotations

import os
import socket
import sysconfig
import time
import uuid
from pathlib import Path

import pytest

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import Generation
from eval.sandbox import DISK_LIMIT, FILES_LIMIT, PIDS_LIMIT, run_program, wall_limit
from lab.core.example import Example

ROOT = Path(__file__).resolve().parents[2]


def _running_with(marker: str) -> list[int]:
    """Processes with `marker` in their command line or name (comm: 15 characters)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd, comm = (d / "cmdline").read_bytes(), (d / "comm").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd or marker[:15].encode() == comm.strip():
                pids.append(int(d.name))
    return pids


def _named(marker: str) -> str:
    """A program line that names its process `marker` (its forks inherit the name)."""
    return f"import ctypes\nctypes.CDLL(None).prctl(15, {marker[:15].encode()!r}, 0, 0, 0)\n"


def test_fork_bomb_is_bounded_and_killed():
    marker = f"bomb{uuid.uuid4().hex[:11]}"
    code = _named(marker) + (
        "import os\nn = 0\nwhile True:\n    try:\n        os.fork()\n"
        "        n += 1\n    except OSError:\n        pass\n"
    )
    t0 = time.monotonic()
    res = run_program(code, timeout_s=2)
    assert res.error is not None
    assert time.monotonic() - t0 < wall_limit(2) + 5  # over its CPU time, or the wall clock
    assert _running_with(marker) == []  # every forked copy is gone when run_program returns


def test_forks_stop_at_the_process_limit():
    code = (
        "import os, time\nn = 0\ntry:\n    for _ in range(200):\n        if os.fork() == 0:\n"
        "            time.sleep(3)\n            os._exit(0)\n        n += 1\nexcept OSError:\n"
        "    pass\nprint(n)"
    )
    res = run_program(code, timeout_s=10)
    assert res.error is None
    assert int(res.stdout) < PIDS_LIMIT  # blocked at the limit, not 200


def test_a_child_that_left_the_session_dies_with_the_program():
    """setsid() and a double fork leave the program's session and process group; the
    PID namespace's init ends with the program, and the kernel kills the rest."""
    marker = f"ftlab-daemon-{uuid.uuid4().hex}"
    code = (
        "import os, subprocess\n"
        f"subprocess.Popen(['sh', '-c', 'sleep 60; echo {marker}'], start_new_session=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sh', ['sh', '-c', 'sleep 60; echo {marker}'])\n"
        "    os._exit(0)\nimport time\ntime.sleep(0.5)\nprint(len(os.listdir('/proc')))"
    )
    res = run_program(code, timeout_s=10)
    assert res.error is None, res
    assert _running_with(marker) == []  # gone when run_program returns: no wait needed


def test_users_files_are_hidden(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE-KEY-123")
    monkeypatch.setenv("HOME", str(home))
    for path in (home / ".ssh" / "id_rsa", ROOT / "pyproject.toml", Path.cwd()):
        res = run_program(f"print(open({str(path)!r}).read()[:50])")
        assert res.error is not None and "Error" in res.error, path
        assert "PRIVATE-KEY" not in res.stdout and "[project]" not in res.stdout
    res = run_program(f"import os\nprint(os.listdir({str(ROOT)!r}))")
    # an empty mount, or gone (when the project lies inside another hidden folder, e.g. /tmp)
    assert (res.error is None and res.stdout.strip() == "[]") or (
        res.error is not None and "FileNotFoundError" in res.error
    )


def test_writes_outside_the_fresh_directory_do_not_reach_the_users_files():
    name = f"pwned-{uuid.uuid4().hex}.txt"
    res = run_program(f"open({str(ROOT / name)!r}, 'w').write('x')\nprint('wrote')")
    assert not (ROOT / name).exists()
    assert res.stdout in ("", "wrote\n")  # wrote into an empty tmpfs that vanished, or failed


def test_hostile_programs_each_fail_and_the_evaluation_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("FTLAB_TEST_SECRET", "s3cr3t-token")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    programs = {
        "infinite_loop": "while True:\n    pass",
        "sleep_forever": "import time\ntime.sleep(60)",
        "huge_allocation": "x = bytearray(8 << 30)\nprint(42)",
        "env_secret": "import os\nprint(42 if 'FTLAB_TEST_SECRET' in os.environ else 0)\n"
        "print(open(f'/proc/{os.getppid()}/environ').read())\nprint(42)",
        "socket": f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n"
        "print(42)",
        "user_file": f"print(open({str(ROOT / 'pyproject.toml')!r}).read())\nprint(42)",
        "good": "print(6 * 7)",
    }
    names = list(programs)
    examples = [Example(f"x-{i}", n, "42", "", "") for i, n in enumerate(names)]

    class LM:
        def generate(self, requests, desc=""):
            return [Generation("\n" + programs[n], 10, 5, "stop") for n in names]

    t0 = time.monotonic()
    try:
        preds, m = evaluate_split(
            LM(), examples, PromptSpec("code"), 64, code_timeout_s=2, gold_logprob=False
        )
    finally:
        server.close()
    assert time.monotonic() - t0 < 60
    by = {p["question"]: p for p in preds}
    assert [p["question"] for p in preds] == names  # every example scored, in order
    for n in names:
        if n == "good":
            assert by[n]["correct"] and by[n]["error"] is None
        else:
            assert not by[n]["correct"] and by[n]["error"], (n, by[n])
            assert "s3cr3t" not in by[n]["generation"] + str(by[n]["error"])
    assert m["exact_match"] == pytest.approx(1 / len(names))


def test_nothing_outside_the_working_directory_is_writable():
    """As root on the host: the Python installation the lab imports, /etc, /dev/shm, the
    folders around the project and the temp folder are all read-only inside."""
    name = f"pwned-{uuid.uuid4().hex}"
    targets = [
        os.path.dirname(os.__file__),
        sysconfig.get_paths()["purelib"],
        "/etc",
        "/dev/shm",
        "/var/tmp",
        "/tmp",
        "/",
        str(ROOT),
        str(ROOT.parent),
        os.path.expanduser("~"),
    ]
    code = (
        f"import os\nfor d in {targets!r}:\n    p = os.path.join(d, {name!r})\n    try:\n"
        "        open(p, 'w').write('x')\n        print('WROTE', p)\n"
        "    except OSError as e:\n        print('refused', d, e.strerror)\n"
        "open('mine.txt', 'w').write('ok')\nprint('own dir', open('mine.txt').read())"
    )
    res = run_program(code)
    assert res.error is None, res
    assert "WROTE" not in res.stdout, res.stdout
    assert "own dir ok" in res.stdout
    for d in targets:
        assert not os.path.exists(os.path.join(d, name)), d


def test_the_program_is_unprivileged_and_cannot_make_mounts_writable():
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(os.getuid(), os.geteuid())\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0])\n"
        "print(libc.mount(None, b'/', None, 32 | 4096, None), ctypes.get_errno())\n"  # remount
        "print(libc.mount(b'none', b'/etc', b'tmpfs', 0, None), ctypes.get_errno())\n"
        "try:\n    os.setuid(0)\n    print('root again')\nexcept OSError as e:\n"
        "    print('setuid refused')\n"
    )
    res = run_program(code)
    assert res.error is None, res
    ids, caps, remount, tmpfs, setuid = res.stdout.splitlines()
    uid, euid = ids.split()
    assert uid == euid and (os.geteuid() != 0 or int(uid) != 0)
    assert int(caps, 16) == 0
    assert remount.split()[0] == "-1" and tmpfs.split()[0] == "-1"
    assert setuid == "setuid refused"


def test_a_disk_filling_program_is_stopped_by_the_size_cap():
    code = (
        "total = 0\ntry:\n    for i in range(100):\n"
        "        with open(f'f{i}', 'wb') as f:\n            f.write(b'x' * (512 << 10))\n"
        "        total += 512 << 10\nexcept OSError as e:\n    print(e.strerror)\nprint(total)"
    )
    res = run_program(code, timeout_s=10)
    assert res.error is None, res
    why, total = res.stdout.splitlines()
    assert why == "No space left on device"
    assert int(total) <= DISK_LIMIT  # 50 MiB asked


def test_a_program_creating_files_without_end_is_stopped_by_the_file_cap():
    code = (
        "import os\nn = 0\ntry:\n    for i in range(20000):\n        os.mkdir(f'd{i}')\n"
        "        n += 1\nexcept OSError as e:\n    print(e.strerror)\nprint(n)"
    )
    res = run_program(code, timeout_s=10)
    assert res.error is None, res
    why, n = res.stdout.splitlines()
    assert why == "No space left on device"
    assert int(n) <= FILES_LIMIT


def test_bytes_that_are_not_utf8_do_not_stop_the_evaluation():
    res = run_program("import sys\nsys.stdout.buffer.write(b'\\xff\\xfe 42\\n')")
    assert res.error is None and res.stdout.endswith(" 42\n")
    res = run_program("import sys\nsys.stderr.buffer.write(b'\\xff\\n')\nraise SystemExit(1)")
    assert res.error == "\ufffd"
