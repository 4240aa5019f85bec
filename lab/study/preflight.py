"""Checks of the file system, run before anything is written: a mistake found here costs
seconds, not the cells that ran before it surfaced mid-study. (What fits the model's context
is checked by lab/study/context.py.)"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lab.core.errors import LabError


def check_writable(out: Path) -> None:
    """OUT can be created and written; raises before anything is written if not."""
    out = Path(out)
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise LabError(
            f"output dir '{out}' cannot be created: '{parent}' is a file; choose another --out"
        )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise LabError(
            f"output dir '{out}' is not writable ({e.strerror or type(e).__name__}); choose "
            "another --out or fix its permissions"
        ) from None
