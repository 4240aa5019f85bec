"""The sandbox's file system is an allowlist (eval/sandbox_fs.py): a program sees the Python
installation, the system's programs and libraries and a few devices, and nothing else of the
host: not the folders beside the project, nor /opt, /srv, /etc, /var, /usr/local, /home-like
shared folders, wherever the lab runs from. Ordinary programs still run."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from eval.sandbox import run_program
from eval.sandbox_fs import layout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def planted():
    """World-readable files planted where a shared node keeps other people's things: a
    sibling of the project, /opt, /srv, /var, /etc, /usr/local, a top-level folder like
    /work; (folder, file, secret) each, removed afterwards."""
    tag = uuid.uuid4().hex[:12]
    places = [
        ROOT.parent / f"ftlab-sibling-{tag}",
        Path("/opt") / f"ftlab-{tag}",
        Path("/srv") / f"ftlab-{tag}",
        Path("/var") / f"ftlab-{tag}",
        Path("/etc") / f"ftlab-{tag}",
        Path("/usr/local") / f"ftlab-{tag}",
        Path("/") / f"ftlab-shared-{tag}",
    ]
    made = []
    try:
        for i, d in enumerate(places):
            try:
                d.mkdir(mode=0o755)
            except OSError:  # not ours to write here (as a user): the others still count
                continue
            d.chmod(0o755)
            f = d / "notes.txt"
            f.write_text(f"SECRET-{tag}-{i}")
            f.chmod(0o644)
            made.append((d, f, f"SECRET-{tag}-{i}"))
        assert made and made[0][0].parent == ROOT.parent  # the sibling folder, at least
        yield made
    finally:
        for d, *_ in made:
            shutil.rmtree(d, ignore_errors=True)


def test_a_program_cannot_read_or_list_files_outside_the_allowlist(planted):
    code = "import os\n"
    for d, f, _ in planted:
        code += (
            f"for how in (lambda: open({str(f)!r}).read(), lambda: os.listdir({str(d)!r}),\n"
            f"            lambda: os.listdir({str(d.parent)!r})):\n"
            "    try:\n        print(how())\n    except OSError as e:\n"
            "        print(type(e).__name__)\n"
        )
    res = run_program(code)
    assert res.error is None, res
    for d, _, secret in planted:
        assert secret not in res.stdout, d
        assert d.name not in res.stdout, d  # not even listed in its parent


def test_the_root_holds_only_the_allowlist():
    """`/` lists the system folders, /dev, /etc (the loader's cache), /proc, /tmp and the
    top folders of the Python installation's path; /dev only the allowed devices."""
    fs = layout()
    tops = {p.strip("/").split("/")[0] for p in fs.binds + [a for a, _ in fs.links]}
    code = (
        "import json, os\nfor d in ('/', '/dev', '/etc', '/tmp'):\n"
        "    print(json.dumps(os.listdir(d)))\nprint(json.dumps(os.path.basename(os.getcwd())))"
    )
    res = run_program(code)
    assert res.error is None, res
    root, dev, etc, tmp, work = map(json.loads, res.stdout.splitlines())
    assert set(root) <= tops | {"dev", "etc", "proc", "tmp"}, root
    assert not {"work", "opt", "srv", "var", "home", "mnt", "media"} & set(root)
    assert set(dev) <= {
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "shm",
        "fd",
        "stdin",
        "stdout",
        "stderr",
    }
    assert set(etc) <= {"ld.so.cache", "localtime"}
    if os.path.realpath("/tmp") == fs.tmp:  # the working directory is the only thing there
        assert tmp == [work], tmp


def test_ordinary_programs_still_run():
    """The standard library (extension modules too), a subprocess, the devices, time zones."""
    code = (
        "import bisect, collections, ctypes, datetime, decimal, fractions, functools, hashlib\n"
        "import heapq, itertools, json, math, random, re, sqlite3, ssl, string, zlib\n"
        "import subprocess, sys, zoneinfo\n"
        "print(subprocess.run(['sh', '-c', 'echo $((6 * 7))'], capture_output=True,"
        " text=True).stdout.strip())\n"
        "print(len(open('/dev/urandom', 'rb').read(8)), open('/dev/null').read() == '')\n"
        "print(zoneinfo.ZoneInfo('UTC').key, hashlib.sha256(b'').hexdigest()[:8])\n"
        "open('own.txt', 'w').write('ok')\nprint(open('own.txt').read())\n"
    )
    res = run_program(code, timeout_s=10)
    assert res.error is None, res
    assert res.stdout.splitlines() == ["42", "8 True", "UTC e3b0c442", "ok"]
