"""Shared bench helpers: machine description, commit, load, medians, result files.

Benchmarks print figures; they are not tests. Every pair (this lab vs the reference tool)
runs interleaved in one process (A, B, A, B, ...) on the same loaded model, so that the
noise of a shared machine hits both sides alike; the figures are medians over repeats.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from lab.core.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "runs" / "bench"
MODEL = "smollm2-135m-instruct"


DTYPES = ("fp32", "bf16")


def torch_dtype(name: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def matmul_rate(
    dtype: str = "fp32", n: int = 2048, seconds: float = 1.0, repeats: int = 5
) -> float:
    """Median FLOP/s of an n x n matmul in `dtype` at the current torch thread count, each
    sample ~`seconds` long (the rate each phase's achieved FLOP/s is compared with)."""
    import torch

    a = torch.randn(n, n).to(torch_dtype(dtype))
    b = torch.randn(n, n).to(torch_dtype(dtype))
    torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        reps = 0
        t0 = time.perf_counter()
        while True:
            torch.mm(a, b)
            reps += 1
            if reps % 4 == 0 and time.perf_counter() - t0 > seconds:
                break
        rates.append(2 * n**3 * reps / (time.perf_counter() - t0))
    return median(rates)


def read_bandwidth(mb: int = 512, repeats: int = 5) -> float:
    """Median bytes/s of streaming a `mb` MB fp32 tensor through a reduction at the current
    torch thread count: the rate a decode step reads the weights at (far larger than any
    cache, like the weights)."""
    import torch

    x = torch.ones(mb * 2**20 // 4)
    x.sum()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.sum()
        rates.append(x.numel() * 4 / (time.perf_counter() - t0))
    return median(rates)


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_lab_model(cache_dir: str | None, device: str = "cpu") -> tuple[Any, Any, Any]:
    """(resolved model, model, tokenizer) through lab.study.models, as a study loads it."""
    from lab.study.models import load_model, resolve_model

    resolved = resolve_model(MODEL, cache_dir)
    model, tok = load_model(resolved.path, device=device)
    return resolved, model, tok


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def header(name: str) -> dict[str, Any]:
    info = {"bench": name, "commit": commit(), "machine": machine(), "load_start": load_avg()}
    print(f"[{name}] commit {info['commit']} | {info['machine']} | load avg {info['load_start']}")
    return info


def save(name: str, info: dict[str, Any]) -> Path:
    info["load_end"] = load_avg()
    info["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    path = OUT / f"{name}.json"
    atomic_write_json(path, info)
    print(f"[{name}] load avg at end {info['load_end']}; raw figures: {path}")
    return path


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
