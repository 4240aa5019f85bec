"""`python -m lab ARGS` as `accelerate launch` starts it, with test-only faults injected by the
environment (tests/study/test_multiprocess_study.py):

- FTLAB_TEST_HIDE: comma-separated fnmatch patterns; on rank 1 only, paths matching one do not
  exist (is_file, is_dir, exists: False): the stale view of a shared file system that one
  node's NFS cache can give.
- FTLAB_TEST_MAIN_DELAY_S: the main process sleeps that long in `Tracker.log_cell` (its W&B
  work after a cell, which the other processes wait for at a barrier).
"""

from __future__ import annotations

import fnmatch
import os
import pathlib
import sys
import time


def hide(patterns: list[str]) -> None:
    for name in ("is_file", "is_dir", "exists"):
        real = getattr(pathlib.Path, name)

        def hidden(self, *a, _real=real, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            if any(fnmatch.fnmatch(str(self), p) for p in patterns):
                return False
            return _real(self, *a, **k)

        setattr(pathlib.Path, name, hidden)


def delay_main(seconds: float) -> None:
    from lab.report.tracking import Tracker

    real = Tracker.log_cell

    def slow(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        time.sleep(seconds)
        return real(self, *a, **k)

    Tracker.log_cell = slow


if __name__ == "__main__":
    if os.environ.get("RANK") == "1" and os.environ.get("FTLAB_TEST_HIDE"):
        hide(os.environ["FTLAB_TEST_HIDE"].split(","))
    if os.environ.get("FTLAB_TEST_MAIN_DELAY_S"):
        delay_main(float(os.environ["FTLAB_TEST_MAIN_DELAY_S"]))
    from lab.study.cli import main

    sys.exit(main(sys.argv[1:]))
