"""`python -m lab compare`: two smoke studies (two models: two blocks, never one plot) on one
page, a forest plot per block and a typed table, one row per study x arm x budget, read back
from the studies' own paired tables; its W&B run in its own group; bad folders: one line,
exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from wandb_records import OfflineRun

from lab.core.io import read_json
from lab.report.compare import Study, table
from lab.study.cli import main

RECIPE = {
    "name": "cmp",
    "model": "tiny-random",
    "task": {"n_train": 16, "n_dev": 4, "n_test": 3},
    "seeds": [0],
    "budgets": [4],
    "train": {"steps": 2, "batch_size": 2, "select": "last"},
    "arms": [{"name": "kshot", "method": "icl", "k": 2}, {"name": "lora", "method": "lora"}],
    "eval": {"batch_size": 4, "max_new_tokens": {"answer": 4, "cot": 8, "code": 8}},
    "tracking": {"mode": "disabled"},
}


@pytest.fixture(scope="module")
def studies(tmp_path_factory, tiny_cache) -> list[Path]:
    tmp = tmp_path_factory.mktemp("compare")
    outs = []
    for name, model in (("a", "tiny-random"), ("b", "tiny-random-d32")):
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**RECIPE, "name": f"cmp-{name}", "model": model}))
        out = tmp / name
        argv = ["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"]
        assert main(argv) == 0
        outs.append(out)
    return outs


def test_compare_puts_each_study_x_arm_x_budget_on_one_page(studies, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    dest = tmp_path / "cmp"
    argv = ["compare", *map(str, studies), "--to", str(dest), "--wandb", "offline"]
    assert main(argv) == 0
    page = (dest / "index.html").read_text()
    got = read_json(dest / "compare.json")
    rows = [dict(zip(got["columns"], r, strict=True)) for r in got["rows"]]
    assert [(r["block"], r["model"], r["arm"], r["baseline"], r["budget"]) for r in rows] == [
        ("A", "tiny-random", "lora", "kshot", 4),
        ("B", "tiny-random-d32", "lora", "kshot", 4),
    ]
    for r, out in zip(rows, studies, strict=True):
        (want,) = read_json(out / "report" / "summary.json")["paired"]["rows"]
        cols = read_json(out / "report" / "summary.json")["paired"]["columns"]
        want = dict(zip(cols, want, strict=True))
        for col in ("id_gain", "id_lo", "id_hi", "id_p", "ood_gain", "ood_lo", "ood_hi", "gap"):
            assert isinstance(r[col], float) and r[col] == want[col], col
        assert r["equal_budget"] is True and r["mark"] is None
    # one forest plot per block (two models: never one plot), inlined in the page
    assert (dest / "forest_A.png").stat().st_size > 0 and (dest / "forest_B.png").stat().st_size > 0
    assert page.count("data:image/png;base64,") == 2
    assert "block A: tiny-random on arithmetic" in page and "block B: tiny-random-d32" in page
    (run_dir,) = (dest / "wandb").glob("offline-run-*")
    run = OfflineRun(run_dir)
    assert run.group.startswith("compare-") and run.job_type == "compare"
    assert {s["out_dir"] for s in run.init_config["studies"]} == {str(s.resolve()) for s in studies}
    logged = run.table("compare")
    assert logged["columns"] == got["columns"] and len(logged["data"]) == 2
    assert isinstance(logged["data"][0][logged["columns"].index("gap_p")], float)


def test_bad_folders_say_so_in_one_line_and_write_nothing(studies, tmp_path, capsys):
    dest = tmp_path / "cmp"
    for bad, words in ((tmp_path / "missing", "does not exist"), (tmp_path, "holds no study")):
        assert main(["compare", str(studies[0]), str(bad), "--to", str(dest)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err
    assert not dest.exists()


def _study(name: str, model: str, budgets: list[int], equal: bool) -> Study:
    row = {"arm": "lora", "baseline": "kshot", "budget": 4, "equal_budget": equal}
    nums = [
        "id_gain",
        "id_lo",
        "id_hi",
        "id_p",
        "ood_gain",
        "ood_lo",
        "ood_hi",
        "ood_p",
        "gap",
        "gap_lo",
        "gap_hi",
        "gap_p",
        "holm_p",
    ]
    row |= {c: (0.1 if equal else None) for c in nums}
    return Study(Path(name), name, model, "arithmetic", budgets, "p", [row])


def test_unequal_budgets_and_budget_grids_are_marked_and_models_are_blocks():
    t = table(
        [
            _study("s1", "m1", [4], True),
            _study("s2", "m1", [2, 4], False),
            _study("s3", "m2", [4], True),
        ]
    )
    rows = [dict(zip(t.columns, r, strict=True)) for r in t.rows]
    assert [r["block"] for r in rows] == ["A", "A", "B"]
    assert "budget grid differs" in rows[0]["mark"]
    assert "not tested" in rows[1]["mark"] and rows[1]["id_gain"] is None
    assert rows[2]["mark"] is None
    assert json.loads(rows[1]["budgets"]) == [2, 4]
