"""W&B reliability (offline): crashed cells marked failed, resumed cells keep their run id,
an unreachable server falls back to offline without hanging; fsync'd atomic writes;
generations without an answer are scored wrong and reported as `no_answer`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from ranks import free_port  # a port closed again: nothing listens there
from wandb_records import run_summary

import lab.study.cells
from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import Generation
from lab.core import io
from lab.core.recipe import load_recipe
from lab.report.tracking import Tracker, reachable
from lab.study.cli import main

RECIPE = {
    "name": "wb",
    "model": "tiny-random",
    "task": {"n_train": 16, "n_dev": 4, "n_test": 3},
    "seeds": [0],
    "arms": [{"name": "zs", "method": "icl"}, {"name": "two", "method": "icl", "k": 2}],
    "eval": {"batch_size": 4, "max_new_tokens": {"answer": 4, "cot": 8, "code": 8}},
}


def _runs(out: Path) -> list[dict]:
    return [run_summary(d) for d in sorted((out / "wandb").glob("offline-run-*"))]


def test_crashed_cell_is_marked_failed_and_its_rerun_resumes_the_same_run(
    tmp_path, tiny_cache, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "tracking": {"mode": "offline"}}))
    out = tmp_path / "out"
    argv = ["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"]
    real = lab.study.cells.evaluate_split_parallel

    def crash_in_second_cell(lm, examples, spec, *a, **k):
        if spec.demos:
            raise RuntimeError("simulated crash")
        return real(lm, examples, spec, *a, **k)

    monkeypatch.setattr(lab.study.cells, "evaluate_split_parallel", crash_in_second_cell)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(argv)
    monkeypatch.setattr(lab.study.cells, "evaluate_split_parallel", real)
    assert main(argv) == 0

    r = load_recipe(path)
    ids = Tracker(r.tracking, r.name, out, {}, id_salt=r.hash())
    runs = _runs(out)
    by_id: dict[str, list[list[int]]] = {}
    for s in runs:
        by_id.setdefault(s["id"], []).append(s["exit_codes"])
    assert by_id == {
        ids.run_id("zs__d0"): [[0]],  # done in the first run, skipped in the rerun
        ids.run_id("two__d0"): [[1], [0]],  # failed (exit code 1), then the same run resumed
        ids.run_id("summary"): [[0]],
    }


def test_run_ids_are_deterministic_per_out_recipe_and_cell(tmp_path):
    r = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
    a = Tracker(r.tracking, r.name, tmp_path, {}, id_salt=r.hash())
    b = Tracker(r.tracking, r.name, tmp_path / ".", {}, id_salt=r.hash())
    assert a.run_id("x__d0") == b.run_id("x__d0") != a.run_id("y__d0")
    assert a.run_id("x__d0") != Tracker(r.tracking, r.name, tmp_path, {}, "other").run_id("x__d0")
    assert a.run_id("x__d0") != Tracker(r.tracking, r.name, tmp_path / "o", {}).run_id("x__d0")


def test_unreachable_wandb_falls_back_to_offline_without_hanging(
    tmp_path, tiny_cache, monkeypatch, capsys
):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "tracking": {"mode": "online"}}))
    out = tmp_path / "out"
    t0 = time.monotonic()
    code = main(["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"])
    assert code == 0
    assert time.monotonic() - t0 < 120  # the study itself takes seconds; no 90 s init waits
    err = capsys.readouterr().err
    assert "warning: W&B server http://127.0.0.1:" in err and "is unreachable" in err
    assert "logging to W&B offline" in err and "wandb sync" in err
    assert len(_runs(out)) == 3  # 2 cells + summary, all offline


def test_reachable_is_quick_on_afree_port():
    t0 = time.monotonic()
    assert not reachable(f"http://127.0.0.1:{free_port()}")
    assert time.monotonic() - t0 < 6


def test_atomic_write_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    io.atomic_write_json(tmp_path / "sub" / "a.json", {"x": 1})
    assert (tmp_path / "sub" / "a.json").read_text() == '{\n  "x": 1\n}\n'
    assert len(synced) == 2 and synced[1] == str(tmp_path / "sub")  # the file, then its dir
    assert not list((tmp_path / "sub").glob(".*.tmp"))


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / "cells" / "c").mkdir(parents=True)
    stale = tmp_path / "cells" / "c" / ".cell.json.abc123.tmp"
    stale.write_text("{half")
    (tmp_path / "cells" / "c" / "resume" / ".tmp-step-000004").mkdir(parents=True)
    keep = tmp_path / "wandb" / "run" / ".x.tmp"
    keep.parent.mkdir(parents=True)
    keep.write_text("")
    removed = io.remove_stale_tmp(tmp_path)
    assert len(removed) == 2 and not stale.exists() and keep.exists()


class _NoAnswerLM:
    """An LM whose generations never contain a number."""

    def generate(self, requests, desc=""):
        return [Generation("I am not sure.", 5, 4, "length") for _ in requests]

    def loglikelihood(self, requests, desc=""):
        return [(-3.0, False, 1) for _ in requests]


def test_generation_without_an_answer_is_wrong_and_reported(splits):
    preds, m = evaluate_split(_NoAnswerLM(), splits["test"][:4], PromptSpec("answer"), 4)
    assert all(p["pred"] is None and p["correct"] is False for p in preds)
    assert m["exact_match"] == 0.0 and m["no_answer"] == 1.0 and m["n"] == 4
