"""The smoke study end to end through the CLI: results, predictions, report, offline W&B
runs, resume, and clean failures for user errors."""

import json
import re
from pathlib import Path

import pytest
import yaml

from lab.core.io import read_jsonl
from lab.study.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return str(tiny_cache)  # the session's model cache: the tiny models are built once


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("smoke") / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.delenv("WANDB_API_KEY", raising=False)
    try:
        code = main(["run", str(QUICKSTART), "--smoke", "--out", str(out), "--cache-dir", cache])
    finally:
        mp.undo()
    assert code == 0
    return out


def test_results_have_one_row_per_arm_budget_seed_split(smoke):
    recipe = yaml.safe_load(QUICKSTART.read_text())
    seeds, budgets = recipe["smoke"]["seeds"], recipe["smoke"]["budgets"]
    all_rows = read_jsonl(smoke / "results.jsonl")
    assert {r["metric"] for r in all_rows} == {"exact_match", "gold_logprob"}
    compared_rows = [r for r in all_rows if r["variant"] in ("prompted", r.get("selected"))]
    rows = [r for r in compared_rows if r["metric"] == "exact_match"]
    splits = {"test", "ood_digits", "ood_steps", "ood_phrasing"}
    arms = {a["name"] for a in recipe["arms"]}
    zero = {a["name"] for a in recipe["arms"] if a["method"] == "icl" and a["k"] == 0}
    want = {(a, None, 0, s) for a in zero for s in splits} | {
        (a, b, d, s) for a in arms - zero for b in budgets for d in seeds for s in splits
    }
    got = [(r["arm"], r["budget"], r["data_seed"], r["split"]) for r in rows]
    assert set(got) == want and len(got) == len(want)
    for r in rows:
        assert 0.0 <= r["value"] <= 1.0 and r["n"] > 0
        assert r["model_fingerprint"] == rows[0]["model_fingerprint"]  # same weights everywhere
        assert r["ood"] == (r["split"] != "test")
        # labelled-data parity: at budget b every arm used b labelled examples (zero-shot: 0)
        assert r["labelled_examples"] == (r["budget"] or 0)


def test_predictions_per_example_and_report(smoke):
    preds = read_jsonl(
        smoke / "cells" / "icl_kshot__b8__d0" / "predictions" / "prompted" / "ood_steps.jsonl"
    )
    study = json.loads((smoke / "study.json").read_text())
    assert len(preds) == study["split_sizes"]["ood_steps"]
    assert {"id", "gold", "generation", "pred", "correct"} <= set(preds[0])
    report = (smoke / "report" / "report.md").read_text()
    assert "| lora_code" in report and "OOD mean" in report
    assert (smoke / "report" / "plots" / "id_vs_ood.png").stat().st_size > 1000


def test_report_contamination_counts_content_not_the_template(smoke):
    """The arithmetic task never shares a problem between train/dev and an eval split (its
    generator resamples collisions): the report must find no contamination. Counting the
    shared template text (as it once did) flagged a sixth of ood_steps here, 75% of the
    quickstart's ID test."""
    report = (smoke / "report" / "report.md").read_text()
    section = report.split("## Contamination", 1)[1].split("\n## ", 1)[0]
    assert "everything the model may have seen" in section and "template" in section
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    header, body = [c.strip() for c in rows[0]], rows[1:]
    assert {r[0].strip() for r in body} == {"test", "ood_digits", "ood_steps", "ood_phrasing"}
    shared = header.index("with a shared 8-gram")
    assert [int(r[shared]) for r in body] == [0, 0, 0, 0]


def test_fine_tuned_cells_change_the_outputs_and_count_compute(smoke):
    for arm in ("lora_answer", "lora_cot", "lora_code", "full_answer"):
        cell = json.loads((smoke / "cells" / f"{arm}__b8__d1" / "cell.json").read_text())
        assert cell["train"]["output_delta"] > 0
        merge = cell["train"]["eval_merge"][cell["cell"]["selected"]]  # eval/merge.py
        assert merge["path"] == ("full weights" if arm == "full_answer" else "merged")
        assert cell["train"]["steps"] == len(cell["train"]["losses"]) > 0
        assert cell["train"]["target_tokens"] > 0
        assert cell["cell"]["k"] == 0  # FT arms are evaluated zero-shot


def test_icl_demos_come_from_train_and_are_shared_across_formats(smoke):
    for d in (0, 1):
        ans = json.loads((smoke / "cells" / f"icl_kshot__b8__d{d}" / "cell.json").read_text())
        cot = json.loads((smoke / "cells" / f"icl_kshot_cot__b8__d{d}" / "cell.json").read_text())
        lora = json.loads((smoke / "cells" / f"lora_cot__b8__d{d}" / "cell.json").read_text())
        assert len(ans["cell"]["demo_ids"]) == 8
        assert ans["cell"]["demo_ids"] == cot["cell"]["demo_ids"]
        assert ans["cell"]["demo_ids"] == lora["train"]["train_ids_head"]  # the same 8 examples
        assert all(i.startswith("train-") for i in ans["cell"]["demo_ids"])
        small = json.loads((smoke / "cells" / f"icl_kshot__b4__d{d}" / "cell.json").read_text())
        assert small["cell"]["demo_ids"] == ans["cell"]["demo_ids"][:4]  # budgets nest


def test_offline_wandb_run_per_cell_plus_summary(smoke):
    runs = sorted((smoke / "wandb").glob("offline-run-*"))
    assert len(runs) == len(list(smoke.glob("cells/*/cell.json"))) + 1
    for run in runs:
        assert list(run.glob("*.wandb")), f"{run} has no .wandb file (not syncable)"


def test_rerun_resumes_without_recomputing(smoke, cache, capsys):
    before = {p: p.stat().st_mtime_ns for p in smoke.glob("cells/*/cell.json")}
    rows = (smoke / "results.jsonl").read_text()
    capsys.readouterr()
    argv = ["run", str(QUICKSTART), "--smoke", "--out", str(smoke), "--cache-dir", cache]
    assert main([*argv, "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in smoke.glob("cells/*/cell.json")} == before
    assert len(before) == 2 + 6 * 2 * 2  # zero-shot arms once; the rest per budget and seed
    assert (smoke / "results.jsonl").read_text() == rows


def test_changed_recipe_is_refused_without_force(smoke, cache, tmp_path, capsys):
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["task"]["seed"] = 1
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(recipe))
    rows = (smoke / "results.jsonl").read_text()
    code = main(["run", str(path), "--smoke", "--out", str(smoke), "--cache-dir", cache])
    assert code == 2
    err = capsys.readouterr().err
    assert "different recipe" in err and "--force" in err
    assert (smoke / "results.jsonl").read_text() == rows


def test_study_of_an_older_lab_is_resumed_not_refused(tmp_path):
    """A lab upgrade that adds a defaulted recipe field changes the recipe hash; a study
    started by the older lab (its stored recipe lacks the field) is still the same study:
    resumed under its recorded hash (so its W&B run ids stay), not refused."""
    from lab.core.layout import StudyDir
    from lab.core.recipe import parse_recipe
    from lab.study.store import prepare_out, same_study

    recipe = parse_recipe(yaml.safe_load(QUICKSTART.read_text()), where="quickstart")
    stored = recipe.model_dump(mode="json")
    del stored["eval"]["ft_then_icl_k"]  # "added later", left at its default here
    old = {"recipe": stored, "recipe_hash": "0123456789abcdef"}  # the older lab's hash
    assert same_study(old, recipe)
    (tmp_path / "study.json").write_text(json.dumps(old))
    (tmp_path / "results.jsonl").write_text("kept\n")
    assert prepare_out(StudyDir(tmp_path), recipe, force=False) == "0123456789abcdef"
    assert (tmp_path / "results.jsonl").read_text() == "kept\n"
    changed = json.loads(json.dumps(stored))
    changed["train"]["lr"] = recipe.train.lr * 2  # a real change is still a different study
    assert not same_study({"recipe": changed, "recipe_hash": "x"}, recipe)
    assert not same_study({"recipe": {"no": "recipe"}, "recipe_hash": "x"}, recipe)
    assert not same_study({"recipe_hash": "x"}, recipe)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": {"name": "arithmetc"}}, "did you mean 'arithmetic'"),
        ({"arms": [{"name": "big", "method": "icl", "k": 10000}]}, "k=10000.*lower k"),
        ({"model": "nonexistent-model"}, "unknown model"),
        ({"model": "/no/such/file.gguf"}, "not found"),
        ({"train": {"lr": -1}}, "train.lr"),
        ({"budgets": [100000]}, "budget 100000 is larger than the train pool"),
        ({"task": {"params": {"ops": "/"}}}, "params.*not understood"),
    ],
)
def test_user_errors_exit_2_and_write_nothing(tmp_path, cache, capsys, change, message):
    recipe = {"name": "bad", "model": "tiny-random", "arms": [{"name": "zs", "method": "icl"}]}
    recipe.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--cache-dir", cache]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_report_has_compute_view_and_a_buildable_wandb_report(smoke):
    import subprocess
    import sys

    report = (smoke / "report" / "report.md").read_text()
    assert "## Compute" in report and "break-even queries" in report
    line = next(x for x in report.splitlines() if re.match(r"\| lora_answer\s+\| 8\s+\|", x))
    assert "icl_kshot" in line  # FT at budget 8 is costed against 8-shot ICL
    definition = smoke / "report" / "wandb_report.py"
    text = definition.read_text()
    assert (
        "'results'" in text and "'paired'" in text and "'compute'" in text and "'id_vs_ood'" in text
    )
    done = subprocess.run(
        [sys.executable, str(definition), "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "blocks (not saved)" in done.stdout


def test_ft_then_icl_probe_rows_and_plot(tmp_path, cache):
    recipe = {
        "name": "probe",
        "model": "tiny-random",
        "seeds": [0],
        "task": {"n_train": 32, "n_dev": 4, "n_test": 3},
        "train": {"steps": 2, "batch_size": 4},
        "eval": {
            "batch_size": 4,
            "max_new_tokens": {"answer": 4, "cot": 6, "code": 6},
            "ft_then_icl_k": 2,
        },
        "tracking": {"mode": "disabled"},
        "arms": [{"name": "icl2", "method": "icl", "k": 2}, {"name": "lora", "method": "lora"}],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--cache-dir", cache, "--quiet"]) == 0
    rows = [r for r in read_jsonl(out / "results.jsonl") if r["arm"] == "lora"]
    probed = [r for r in rows if r["ft_then_icl_k"] == 2]
    assert probed and all(r["variant"] == f"{r['selected']}+icl2" for r in probed)
    cell = json.loads((out / "cells" / "lora__d0" / "cell.json").read_text())
    demo_ids = json.loads((out / "cells" / "icl2__d0" / "cell.json").read_text())["cell"][
        "demo_ids"
    ]
    assert cell["train"]["train_ids_head"][:2] == demo_ids  # the probe's demos: the same prefix
    assert (out / "report" / "plots" / "ft_then_icl.png").stat().st_size > 1000


def test_rows_and_paths_are_the_typed_rows_and_layout(smoke):
    """Every stored row reads back as a ResultRow and writes out as the same JSON; every
    variant x split of a row has its predictions where CellDir says."""
    from lab.core.layout import StudyDir
    from lab.study.store import ResultRow

    study = StudyDir(smoke)
    cells = sorted(p.name for p in study.cells.iterdir())
    assert cells
    for key in cells:
        rows = study.cell(key).read()["rows"]
        again = [ResultRow.from_dict(r).to_dict() for r in rows]
        assert again == rows
        for r in rows:
            if r.get("aggregate") is None:
                assert study.cell(key).predictions(r["variant"], r["split"]).is_file()
    stored = read_jsonl(study.results)
    assert [ResultRow.from_dict(r).to_dict() for r in stored] == stored
