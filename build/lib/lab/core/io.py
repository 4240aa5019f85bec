"""Atomic file writes: a result file is either absent or complete, never half-written.

Write to a temporary file in the same directory, fsync it, rename it over the target, fsync
the directory (so the rename itself survives a power loss). A writer killed mid-way leaves
only a `.NAME.XXXX.tmp` file, which `remove_stale_tmp` deletes on the next run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; results are for sharing
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def fsync_dir(path: str | Path) -> None:
    """Flush a directory entry (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | Path, files: bool = True) -> None:
    """fsync every file (if `files`) and directory under `root`, then `root` itself."""
    root = Path(root)
    for dirpath, _dirs, names in os.walk(root):
        if files:
            for name in names:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(dirpath)


def create_json_exclusive(path: str | Path, obj: Any) -> bool:
    """Write `obj` to `path` only if no file is there, atomically: a temporary file is
    hard-linked into place, which fails if another writer got there first. False (nothing
    written) if `path` exists. On a file system without hard links: an atomic replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network or FUSE file systems)
            if path.exists():
                return False
            os.replace(tmp, path)
        fsync_dir(path.parent)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def remove_stale_tmp(
    root: str | Path, skip: tuple[str, ...] = (), min_age_s: float = 0.0
) -> list[Path]:
    """Delete the temporary files (`.NAME.XXXX.tmp`) and checkpoint directories
    (`.tmp-step-*`) that a killed writer left under `root`, except under the subfolders
    named in `skip` and those younger than `min_age_s` (a live writer's, when other workers
    share `root`); returns what was removed."""
    import shutil
    import time

    root = Path(root)
    if not root.is_dir():
        return []
    stale = [p for p in root.rglob(".*.tmp") if p.is_file()]
    stale += [p for p in root.rglob(".tmp-*") if p.is_dir()]
    skip = ("wandb", *skip)  # wandb: W&B's own files
    stale = [p for p in stale if not set(skip) & set(p.relative_to(root).parts)]
    if min_age_s:
        now = time.time()
        stale = [p for p in stale if p.exists() and now - p.stat().st_mtime >= min_age_s]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale
