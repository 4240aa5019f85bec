"""Crash safety, determinism and distributed parity of the smoke study, through the CLI in a
subprocess: killed (SIGKILL) or stopped (Ctrl-C) at several points, a rerun of the same
command must end with exactly the results of an uninterrupted run.

The study: the quickstart recipe with --smoke, restricted to a LoRA arm (with dropout, so
the RNG state matters on resume), a full fine-tuning arm and an 8-shot ICL arm, one data
seed, no budget axis; 12 training
steps with a resume checkpoint every 4. Interruption points are observed from outside (a
file appearing in OUT), not by hooks in the code."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from forked import Forked
from ranks import free_port
from wandb_records import run_summary

from lab.core.recipe import load_recipe
from lab.report.tracking import Tracker
from lab.study.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
LORA, FULL, ICL = "lora_answer__d0", "full_answer__d0", "icl_kshot__d0"


def write_recipe(path: Path, lora_dropout: float) -> Path:
    r = yaml.safe_load(QUICKSTART.read_text())
    r["arms"] = [a for a in r["arms"] if a["name"] in ("lora_answer", "full_answer", "icl_kshot")]
    r["seeds"] = [0]
    for key in ("budgets", "profiles"):
        r.pop(key, None)
    r["train"]["lora"]["dropout"] = lora_dropout
    r["train"]["select"] = "best_dev"  # dev losses and a best checkpoint to compare
    r["smoke"] = {"train": {"steps": 12, "eval_every": 4, "save_every": 4}}
    path.write_text(yaml.safe_dump(r))
    return path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("recipe") / "reliability.yaml", 0.1)


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    env.pop("WANDB_SERVICE", None)  # the test process's own W&B service is not theirs
    return env


def start(recipe: Path, out: Path, cache: Path, launcher: list[str] | None = None):
    """`python -m lab run RECIPE --smoke` in a process of its own: forked with the lab already
    imported (tests/forked.py), or under `launcher` (a new interpreter)."""
    args = ["-m", "lab", "run", str(recipe), "--smoke"]
    args += ["--out", str(out), "--cache-dir", str(cache)]
    log = open(f"{out}.log", "a")  # noqa: SIM115 - closed by finish()
    log.write(f"\n=== {' '.join(args)}\n")
    log.flush()
    if launcher is None:
        proc = Forked(args, _env(), ROOT, Path(log.name))
    else:
        proc = subprocess.Popen(
            [*launcher, *args], cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT
        )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def finish(proc, timeout: float = 600) -> tuple[int, str]:
    rc = proc.wait(timeout=timeout)
    proc.log.close()
    text = Path(proc.log.name).read_text(errors="replace")
    return rc, text.rsplit("\n=== ", 1)[-1]


def run(recipe: Path, out: Path, cache: Path) -> str:
    rc, log = finish(start(recipe, out, cache))
    assert rc == 0, log[-3000:]
    return log


def run_here(recipe: Path, out: Path, cache: Path) -> None:
    """The study in this process (torch on one thread, tests/conftest.py), W&B offline: spares
    a second interpreter's imports where the test needs no process of its own."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.delenv("WANDB_API_KEY", raising=False)
    try:
        argv = ["run", str(recipe), "--smoke", "--out", str(out), "--cache-dir", str(cache)]
        assert main([*argv, "--quiet"]) == 0
    finally:
        mp.undo()


def interrupt_at(recipe: Path, out: Path, cache: Path, marker: str, sig: int) -> tuple[int, str]:
    """Run the study and send `sig` as soon as a path matching `marker` exists in OUT."""
    proc = start(recipe, out, cache)
    while not list(out.glob(marker)):
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {marker} appeared:\n{finish(proc)[1][-3000:]}")
        time.sleep(0.005)
    proc.send_signal(sig)
    return finish(proc)


def outputs(out: Path) -> dict[str, str]:
    """results.jsonl and every predictions file, by path relative to OUT."""
    files = [out / "results.jsonl", *sorted(out.glob("cells/*/predictions/*/*.jsonl"))]
    return {str(f.relative_to(out)): f.read_text() for f in files}


def assert_same_results(out: Path, reference: Path) -> None:
    """Identical results, predictions, training and ID-dev losses."""
    assert outputs(out) == outputs(reference)
    for cell in (LORA, FULL):
        a, b = (
            json.loads((o / "cells" / cell / "cell.json").read_text()) for o in (reference, out)
        )
        assert a["train"]["losses"] == b["train"]["losses"]
        assert a["train"]["dev_losses"] == b["train"]["dev_losses"]


@pytest.fixture(scope="module")
def reference(recipe, tmp_path_factory, tiny_cache) -> Path:
    """The uninterrupted run, in this process (the runs compared with it are subprocesses:
    the same results from another interpreter)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run_here(recipe, out, tiny_cache)
    return out


def test_same_recipe_and_seeds_give_identical_results(recipe, reference, tmp_path, tiny_cache):
    again = tmp_path / "again"
    run(recipe, again, tiny_cache)
    assert_same_results(again, reference)


def test_interrupted_study_resumes_to_identical_results(recipe, reference, tmp_path, tiny_cache):
    out = tmp_path / "out"
    lora, full = out / "cells" / LORA, out / "cells" / FULL

    # 1. SIGKILL during LoRA training, right after its first resume checkpoint.
    rc, _ = interrupt_at(recipe, out, tiny_cache, f"cells/{LORA}/resume/step-*", signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert not (lora / "checkpoint" / "train_result.json").exists()  # it was training

    # 2. Ctrl-C during full fine-tuning: clean stop, one-line message, exit code 130.
    rc, log = interrupt_at(recipe, out, tiny_cache, f"cells/{FULL}/resume/step-*", signal.SIGINT)
    assert rc == 130, log[-3000:]
    errors = [line for line in re.split(r"[\r\n]", log) if line.startswith("error:")]
    assert errors == [
        "error: stopped by Ctrl-C; finished cells and the last training checkpoint are kept: "
        "rerun the same command to resume"
    ]
    assert "resuming training from step 4/12" in log  # the LoRA cell resumed mid-training
    assert (lora / "cell.json").is_file() and not (lora / "resume").exists()
    assert not (full / "checkpoint" / "train_result.json").exists()

    # 3. SIGKILL during the evaluation of the full FT cell (after its training resumed).
    marker = f"cells/{FULL}/predictions/best/test.jsonl"
    rc, log = interrupt_at(recipe, out, tiny_cache, marker, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert "resuming training from step" in log
    assert not (full / "cell.json").exists()

    # 4. SIGKILL while the results are written (results.jsonl is there, the report not yet).
    rc, log = interrupt_at(recipe, out, tiny_cache, "results.jsonl", signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert "best test: predictions of an interrupted run reused" in log  # eval resumed per split
    assert not (out / "report" / "index.html").exists()

    # 5. The same command once more: the same results as the uninterrupted run.
    run(recipe, out, tiny_cache)
    assert_same_results(out, reference)
    assert (out / "report" / "index.html").is_file()
    assert not list(out.glob("cells/*/resume")), "resume state is removed once a cell is done"
    assert not [p for p in out.rglob("*.tmp") if "wandb" not in p.parts]

    # W&B: one run id per cell (+ the summary), deterministic; a resumed cell reuses its id.
    r = load_recipe(recipe, smoke=True)
    tracker = Tracker(r.tracking, r.name, out, {}, id_salt=r.hash())
    runs = [run_summary(d) for d in sorted((out / "wandb").glob("offline-run-*"))]
    by_id: dict[str, list[dict]] = {}
    for s in runs:
        by_id.setdefault(s["id"], []).append(s)
    assert set(by_id) == {tracker.run_id(k) for k in (LORA, FULL, ICL, "summary")}
    assert [s["exit_codes"] for s in by_id[tracker.run_id(LORA)]] == [[], [0]]  # killed, resumed
    full_runs = [s["exit_codes"] for s in by_id[tracker.run_id(FULL)]]
    assert full_runs == [[130], [], [0]]  # Ctrl-C marks it failed; SIGKILL leaves no exit
    assert all(runs[-1]["exit_codes"] == [0] for runs in by_id.values())


def test_two_processes_match_one(tmp_path, tiny_cache):
    """`accelerate launch` with 2 CPU processes (gloo) vs 1 process: every exact-match row and
    every generation equal; FT losses (rel 1e-5) and log p(gold) (abs 1e-4) equal up to
    float summation order (the loss is the step's token-weighted mean, so the gradient is
    the same; evaluation is sharded, eval/parallel.py); only the main process writes files
    and W&B runs. LoRA dropout is 0 here: with dropout, each process draws its own masks,
    so values agree only in distribution."""
    recipe = write_recipe(tmp_path / "ddp.yaml", 0.0)
    reference = tmp_path / "one"
    run_here(recipe, reference, tiny_cache)
    out = tmp_path / "ddp"
    port = str(free_port())  # other studies may be running on this machine
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launcher += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launcher += ["--dynamo_backend", "no", "--main_process_port", port]
    os.environ["ACCELERATE_USE_CPU"] = "1"  # read by the launched processes (see _env)
    try:
        proc = start(recipe, out, tiny_cache, launcher=launcher)
    finally:
        del os.environ["ACCELERATE_USE_CPU"]
    rc, log = finish(proc)
    assert rc == 0, log[-3000:]
    rows = {
        (r["cell"], r["variant"], r["split"], r["metric"]): r
        for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    ref = {
        (r["cell"], r["variant"], r["split"], r["metric"]): r
        for r in map(json.loads, (reference / "results.jsonl").read_text().splitlines())
    }
    assert rows.keys() == ref.keys()
    for key, row in rows.items():
        if key[3] == "exact_match":
            assert row == ref[key], key
        else:
            assert row["value"] == pytest.approx(ref[key]["value"], abs=1e-4), key
    for f in sorted(reference.glob("cells/*/predictions/*/*.jsonl")):
        one = f.read_text().splitlines()
        two = (out / f.relative_to(reference)).read_text().splitlines()
        assert [json.loads(x)["generation"] for x in one] == [
            json.loads(x)["generation"] for x in two
        ]
    for cell in (LORA, FULL):
        a, b = (
            json.loads((o / "cells" / cell / "cell.json").read_text()) for o in (reference, out)
        )
        assert a["train"]["losses"] == pytest.approx(b["train"]["losses"], rel=1e-5)
        assert a["train"]["best_step"] == b["train"]["best_step"]
        assert a["train"]["flops"] == pytest.approx(b["train"]["flops"], rel=1e-9)
        assert b["train"]["processes"] == 2
    assert len(list((out / "wandb").glob("offline-run-*"))) == 4  # 3 cells + summary, once
