"""bench/gpu_check.sh --cpu: the GPU check's CPU mode (tiny model) runs end to end, as on the
GPU machine, without the packages that machine lacks (datasets, wandb, gguf are made
unimportable here), and reports every phase."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Makes `datasets`, `wandb` and `gguf` unimportable (and invisible to find_spec), as on the
# GPU machine; inherited by every process the check starts (PYTHONPATH).
BLOCK = """
import importlib.util
import sys

BLOCKED = ("datasets", "wandb", "gguf")
_find_spec = importlib.util.find_spec


def find_spec(name, package=None):
    if name.split(".")[0] in BLOCKED:
        return None
    return _find_spec(name, package)


importlib.util.find_spec = find_spec


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Block())
"""


def test_gpu_check_cpu_mode_without_datasets_wandb_gguf(tmp_path):
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": str(block),
        "OUT": str(out),
        "GPU_CHECK_DIR": str(tmp_path / "work"),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    status = {name: r["status"] for name, r in report["phases"].items()}
    assert status == {
        "env": "ok",
        "matmul": "ok",
        "build": "ok",
        "tiny": "ok",
        "lora": "skipped",
        "full": "skipped",
        "fsdp": "skipped",
        "agree": "ok",
        "split": "ok",  # bench/gpu_split.py on the CPU kernel
    }
    assert "| tiny | ok |" in proc.stdout  # the summary table
    ph = report["phases"]
    assert ph["matmul"]["figures"]["bf16_tflops"] > 0
    cells = ph["tiny"]["figures"]["cells"]
    assert set(cells) == {"lora", "full"}
    for c in cells.values():
        assert c["train_tokens_per_s"] > 0 and c["train_flops_per_s"] > 0
        assert c["eval_examples"] == 2 * 4 * 8 or c["eval_examples"] == 4 * 8  # best + last
        assert c["eval_examples_per_s"] > 0
    assert ph["tiny"]["figures"]["peak"]["cpu_max_rss"] > 0
    agree = ph["agree"]["figures"]
    assert agree["examples"] == 4 * 16
    assert 0 <= agree["same_pred"] <= 1 and agree["gold_logprob_max_abs_diff"] >= 0
    assert set(agree["eval_examples_per_s"]) == {"fp32", "bf16"}
    assert (out / "gpu_check_tiny.log").is_file()
