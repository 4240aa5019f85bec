"""Several `lab run` workers on one --out (lab/study/claims.py): they share the cells, each cell is
done once, the results equal one worker's, and the cell of a killed worker is finished by
the others. Real processes on the tiny random model."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.core.io import read_jsonl
from lab.study import claims
from lab.study.cli import main

ROOT = Path(__file__).resolve().parents[2]
RECIPE: dict[str, Any] = {
    "name": "workers",
    "model": "tiny-random",
    "seeds": [0, 1],
    "task": {"n_train": 32, "n_dev": 4, "n_test": 3},
    "train": {"steps": 40, "batch_size": 4, "save_every": 5},  # LoRA cells of a few seconds
    "eval": {"batch_size": 4, "max_new_tokens": {"answer": 4, "cot": 6, "code": 6}},
    "tracking": {"mode": "disabled"},
    "arms": [{"name": "zs", "method": "icl"}, {"name": "lora", "method": "lora"}],
}
N_CELLS = 1 + 2  # zs once, lora per data seed
CELL_START = re.compile(r"\[lab\] cell \d+/\d+ (\S+) \(")  # "[lab] cell 2/3 lora__d0 (lora..."


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "r.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def one_worker(recipe, tiny_cache) -> Path:
    """The study run by one plain worker."""
    out = recipe.parent / "one"
    args = ["run", str(recipe), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"]
    assert main(args) == 0
    return out


def _start(recipe: Path, out: Path, cache: Path, log: Path) -> int:
    """A worker: `lab run` in a forked process (a real, separate process; forked rather than
    started afresh to skip the seconds of importing torch), its output in `log`."""
    argv = ["run", str(recipe), "--out", str(out), "--cache-dir", str(cache)]
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        # torch's intra-op thread pool, inherited from the parent, is rebuilt lazily by the
        # first thread that needs it; when several do at once (transformers loads weights on
        # a thread pool) torch can fail with "Invalid thread pool!" (25 of 100 forked
        # children in a reproduction). Rebuild it here, on the child's only thread, first.
        import torch

        torch.set_num_threads(torch.get_num_threads())
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.update(FTLAB_LEASE_S="2", WANDB_MODE="disabled")
        code = main(argv)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)


def _finish(pids: list[int], logs: list[Path]) -> list[str]:
    """Wait for the workers; each one's output (it must succeed)."""
    deadline = time.time() + 300
    for pid, log in zip(pids, logs, strict=True):
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        assert os.waitstatus_to_exitcode(done[1]) == 0, log.read_text()[-3000:]
    return [log.read_text() for log in logs]


def _stop_leftovers(pids: list[int]) -> None:
    """Kill the workers a failed test left running (a reaped pid is skipped: it may be
    another process's by now)."""
    for pid in pids:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _values(out: Path) -> list[tuple[Any, ...]]:
    rows = read_jsonl(out / "results.jsonl")
    return sorted((r["cell"], r["variant"], r["split"], r["metric"], r["value"]) for r in rows)


def test_three_workers_started_together_do_each_cell_once_and_match_one(
    tmp_path, recipe, one_worker
):
    out = tmp_path / "three"
    # a fresh model cache: the three also prepare the model at the same moment
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    pids = [_start(recipe, out, tmp_path / "cache", log) for log in logs]
    try:
        outs = _finish(pids, logs)
    finally:
        _stop_leftovers(pids)

    runs = Counter(k for text in outs for k in CELL_START.findall(text))
    cells = sorted(p.parent.name for p in out.glob("cells/*/cell.json"))
    assert len(cells) == N_CELLS
    assert runs == Counter(cells)  # every cell run, and by one worker only
    assert _values(out) == _values(one_worker)
    assert (out / "report" / "report.md").is_file()
    assert not list((out / "locks").iterdir())  # every claim released
    assert json.loads((out / "study.json").read_text())["name"] == "workers"


def test_a_worker_killed_mid_cell_is_taken_over_by_the_others(
    tmp_path, recipe, tiny_cache, one_worker
):
    out = tmp_path / "three"
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    pids = [_start(recipe, out, tiny_cache, log) for log in logs]
    try:
        victim, key, deadline = None, None, time.time() + 120
        while victim is None:  # a worker mid-way through training a LoRA cell
            assert time.time() < deadline, "no worker started training"
            for lock in (out / "locks").glob("lora__*.lock") if (out / "locks").is_dir() else []:
                try:
                    rec = json.loads(lock.read_text())
                except (OSError, ValueError):
                    continue
                cell = out / "cells" / str(rec.get("key"))
                training = (cell / "resume").is_dir() and not (
                    cell / "checkpoint" / "train_result.json"
                ).exists()
                if rec.get("pid") in pids and training:
                    victim, key = rec["pid"], rec["key"]
                    break
            time.sleep(0.02)
        os.kill(victim, signal.SIGKILL)
        os.waitpid(victim, 0)
        assert not (out / "cells" / key / "cell.json").exists()  # killed mid-cell
        i = pids.index(victim)
        outs = _finish(pids[:i] + pids[i + 1 :], logs[:i] + logs[i + 1 :])
    finally:
        _stop_leftovers(pids)

    runs = Counter(k for text in outs for k in CELL_START.findall(text))
    assert runs[key] == 1  # the killed worker's cell, finished by one of the others
    assert len(list(out.glob("cells/*/cell.json"))) == N_CELLS
    assert _values(out) == _values(one_worker)  # resumed from its checkpoint: the same results
    assert not list((out / "locks").iterdir())


def test_force_is_refused_while_another_worker_runs_the_study(
    recipe, tmp_path, tiny_cache, one_worker, capsys
):
    before = sorted(one_worker.rglob("*"))
    lock = claims.claim(one_worker / "locks", "lora__d0", lease_s=60)  # a live worker's claim
    try:
        args = ["run", str(recipe), "--out", str(one_worker), "--cache-dir", str(tiny_cache)]
        assert main([*args, "--force", "--quiet"]) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"error: --force would delete .* under the workers running it "
        r"\(.* pid \d+\); stop them first or choose another --out",
        err,
    ), err
    assert sorted(one_worker.rglob("*")) == before


def test_a_cell_that_fails_releases_its_claim(recipe, tmp_path, tiny_cache, monkeypatch):
    from lab.study.cells import CellRunner

    def fail(self, cell, cell_dir):
        raise RuntimeError("boom")

    monkeypatch.setattr(CellRunner, "run", fail)
    out = tmp_path / "out"
    args = ["run", str(recipe), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"]
    with pytest.raises(RuntimeError, match="boom"):
        main(args)
    assert (out / "locks").is_dir() and not list((out / "locks").iterdir())
