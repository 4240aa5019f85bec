"""Studies run by 2 CPU processes under `accelerate launch`, through the CLI, against one
process: DeepSpeed ZeRO-3 for real (DS_ACCELERATOR=cpu, gloo; the `deepspeed` extra that
scripts/setup.sh installs), a ZeRO-3 resume round trip, file-system decisions made once while
one process sees a stale view, and the process-group timeout.

The recipe is the smallest that trains both ways: an ICL arm, a LoRA arm and a full
fine-tuning arm with another batch size (each cell gets its own DeepSpeed micro-batch), 2
micro-batches accumulated per step, best-dev selection, a resume checkpoint every 2 steps.

The first test runs the `accelerate launch` command itself; the others fork the 2 processes
with the environment that command computes (see `start`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from forked import Group
from ranks import accelerate_ranks, free_port

from lab.study.cli import main

ROOT = Path(__file__).resolve().parents[2]
LORA, FULL, ICL = "lora_answer__b8__d0", "full_answer__b8__d0", "zero_shot__d0"


def write_recipe(
    path: Path, arms: tuple[str, ...] = ("zero_shot", "lora", "full"), **extra
) -> Path:
    all_arms = {
        "zero_shot": {"name": "zero_shot", "method": "icl", "format": "answer", "k": 0},
        "lora": {"name": "lora_answer", "method": "lora", "format": "answer"},
        "full": {"name": "full_answer", "method": "full", "format": "answer",
                 "train": {"lr": 3.0e-5, "batch_size": 8}},
    }  # fmt: skip
    r = {
        "name": "mp-small",
        "model": "tiny-random",
        "precision": "fp32",
        "task": {
            "name": "arithmetic",
            "seed": 0,
            "n_train": 32,
            "n_dev": 4,
            "n_test": 4,
            "params": {"ops": "+-"},
        },
        "seeds": [0],
        "budgets": [8],
        "train": {
            "steps": 6,
            "batch_size": 4,
            "grad_accum": 2,
            "lr": 1.0e-3,
            "eval_every": 2,
            "save_every": 2,
            "select": "best_dev",
            "max_grad_norm": 0.5,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        },
        "arms": [all_arms[a] for a in arms],
        "eval": {"batch_size": 4, "max_new_tokens": {"answer": 6, "cot": 12, "code": 12}},
        "tracking": {"mode": "disabled"},
        "smoke": {"train": {"steps": 6}},  # --smoke's defaults would make it 3
        **extra,
    }
    path.write_text(yaml.safe_dump(r))
    return path


def zero3_config(tmp: Path) -> Path:
    """accelerate_config_zero3.yaml as it ships, set to 2 CPU processes, no mixed precision."""
    c = yaml.safe_load((ROOT / "accelerate_config_zero3.yaml").read_text())
    c.update(num_processes=2, mixed_precision="no")
    c.pop("gpu_ids", None)
    path = tmp / "zero3.yaml"
    path.write_text(yaml.safe_dump(c))
    return path


def log_of(out: Path) -> Path:
    """Where the run writing to `out` logs (both processes; appended to by a rerun)."""
    return Path(f"{out}.log")


def start(
    recipe: Path,
    out: Path,
    cache: Path,
    config: Path | None = None,
    real_launcher: bool = False,
    **env_extra: str,
):
    """`accelerate launch` (ZeRO-3 with `config`, else DDP over gloo) of 2 processes running
    tests/launched_study.py (`python -m lab run` + the faults `env_extra` names). With
    `real_launcher`, the command itself starts them (new interpreters, through torchrun);
    otherwise they are forked with the environment accelerate's command computes
    (tests/ranks.py accelerate_ranks), which spares ~15 s of imports per run."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": str(ROOT),
        **env_extra,
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    launch = ["--main_process_port", str(free_port())]
    if config is not None:
        launch += ["--config_file", str(config)]
        env["DS_ACCELERATOR"] = "cpu"
    else:
        launch += ["--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
        launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
        env["ACCELERATE_USE_CPU"] = "1"
    script = [str(ROOT / "tests" / "launched_study.py"), "run", str(recipe), "--smoke"]
    script += ["--out", str(out), "--cache-dir", str(cache)]
    log = log_of(out)
    if not real_launcher:
        return accelerate_ranks(launch, script, env, log)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch, *script]
    with log.open("a") as f:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)


def stop(proc) -> None:
    """SIGKILL every process of the run at once: the forked ranks, or the launcher and every
    process under it (torchrun starts the workers in sessions of their own: killing the
    launcher's group would leave them running)."""
    if isinstance(proc, Group):
        proc.kill()
        return
    import psutil

    procs = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:  # ended meanwhile
            pass
    psutil.wait_procs(procs, timeout=30)


def finish(proc, out: Path, timeout: float = 600) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # processes that disagree hang in a collective
        stop(proc)
        rc = proc.wait()
    return rc, log_of(out).read_text(errors="replace")


def run(recipe: Path, out: Path, *args, **kwargs) -> str:
    """The study run to its end; checks that both processes ran under the launch meant
    (DeepSpeed with a config, else DDP over gloo). Its output."""
    rc, log = finish(start(recipe, out, *args, **kwargs), out)
    assert rc == 0, log[-4000:]
    kind = "DEEPSPEED" if kwargs.get("config") else "MULTI_CPU"
    setups = sorted([x for x in log.splitlines() if x.startswith("[launched]")][-2:])
    assert setups == [f"[launched] process {i} of 2: {kind}" for i in (0, 1)], log[-3000:]
    return log


def rows(out: Path) -> dict[tuple[str, ...], dict]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return {(r["cell"], r["variant"], r["split"], r["metric"]): r for r in map(json.loads, lines)}


def cell(out: Path, key: str) -> dict:
    return json.loads((out / "cells" / key / "cell.json").read_text())


def assert_rows_equal(out: Path, reference: Path) -> None:
    """Every exact-match row equal; other values (log p(gold)) equal up to float order."""
    got, ref = rows(out), rows(reference)
    assert got.keys() == ref.keys()
    for key, row in got.items():
        if key[3] == "exact_match":
            assert {k: v for k, v in row.items() if k != "value"} == {
                k: v for k, v in ref[key].items() if k != "value"
            }, key
        assert row["value"] == pytest.approx(ref[key]["value"], abs=1e-4), key
    for key in (LORA, FULL):
        a, b = cell(reference, key)["train"], cell(out, key)["train"]
        assert b["losses"] == pytest.approx(a["losses"], rel=1e-5)
        assert b["best_step"] == a["best_step"]
        assert b["trainable_params"] == a["trainable_params"] > 0
        assert b["total_params"] == a["total_params"] > 0
        assert b["flops"] == pytest.approx(a["flops"], rel=1e-9)
        assert b["processes"] == 2


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("recipe") / "mp.yaml")


@pytest.fixture(scope="module")
def one(recipe, tiny_cache, tmp_path_factory) -> Path:
    """The study in one process: this one (torch on one thread, tests/conftest.py; the recipe
    tracks nothing), which spares a second interpreter's imports."""
    out = tmp_path_factory.mktemp("one") / "out"
    argv = ["run", str(recipe), "--smoke", "--out", str(out), "--cache-dir", str(tiny_cache)]
    assert main([*argv, "--quiet"]) == 0
    return out


def test_zero3_two_processes_match_one(recipe, one, tiny_cache, tmp_path):
    """ZeRO-3 over 2 processes: the rows, losses, best-dev steps, parameter counts and FLOPs
    of one process. Before: evaluation ran on partitioned weights ("Padding_idx must be
    within num_embeddings"); accelerate counted 1 process in each (every one "main"); the
    recipe's accumulation, clipping and per-cell micro-batch never reached DeepSpeed."""
    out = tmp_path / "zero3"
    run(recipe, out, tiny_cache, config=zero3_config(tmp_path), real_launcher=True)
    assert_rows_equal(out, one)


def test_zero3_resume_round_trip(recipe, one, tiny_cache, tmp_path):
    """A ZeRO-3 study killed right after the LoRA cell's first resume checkpoint resumes from
    it (DeepSpeed's engine takes load_module_strict, not strict: TypeError before) and ends
    with one process's results. Rank 1 does not see the resume folder on the rerun: which
    checkpoint to resume is decided by the main process alone."""
    out, config = tmp_path / "zero3", zero3_config(tmp_path)
    proc = start(recipe, out, tiny_cache, config=config)
    marker = f"cells/{LORA}/resume/step-*"
    while not list(out.glob(marker)):
        if proc.poll() is not None:
            log = finish(proc, out)[1]
            pytest.fail(f"ended before {marker} appeared:\n{log[-3000:]}")
        time.sleep(0.005)
    stop(proc)
    assert not (out / "cells" / LORA / "checkpoint" / "train_result.json").exists()
    log = run(recipe, out, tiny_cache, config=config, FTLAB_TEST_HIDE=f"*/{LORA}/resume")
    resumed = [x for x in log.splitlines() if "resuming training from step" in x]
    assert resumed and "step 2/6" in resumed[0], log[-3000:]
    assert_rows_equal(out, one)


def test_file_system_decisions_are_the_main_processs(tiny_cache, tmp_path):
    """A cell whose training and predictions are stored, while rank 1's view of the shared
    folder lacks them (a stale NFS cache): both processes reuse them, as the main process
    decides (before, rank 1 trained while rank 0 evaluated: mismatched collectives)."""
    recipe = write_recipe(tmp_path / "ddp.yaml", arms=("zero_shot", "lora"))
    out = tmp_path / "ddp"
    run(recipe, out, tiny_cache)
    first = rows(out)
    (out / "cells" / LORA / "cell.json").unlink()  # done but for its record: rerun the cell
    (out / "results.jsonl").unlink()
    trained = out / "cells" / LORA / "checkpoint" / "train_result.json"
    stamp = trained.stat().st_mtime_ns
    hide = f"*/{LORA}/checkpoint/train_result.json,*/{LORA}/predictions/*"
    log = run(recipe, out, tiny_cache, FTLAB_TEST_HIDE=hide)
    assert "trained before" in log and "predictions of an interrupted run reused" in log
    assert trained.stat().st_mtime_ns == stamp  # not trained again
    assert rows(out) == first


def test_process_group_timeout_covers_the_main_processs_work(tiny_cache, tmp_path):
    """`distributed.timeout_s` sets how long a process waits in a collective: with the main
    process busy for 25 s after a cell (its W&B work), 10 s ends the run there (its
    predictions were written, its cell record not) and 300 s lets a 15 s wait finish; the
    setting is recorded with the recipe in study.json."""
    short = write_recipe(
        tmp_path / "short.yaml", arms=("zero_shot",), distributed={"timeout_s": 10}
    )
    proc = start(short, tmp_path / "short", tiny_cache, FTLAB_TEST_MAIN_DELAY_S="25")
    rc, log = finish(proc, tmp_path / "short")
    assert rc != 0
    cell_dir = tmp_path / "short" / "cells" / ICL
    assert list(cell_dir.glob("predictions/*/test.jsonl")), log[-3000:]
    assert not (cell_dir / "cell.json").exists()
    assert "timed out" in log.lower() or "timeout" in log.lower(), log[-3000:]
    long = write_recipe(tmp_path / "long.yaml", arms=("zero_shot",), distributed={"timeout_s": 300})
    run(long, tmp_path / "long", tiny_cache, FTLAB_TEST_MAIN_DELAY_S="15")  # over the short 10 s
    study = json.loads((tmp_path / "long" / "study.json").read_text())
    assert study["recipe"]["distributed"] == {"timeout_s": 300.0}
