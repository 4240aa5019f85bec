"""What a sandboxed program sees of the file system: an allowlist (eval/sandbox.py runs the
program; eval/sandbox_child.py builds this view inside its mount namespace).

The program's root is a fresh tmpfs holding only:
- the Python installation the lab runs on: its interpreter's folder, standard library,
  extension modules (lib-dynload) and the folder of libpython, at the same paths;
- the system's programs and shared libraries (`SYSTEM`: /usr/bin, /usr/lib, ... and the
  /bin, /lib, ... links to them), the dynamic loader's cache and the time zone;
- a few devices (`DEVICES`: /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom) and
  the usual /dev/fd, /dev/std* links;
- a fresh /proc of the program's PID namespace, empty /tmp and /dev/shm;
- the program's working directory (a tmpfs capped in bytes and files, the one writable
  place), at its path under the lab's temp folder.

Everything is read-only and nosuid. Nothing else of the host is there: not the project, its
sibling folders, /home, /root, /opt, /srv, /mnt, /var, /etc beyond the loader's cache, nor
any shared data. Where one of the user's folders (home, the project, the working or temp
folder) lies inside an allowed folder (say a project under /usr/lib), it is covered by an
empty tmpfs, and any part of the Python installation inside it is mounted back on top.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from dataclasses import dataclass

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM = (
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libx32",
    "/usr/libexec",
    "/usr/share/zoneinfo",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/localtime",
)
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


@dataclass(frozen=True)
class Layout:
    binds: list[str]  # host paths mounted (read-only) at the same path, outermost only
    links: list[tuple[str, str]]  # (path, target): symbolic links as on the host
    hide: list[str]  # user folders inside a bound folder: covered by an empty tmpfs
    keep: list[str]  # parts of the Python installation inside a covered folder: bound back
    tmp: str  # the lab's temp folder (real path): the working directory is made under it


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost(paths: list[str]) -> list[str]:
    paths = sorted(set(paths), key=len)
    return [p for i, p in enumerate(paths) if not any(_under(p, q) for q in paths[:i])]


@functools.cache  # the interpreter does not change while the lab runs
def python_paths() -> list[str]:
    """The folders of the Python installation the lab runs on (real paths): the interpreter's,
    the standard library, lib-dynload, and libpython's (from this process's own mappings)."""
    paths = [
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(os.path.realpath(os.__file__)),
    ]
    paths += [os.path.realpath(p) for p in sys.path if p.endswith("lib-dynload")]
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                name = line.rstrip("\n").split(maxsplit=5)[-1]
                if os.path.basename(name).startswith("libpython") and name.startswith("/"):
                    paths.append(os.path.dirname(os.path.realpath(name)))
    except OSError:
        pass
    return _outermost([p for p in paths if os.path.isdir(p)])


def layout() -> Layout:
    """The allowlist on this host, now."""
    tmp = os.path.realpath(tempfile.gettempdir())
    python = list(python_paths())
    binds, links = list(python), []
    for p in (*SYSTEM, *DEVICES):
        if os.path.islink(p):
            links.append((p, os.readlink(p)))
        elif os.path.exists(p) and os.path.realpath(p) == p:
            binds.append(p)
    binds = _outermost(binds)
    links = [(p, t) for p, t in links if not any(_under(p, b) for b in binds)]
    users = [os.environ.get("HOME"), PROJECT_ROOT, os.getcwd(), tmp]
    users = [os.path.realpath(p) for p in users if p and os.path.isdir(p)]
    hide = _outermost(
        [p for p in users if p != "/" and any(_under(p, b) and p != b for b in binds)]
    )
    keep = [k for k in python if any(_under(k, h) for h in hide)]
    return Layout(binds, links, hide, keep, tmp)
