"""The sharded phases of the GPU check (`bash bench/gpu_check.sh --sharded`): the ~0.47B model
under the three multi-GPU templates, on however many GPUs the machine has (1 on the lent
H100/H200: the code paths, not the sharding's speed-up):

  zero3       full fine-tuning under accelerate_config_zero3.yaml (DeepSpeed ZeRO-3;
              DeepSpeed installed from the .whl folder: a wheel built without its compiled
              ops, `bash bench/gpu_wheels.sh`), the recipe's accumulation and clipping
              filled in by the lab, evaluation on whole weights
  fsdp_lora   LoRA under accelerate_config_fsdp.yaml (FSDP2)
  fsdp_resume full fine-tuning under FSDP2, killed right after its first resume
              checkpoint and run again: it must resume from it ("resuming training from
              step") and finish
Each phase's peak GPU memory (torch's max allocated, the launched process) is set against
`lab estimate`'s prediction for the recipe and template (lab/study/memory.py plan_memory):
`peak_vs_estimate` = measured / predicted (the goal: within 15%).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def predicted_peak(rec: dict[str, Any], strategy: str, gpus: int) -> float | None:
    """`lab estimate`'s peak bytes per GPU for the recipe (its largest cell)."""
    from lab.core.recipe import parse_recipe
    from lab.study.memory import plan_memory

    rows = plan_memory(parse_recipe(rec), gpus=gpus, strategy=strategy)
    return max(r.peak for r in rows) if rows else None


def with_estimate(res: dict[str, Any], rec: dict[str, Any], strategy: str) -> dict[str, Any]:
    import torch

    gpus = max(1, torch.cuda.device_count())
    try:
        pred = predicted_peak(rec, strategy, gpus)
    except Exception as e:  # noqa: BLE001 - reported beside the figures, not fatal
        res["estimate_error"] = f"{type(e).__name__}: {e}"[:300]
        return res
    peak = (res.get("peak") or {}).get("gpu_max_allocated")
    res["estimate_peak"] = pred
    if pred and peak:
        res["peak_vs_estimate"] = peak / pred
    return res


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it (torchrun starts its workers in
    sessions of their own: a process-group kill would leave them running)."""
    import psutil

    procs = [*psutil.Process(pid).children(recursive=True), psutil.Process(pid)]
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:  # ended meanwhile
            pass
    psutil.wait_procs(procs, timeout=30)


def launch_cmd(config: str, work: Path, processes: int) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / config)]
    cmd += ["--num_processes", str(processes), "--num_machines", "1"]
    return cmd + [
        str(ROOT / "bench" / "gpu_study.py"),
        str(work / "recipe.yaml"),
        str(work / "out"),
    ]


def phase_zero3(gc: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    if ctx["cpu"]:
        raise gc.Skip(
            "--cpu: the ZeRO-3 study on CPU processes is tests/study/test_multiprocess_study.py"
        )
    try:
        import deepspeed  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"DeepSpeed is not installed ({e}); run bench/gpu_wheels.sh") from None
    rec = gc.recipe("zero3", ctx["models"]["0.5b"], [gc.FULL], 30, 32, 256, 64)
    rec["train"]["grad_accum"] = 2  # reaches DeepSpeed through the lab (train/zero3.py)
    res = gc.launch(ctx, "zero3", rec, "accelerate_config_zero3.yaml", min(170, gc.left()))
    return with_estimate(res, rec, "zero3")


def phase_fsdp_lora(gc: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    if ctx["cpu"]:
        raise gc.Skip("--cpu: accelerate runs FSDP on accelerators only")
    rec = gc.recipe("fsdp_lora", ctx["models"]["0.5b"], [gc.LORA], 30, 32, 256, 64)
    res = gc.launch(ctx, "fsdp_lora", rec, "accelerate_config_fsdp.yaml", min(150, gc.left()))
    return with_estimate(res, rec, "fsdp")


def phase_fsdp_resume(gc: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    """Full FT under FSDP2, SIGKILLed at its first resume checkpoint, then run again."""
    if ctx["cpu"]:
        raise gc.Skip("--cpu: accelerate runs FSDP on accelerators only")
    import torch

    rec = gc.recipe("fsdp_resume", ctx["models"]["0.5b"], [gc.FULL], 30, 32, 256, 64)
    rec["train"]["save_every"] = 10
    work = ctx["work"] / "fsdp_resume"
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipe.yaml").write_text(__import__("json").dumps(rec, indent=1))
    cmd = launch_cmd("accelerate_config_fsdp.yaml", work, max(1, torch.cuda.device_count()))
    env = {
        **os.environ,
        "FTLAB_CACHE": str(ctx["work"] / "cache"),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "GPU_STUDY_LOG": "1",
    }
    deadline = time.time() + min(120, gc.left())
    with open(work / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        while not list((work / "out").glob("cells/*/resume/step-*")):
            if proc.poll() is not None or time.time() > deadline:
                kill_tree(proc.pid)
                raise RuntimeError(f"no resume checkpoint appeared (log {work / 'log.txt'})")
            time.sleep(0.05)
        kill_tree(proc.pid)
        proc.wait()
    os.environ["GPU_STUDY_LOG"] = "1"  # gc.run passes this environment on
    try:
        gc.run(cmd, work / "log2.txt", min(170, gc.left()), ctx)
    finally:
        del os.environ["GPU_STUDY_LOG"]
    if "resuming training from step" not in (work / "log2.txt").read_text(errors="replace"):
        raise RuntimeError("the rerun did not resume from the checkpoint")
    res = gc.figures(ctx, work / "out")
    res["resumed"] = True
    return with_estimate(res, rec, "fsdp")


PHASES = ["zero3", "fsdp_lora", "fsdp_resume"]


def phases(gc: Any) -> list[tuple[str, Any]]:
    """(name, phase) pairs bound to bench/gpu_check.py's helpers `gc`."""
    fns = {"zero3": phase_zero3, "fsdp_lora": phase_fsdp_lora, "fsdp_resume": phase_fsdp_resume}
    return [(name, lambda ctx, f=fns[name]: f(gc, ctx)) for name in PHASES]
