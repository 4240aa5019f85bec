"""The training loop's `on_log` (what W&B shows live): every optimizer step's loss, lr,
gradient norm and tokens/s and every ID-dev loss, on the main process only, the same in 1
and 2 processes (torchrun on CPU, as `accelerate launch` starts them)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "ft_log_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cache: Path, out: Path, procs: int) -> list[dict]:
    out.mkdir()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "ACCELERATE_USE_CPU": "true",
    }
    cmd = [sys.executable, str(WORKER), str(cache), str(out)]
    if procs > 1:
        cmd[1:1] = [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(procs),
            "--master_port",
            str(_free_port()),
        ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
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
