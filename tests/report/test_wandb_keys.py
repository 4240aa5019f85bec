"""One key scheme, numbers as numbers, tags and notes, lineage: read back from the offline
`.wandb` files of the smoke study (tests/report/conftest.py). A prompted and a fine-tuned
cell log the same `eval/<split>/<metric>` keys, each number once; the summary tables hold
numbers; the `answer/*` scalars are the numbers of report.md's sentence; the summary run
uses the cells' prediction artifacts and adapters carry their cell's metrics."""

from __future__ import annotations

import json

from wandb_records import OfflineRun
from wandb_study import FT, offline

from lab.core.io import read_json
from lab.core.recipe import TrackingCfg
from lab.report.table import Summary, Table
from lab.report.tracking import Tracker


def test_a_prompted_and_a_fine_tuned_cell_log_the_same_metric_keys(runs):
    def keys(run: OfflineRun) -> set[str]:
        return {k for h in run.history for k in h if k.startswith("eval/")}

    icl, ft = keys(runs["kshot__b4__d0"]), keys(runs["lora__b4__d0"])
    assert icl and "eval/test/exact_match" in icl and "eval/ood_digits/gold_logprob" in icl
    assert {k for k in ft if not k.startswith("eval/variants/")} == icl
    for name in ("kshot__b4__d0", "lora__b4__d0"):
        summary = runs[name].summary
        assert "eval/ood_mean/exact_match" in summary
        # each number once: no `main/...`, `last/...` or `<variant>/...` copies
        assert not [k for k in summary if k.split("/")[0] in ("main", "last", "best", "prompted")]


def test_tags_and_notes_name_each_run(study, runs):
    for name, run in runs.items():
        tags = set(run.record.tags)
        assert {"profile:tiny", "model:tiny-random", "task:arithmetic"} <= tags, name
        if name == "summary":
            assert run.record.notes == read_json(study / "report" / "summary.json")["headline"]
            continue
        cell = run.init_config
        budget = "all" if cell["budget"] is None else cell["budget"]
        assert {f"method:{cell['method']}", "format:answer", f"budget:{budget}"} <= tags
        assert run.record.notes.startswith(f"{cell['arm']}: ")
    assert "LoRA fine-tuning" in runs["lora__b2__d0"].record.notes
    assert "2 demos" in runs["kshot__b2__d0"].record.notes


def _table_rows(run: OfflineRun, key: str) -> list[dict]:
    t = run.table(key)
    return [dict(zip(t["columns"], r, strict=True)) for r in t["data"]]


def test_summary_tables_hold_numbers_as_numbers(runs):
    summary = runs["summary"]
    long = _table_rows(summary, "results")
    assert {(r["arm"], r["split"], r["metric"]) for r in long} >= {
        ("lora", "test", "exact_match"),
        ("kshot", "ood_mean", "gold_logprob"),
    }
    for r in long:
        for col in ("mean", "lo", "hi", "n"):
            assert isinstance(r[col], float | int) and not isinstance(r[col], bool), (col, r)
        assert r["lo"] <= r["mean"] <= r["hi"]
        assert r["budget"] is None or isinstance(r["budget"], float | int)
    paired = _table_rows(summary, "paired")
    assert {(r["arm"], r["baseline"], r["budget"]) for r in paired} == {
        (a, "kshot", b) for a in ("lora", "full") for b in (2, 4)
    }
    for r in paired:
        assert r["equal_budget"] is True
        for col in (
            "id_gain",
            "id_lo",
            "id_hi",
            "id_p",
            "ood_gain",
            "ood_p",
            "gap",
            "gap_lo",
            "gap_hi",
            "gap_p",
            "holm_p",
        ):
            assert isinstance(r[col], float), (col, r)
        assert r["id_lo"] <= r["id_gain"] <= r["id_hi"] and r["gap_p"] <= r["holm_p"] <= 1
    compute = _table_rows(summary, "compute")
    assert all(isinstance(r["eval s"], float) for r in compute)
    assert all(r["train s"] is None or isinstance(r["train s"], float) for r in compute)


def test_headline_scalars_are_the_numbers_of_report_mds_sentence(study, runs):
    v = runs["summary"].summary
    md = (study / "report" / "report.md").read_text()
    (answer,) = [line for line in md.splitlines() if line.startswith("**Answer.**")]
    assert v["answer"] in answer
    for name in ("id_gain", "ood_gain", "gap"):
        said = (
            f"{v[f'answer/{name}']:+.3f} (95% CI {v[f'answer/{name}_lo']:+.3f} to "
            f"{v[f'answer/{name}_hi']:+.3f}, p={v[f'answer/{name}_p']:.2g})"
        )
        assert said in answer, name
    assert f"{v['answer/arm']} vs {v['answer/baseline']}" in answer
    assert f"at budget {v['answer/budget']}" in answer and v["answer/equal_budget"] is True


def test_lineage_the_summary_uses_the_cells_predictions_and_adapters_carry_metrics(study, runs):
    logged = {a.name for n, r in runs.items() if n != "summary" for a in r.artifact("predictions")}
    assert sorted(runs["summary"].init_config["inputs"]) == sorted(logged) != []
    for key in FT:
        (model,) = runs[key].artifact("model")
        metrics = json.loads(model.metadata)["metrics"]
        cell = read_json(study / "cells" / key / "cell.json")
        variant = cell["cell"]["selected"]
        assert metrics["eval/test/exact_match"] == cell["metrics"][f"{variant}/test"]["exact_match"]
        assert "eval/ood_mean/exact_match" in metrics


def test_online_the_summary_run_uses_each_cells_predictions(tmp_path, monkeypatch):
    offline(monkeypatch)
    t = Tracker(TrackingCfg(mode="offline"), "sid", tmp_path, {"task": {"name": "arithmetic"}})
    t.mode = "online"  # lineage is recorded online only (offline: config `inputs`)
    used: list[str] = []

    class FakeRun:
        summary: dict = {}

        def log(self, data: dict) -> None:
            pass

        def use_artifact(self, name: str) -> None:
            used.append(name)

        def log_artifact(self, art: object) -> None:
            pass

        def finish(self, **kw: object) -> None:
            pass

    monkeypatch.setattr(t, "_init", lambda *a, **k: FakeRun())
    summary = Summary(Table(["a"], [[1]]), "the answer", cells=["lora__b4__d0", "zs__d0"])
    t.log_summary(summary, {"model": "m"})
    assert used == ["sid-lora__b4__d0-predictions:latest", "sid-zs__d0-predictions:latest"]
