"""The runner on a GPU's budget: one model per process in memory at a time (the base model is
freed before an FT cell trains; the last and best-dev checkpoints are evaluated one after
the other), and the study's precision in study.json and in every results row."""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM

from lab.core.io import read_jsonl
from lab.study.cli import main


def test_one_model_in_memory_at_a_time_and_precision_recorded(tmp_path, tiny_cache, monkeypatch):
    loaded: list[weakref.ref] = []
    alive_at_load: list[int] = []
    load = AutoModelForCausalLM.from_pretrained

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        gc.collect()
        alive_at_load.append(sum(r() is not None for r in loaded))
        model = load(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", counting)
    import train.finetune as ft

    real_finetune = ft.finetune

    def finetune(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        # a best-dev checkpoint distinct from the last one (a copy), whatever the tiny model's
        # dev losses do: both checkpoints are then evaluated, one after the other
        res = real_finetune(*args, **kwargs)
        best = Path(res.checkpoint).parent / "best_copy"
        shutil.copytree(res.checkpoint, best)
        return replace(res, best_checkpoint=str(best))

    monkeypatch.setattr(ft, "finetune", finetune)
    recipe = {
        "name": "mem", "model": "tiny-random", "seeds": [0], "precision": "bf16",
        "task": {"n_train": 32, "n_dev": 8, "n_test": 3},
        "train": {"steps": 6, "batch_size": 4, "eval_every": 2, "lr": 0.1,
                  "schedule": "constant", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "eval": {"batch_size": 4, "max_new_tokens": {"answer": 4, "cot": 6, "code": 6}},
        "tracking": {"mode": "disabled"},
        "arms": [{"name": "icl2", "method": "icl", "k": 2},
                 {"name": "lora", "method": "lora"},
                 {"name": "full", "method": "full", "train": {"lr": 0.05}},
                 {"name": "zero", "method": "icl"}],
    }  # fmt: skip
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    assert (
        main(["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"]) == 0
    )
    # the base (both ICL cells), then per FT cell: training, best-dev and last checkpoints;
    # each LoRA checkpoint also reloads its base in fp32 to merge the adapter (eval/merge.py),
    # after the unmerged model is freed
    assert len(alive_at_load) == 9
    assert alive_at_load == [0] * len(alive_at_load)
    variants = {(r["arm"], r["variant"]) for r in read_jsonl(out / "results.jsonl")}
    assert {("lora", "last"), ("lora", "best"), ("full", "last"), ("full", "best")} <= variants
    assert json.loads((out / "study.json").read_text())["precision"] == "bf16"
    rows = read_jsonl(out / "results.jsonl")
    assert rows and {r["precision"] for r in rows} == {"bf16"}


@pytest.mark.parametrize("setting", ["fp32"])
def test_smoke_rows_say_fp32(tmp_path, tiny_cache, setting):
    from pathlib import Path

    quick = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
    data = yaml.safe_load(quick.read_text())
    data["smoke"] = {
        "seeds": [0],
        "budgets": [4],
        "tracking": {"mode": "disabled"},
        "arms": [{"name": "zero_shot", "method": "icl"}],
    }
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    args = ["run", str(path), "--smoke", "--out", str(out), "--cache-dir", str(tiny_cache)]
    assert main([*args, "--quiet"]) == 0
    assert {r["precision"] for r in read_jsonl(out / "results.jsonl")} == {setting}
