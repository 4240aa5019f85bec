"""W&B as the review surface, read back from the offline `.wandb` files of a smoke study:
one group per study id, each cell's full config at `wandb.init`, training and ID-dev
metrics logged live (before training ended), eval metrics as each split finished, typed
prediction tables, artifacts (weights uploaded or referenced by size, predictions, the
study), lineage by base-model fingerprint, system metrics, a Report built from the
report's own sections; rank-0 only logging, and W&B never failing a run."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest
import wandb_workspaces.reports.v2 as wr
import yaml
from wandb_records import OfflineRun
from wandb_study import FT, MAX_MB, RECIPE, offline

import lab.study.cells
from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from lab.core.io import read_json, read_jsonl
from lab.core.recipe import TaskCfg, TrackingCfg
from lab.report.tracking import Tracker, study_id
from lab.report.wandb_report import sections
from lab.report.wandb_tables import columns_and_rows
from lab.study.cli import main
from lab.tasks import build_task


def _rows(run: OfflineRun, key: str) -> list[dict]:
    return [h for h in run.history if key in h]


def test_every_run_is_grouped_by_the_study_id_with_its_full_config_at_init(study, runs):
    info = read_json(study / "study.json")
    sid = study_id("wbreview", "tiny", True, info["recipe_hash"])
    assert sid == f"wbreview-tiny-smoke-{info['recipe_hash'][:8]}" == info["study_id"]
    cells = {p.parent.name for p in study.glob("cells/*/cell.json")}
    assert set(runs) == cells | {"summary"} and len(cells) == 7
    for name, run in runs.items():
        assert run.group == sid and run.init_config["study_id"] == sid
        assert run.exit_codes == [0]
        if name == "summary":
            assert run.init_config["summary_of"] == sid
            continue
        cell = read_json(study / "cells" / name / "cell.json")["cell"]
        init = run.init_config  # given at wandb.init: a running cell shows it
        for k in ("arm", "method", "format", "budget", "data_seed", "train_seed", "precision"):
            assert init[k] == cell[k], (name, k)  # what the cell used, at top level
        assert init["model_fingerprint"] == cell["model_fingerprint"]
        assert init["study"]["name"] == "wbreview" and "arms" in init["study"]  # the recipe
        assert init["out_dir"] == str(study.resolve())
        assert ("train" in init) == (cell["method"] != "icl")
        if "train" in init:
            assert init["train"]["steps"] == 3 and init["train"]["lr"] == 1e-3


def test_training_metrics_are_logged_live_on_the_step_axis(study, runs):
    for key in FT:
        run = runs[key]
        done = (study / "cells" / key / "checkpoint" / "train_result.json").stat().st_mtime
        train = read_json(study / "cells" / key / "checkpoint" / "train_result.json")
        steps = _rows(run, "train/loss")
        assert [h["train/step"] for h in steps] == [1, 2, 3]
        assert [h["train/loss"] for h in steps] == pytest.approx(train["losses"])
        for h in steps:
            assert h["train/lr"] >= 0 and h["train/grad_norm"] > 0 and h["train/tokens_per_s"] > 0
        # each step's own lr: 1 warmup step (ceil(0.1 x 3)) from 0, then linear decay
        assert [h["train/lr"] for h in steps] == pytest.approx([0.0, 1e-3, 5e-4])
        dev = _rows(run, "dev/loss")
        assert [[h["train/step"], h["dev/loss"]] for h in dev] == train["dev_losses"] != []
        # logged while training ran: before train_result.json (training's last write)
        assert max(h["_timestamp"] for h in steps + dev) < done
        assert [h["train/epoch"] for h in steps] == pytest.approx(
            [
                s * 2 / read_json(study / "cells" / key / "cell.json")["train"]["n_train"]
                for s in (1, 2, 3)
            ]
        )
        axes = {(m.name or m.glob_name): m.step_metric for m in run.metrics}
        assert axes["train/*"] == axes["dev/*"] == axes["eval/*"] == "train/step"


def test_eval_metrics_are_logged_as_each_split_finishes(study, runs):
    for key in ("kshot__b2__d0", "lora__b4__d0"):
        cell = read_json(study / "cells" / key / "cell.json")
        variant = "prompted" if cell["cell"]["method"] == "icl" else cell["cell"]["selected"]
        train = cell["train"]
        step = {
            "prompted": 0,
            "last": train.get("steps"),
            "best": train.get("best_step") or train.get("steps"),
        }[variant]
        splits = ["test", "ood_digits", "ood_steps", "ood_phrasing"]
        logged = []
        for split in splits:
            (h,) = _rows(runs[key], f"eval/{split}/exact_match")  # the comparison's variant
            assert (
                h[f"eval/{split}/exact_match"]
                == (cell["metrics"][f"{variant}/{split}"]["exact_match"])
            )
            assert h["train/step"] == step  # the evaluated checkpoint's optimizer step
            assert ("train/epoch" in h) == (variant != "prompted")
            logged.append(h["_timestamp"])
        preds = study / "cells" / key / "predictions" / variant
        for t, later in zip(logged, splits[1:], strict=False):  # before the next split's end
            assert t < (preds / f"{later}.jsonl").stat().st_mtime


def test_prediction_tables_have_typed_columns(study, runs):
    run = runs["kshot__b2__d0"]
    table = run.table("predictions/test")
    cols = table["columns"]
    assert cols[0] == "variant" and {r[0] for r in table["data"]} == {"prompted"}
    preds = {
        p["id"]: p
        for p in read_jsonl(study / "cells/kshot__b2__d0/predictions/prompted/test.jsonl")
    }
    assert {"id", "prompt", "generation", "correct", "gold_logprob", "prompt_tokens"} <= set(cols)
    assert {f"meta.{k}" for k in next(iter(preds.values()))["meta"]} <= set(cols)
    assert len(table["data"]) == len(preds)
    for row in table["data"]:
        r = dict(zip(cols, row, strict=True))
        p = preds[r["id"]]
        assert isinstance(r["correct"], bool) and r["correct"] == p["correct"]
        assert isinstance(r["gold_logprob"], float) and r["gold_logprob"] == p["gold_logprob"]
        assert isinstance(r["prompt_tokens"], int)
        assert r["generation"] == p["generation"] and p["question"] in r["prompt"]
        assert r["meta.steps"] == p["meta"]["steps"] and isinstance(r["meta.steps"], int)
    assert run.summary["prompt_prefix/prompted"]  # the 2 demos, once for every row


def test_choice_predictions_table_has_brier_and_meta_columns(tiny_model):
    xs = build_task(TaskCfg(name="mnli_hans", n_train=4, n_dev=2, n_test=2))["ood_hans"]
    preds, _m = evaluate_split(LM(*tiny_model, batch_size=2), xs, PromptSpec("answer"), 4)
    cols, types, rows = columns_and_rows(preds, {x.id: x.prompt for x in xs})
    kind = dict(zip(cols, types, strict=True))
    assert kind["correct"] is bool and kind["gold_logprob"] is float and kind["brier"] is float
    assert kind["meta.heuristic"] is str and kind["meta.row"] is int
    assert kind["choice_probs"] is str  # a list per row: JSON text
    for row in rows:
        r = dict(zip(cols, row, strict=True))
        assert isinstance(r["brier"], float) and isinstance(r["correct"], bool)
        assert json.loads(r["choice_probs"]) and r["prompt"]


def test_artifacts_weights_by_size_predictions_and_the_study(study, runs):
    info = read_json(study / "study.json")
    sid = info["study_id"]
    for key in FT:
        (model,) = runs[key].artifact("model")
        kind = "adapter" if key.startswith("lora") else "weights"
        assert model.name == f"{sid}-{key}-{kind}"
        meta = json.loads(model.metadata)
        files = list(model.manifest.contents)
        if kind == "adapter":  # small: uploaded
            assert meta["uploaded"] and meta["size_mb"] <= MAX_MB
            assert not any(c.ref for c in files) and "adapter_model.safetensors" in {
                c.path for c in files
            }
        else:  # above tracking.max_upload_mb: a reference to the local checkpoint
            assert not meta["uploaded"] and meta["size_mb"] > MAX_MB
            assert files and all(c.ref.startswith("file://") for c in files)
    for key, run in runs.items():
        if key == "summary":
            continue
        (pred,) = run.artifact("predictions")
        want = {
            str(p.relative_to(study / "cells" / key / "predictions"))
            for p in (study / "cells" / key / "predictions").rglob("*.jsonl")
        }
        assert want and want <= {c.path for c in pred.manifest.contents}
        staged = [c.local_path for c in pred.manifest.contents]  # kept with the study, not in ~
        assert all(p.startswith(str(study.resolve() / "wandb" / "data")) for p in staged)
    summary = runs["summary"]
    (art,) = summary.artifact("study")
    paths = {c.path for c in art.manifest.contents}
    assert {
        "results.jsonl",
        "study.json",
        "recipe.yaml",
        "report/report.md",
        "report/index.html",
    } <= paths
    assert summary.summary["report"]["_type"] == "html-file"  # the HTML report as wandb.Html
    assert summary.summary["answer"] == read_json(study / "report" / "summary.json")["headline"]
    for table in ("results", "paired", "compute", "contamination"):
        assert summary.summary[table]["_type"] == "table-file", table


def test_every_run_names_the_base_model_by_fingerprint(study, runs):
    fp = read_json(study / "study.json")["model"]["fingerprint"]
    for run in runs.values():
        (m,) = run.init_config["base_models"]
        assert m["fingerprint"] == fp and m["artifact"] == f"base-model-{fp}"


def test_system_metrics_are_sampled(runs):
    for run in runs.values():
        assert run.stats and any("memory_percent" in s for s in run.stats)


def test_report_definition_has_the_reports_sections_and_filters_on_the_study_id(study):
    definition = study / "report" / "wandb_report.py"
    text = definition.read_text()
    sid = read_json(study / "study.json")["study_id"]
    assert f"ENTITY, PROJECT, STUDY = None, 'ft-vs-icl', {sid!r}" in text
    assert f"OUT_DIR = {str(study.resolve())!r}" in text
    assert "Config('study_id') == '{STUDY}' and Config('out_dir') == '{OUT_DIR}'" in text
    for title in (
        "Results: means with 95% bootstrap CIs",
        "paired bootstrap tests",
        "Budget curves",
        "Compute",
        "Contamination",
        "Fairness",
        "Splits",
    ):
        assert title in text, title
    done = subprocess.run(
        [sys.executable, str(definition), "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "blocks (not saved)" in done.stdout
    report = runpy.run_path(str(definition))["build"]("me")
    head = [type(b).__name__ for b in report.blocks[:4]]
    assert head == ["H1", "UnorderedList", "PanelGrid", "P"]  # verdicts, forest, the answer
    assert report.blocks[1].items == read_json(study / "report" / "summary.json")["verdicts"]
    grids = [b for b in report.blocks if type(b).__name__ == "PanelGrid"]
    out_dir = str(study.resolve())
    for grid in grids:  # every runset: this study id AND this output folder
        for rs in grid.runsets:
            assert f"Config('out_dir') == '{out_dir}'" in rs.filters, rs.filters
    tables = {p.table_name for g in grids for p in g.panels if hasattr(p, "table_name")}
    assert {"results", "paired", "predictions/test"} <= tables
    bars = [p for g in grids for p in g.panels if type(p).__name__ == "BarPlot"]
    assert bars and all(p.groupby == wr.Config("arm_budget") for p in bars)
    assert {m for p in bars for m in p.metrics} == {
        f"eval/{s}/{m}"
        for s in ("test", "ood_digits", "ood_steps", "ood_phrasing")
        for m in ("exact_match", "gold_logprob")
    }


def test_report_sections_follow_the_summary_tables_ladders_included():
    tables = [
        "scaling_metrics",
        "cot_gain",
        "results_m0-a",
        "paired_m0-a",
        "compute_m0-a",
        "brier_m0-a",
    ]
    ladder = sections(tables, ["vs_params", "cot_gain", "forest"])
    assert ladder == [
        (
            "Results: means with 95% bootstrap CIs (per arm, budget, seed, split)",
            ["results_m0-a"],
            [],
        ),  # fmt: skip
        ("Fine-tuning vs prompting: paired bootstrap tests", ["paired_m0-a"], []),
        ("Compute", ["compute_m0-a"], []),
        ("Scaling (model ladder)", ["scaling_metrics", "cot_gain"], ["vs_params", "cot_gain"]),
        ("More tables and plots", ["brier_m0-a"], []),
    ]


def test_a_failed_cell_shows_failed_with_its_config(tmp_path, tiny_cache, monkeypatch):
    offline(monkeypatch)
    recipe = {**RECIPE, "arms": RECIPE["arms"][:2], "budgets": [2]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    real = lab.study.cells.evaluate_split_parallel

    def crash(lm, examples, spec, *a, **k):
        if spec.demos:
            raise RuntimeError("simulated crash")
        return real(lm, examples, spec, *a, **k)

    monkeypatch.setattr(lab.study.cells, "evaluate_split_parallel", crash)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"])
    (failed,) = [
        r
        for d in (out / "wandb").glob("offline-run-*")
        if (r := OfflineRun(d)).name == "kshot__b2__d0"
    ]
    assert failed.exit_codes == [1]
    assert failed.init_config["arm"] == "kshot" and failed.init_config["budget"] == 2
    assert failed.group == read_json(out / "study.json")["study_id"]


def test_only_the_main_process_logs(tmp_path, monkeypatch):
    offline(monkeypatch)
    t = Tracker(TrackingCfg(mode="offline"), "s", tmp_path, {}, main=False)
    assert not t.enabled
    t.start_cell("c", "icl", {"arm": "c"}, [])
    t.log_train({"train/step": 1, "train/loss": 1.0})
    cell = {"cell": "c", "method": "icl"}
    assert t.log_cell(cell, {"prompted/test": {"exact_match": 1.0}}) is None
    assert not (tmp_path / "wandb").exists()


def test_missing_wandb_turns_tracking_off_with_a_warning(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    t = Tracker(TrackingCfg(mode="offline"), "s", tmp_path, {})
    assert not t.enabled and "wandb is not installed" in capsys.readouterr().err
