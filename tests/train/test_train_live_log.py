"""The training loop's `on_log` (what W&B shows live): every optimizer step's loss, lr,
gradient norm and tokens/s and every ID-dev loss, on the main process only, the same in 1
and 2 processes (the ranks `accelerate launch` starts, on CPU: tests/ranks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ranks import run_ranks


def _run(cache: Path, out: Path, procs: int) -> list[dict]:
    out.mkdir()
    run_ranks("ft_log_worker.py", cache, out, procs=procs)
    return [json.loads((out / f"rank{i}.json").read_text()) for i in range(procs)]


def test_on_log_is_called_live_on_the_main_process_only(tiny_cache, tmp_path):
    (one,) = _run(tiny_cache, tmp_path / "one", 1)
    main, other = _run(tiny_cache, tmp_path / "two", 2)
    assert main["world"] == other["world"] == 2
    assert other["calls"] == []  # rank 1 never logs
    for r in (one, main):
        steps = [c for c in r["calls"] if "train/loss" in c]
        assert [c["train/step"] for c in steps] == [1, 2, 3]
        assert [c["train/loss"] for c in steps] == r["losses"]
        assert [c["train/lr"] for c in steps] == pytest.approx([1e-3, 2e-3 / 3, 1e-3 / 3])
        assert all(c["train/grad_norm"] > 0 and c["train/tokens_per_s"] > 0 for c in steps)
        dev = [[c["train/step"], c["dev/loss"]] for c in r["calls"] if "dev/loss" in c]
        assert dev == [list(x) for x in r["dev_losses"]] and [s for s, _ in dev] == [2, 3]
        # each dev loss comes right after its step's training metrics
        order = [("dev" if "dev/loss" in c else "train", c["train/step"]) for c in r["calls"]]
        assert order == [("train", 1), ("train", 2), ("dev", 2), ("train", 3), ("dev", 3)]
    assert [c["train/loss"] for c in main["calls"] if "train/loss" in c] == pytest.approx(
        [c["train/loss"] for c in one["calls"] if "train/loss" in c], rel=1e-4
    )  # the same global loss, whatever the process count
