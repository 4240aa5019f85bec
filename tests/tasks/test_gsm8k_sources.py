"""Where the gsm8k task's data come from (lab/tasks/math_sources.py, lab/tasks/math_sets.py):
the checksums of the copies in data/, another data folder (task.data_dir), the one-line
errors for a missing, empty or corrupt file, and `task.source: hub` (with a fake hub)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from gsm8k_record import QUESTION, SOLUTION

from lab.core.errors import LabError
from lab.core.recipe import TaskCfg
from lab.tasks import build_task, math_sets, math_sources
from lab.tasks.aqua import aqua_row

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
BIG = 100_000  # "all of it"


def cfg(**kw) -> TaskCfg:
    return TaskCfg(**{"name": "gsm8k", "n_train": 40, "n_dev": 10, "n_test": 12, **kw})


# ------------------------------------------------------------------------- data provenance


def test_data_files_match_the_checksums_in_data_readme():
    rows = re.findall(
        r"^\| `([^`]+)` \| (\d+) \|[ \d]*\| `([0-9a-f]{64})` \|$",
        (DATA / "README.md").read_text(),
        re.M,
    )
    assert len(rows) >= 16
    for rel, size, sha in rows:
        blob = (DATA / rel).read_bytes()
        assert len(blob) == int(size), rel
        assert hashlib.sha256(blob).hexdigest() == sha, rel
    for folder in (
        "gsm8k",
        "svamp",
        "ASDiv",
        "MultiArith",
        "AddSub",
        "SingleEq",
        "AQuA",
        "bbh",
        "mbpp",
        "humaneval",
    ):
        assert any(p.name.startswith("LICENSE") for p in (DATA / folder).iterdir()), folder


# ------------------------------------------------------------------------- loading errors


def _small_data_dir(tmp_path: Path, lines: int = 60) -> Path:
    """A data folder with the layout of data/: the first `lines` GSM8K problems of each file,
    the OOD sets as they are."""
    root = tmp_path / "data"
    for src in math_sources.SOURCES.values():
        dst = root / src.local
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.local.startswith("gsm8k/"):
            head = (DATA / src.local).read_text(encoding="utf-8").splitlines()[:lines]
            dst.write_text("\n".join(head) + "\n", encoding="utf-8")
        else:
            shutil.copyfile(DATA / src.local, dst)
    return root


def test_data_dir_points_the_task_at_another_folder(tmp_path):
    root = _small_data_dir(tmp_path)
    splits = build_task(cfg(data_dir=str(root), n_train=BIG, n_dev=5, n_test=BIG))
    assert (len(splits["train"]), len(splits["dev"]), len(splits["test"])) == (55, 5, 60)


def test_missing_file_names_the_file_and_the_fix(tmp_path):
    root = _small_data_dir(tmp_path)
    (root / "MultiArith" / "MultiArith.json").unlink()
    with pytest.raises(LabError) as e:
        build_task(cfg(data_dir=str(root)))
    msg = str(e.value)
    assert "MultiArith.json" in msg and "not found" in msg
    assert "git checkout -- data/" in msg and "task.data_dir" in msg and "source: hub" in msg
    with pytest.raises(LabError, match="not found"):
        build_task(cfg(data_dir=str(tmp_path / "nowhere")))


def test_corrupt_json_line_names_file_and_line(tmp_path):
    root = _small_data_dir(tmp_path)
    path = root / "gsm8k" / "test.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4][:-10]  # truncated record on line 5
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LabError, match=r"gsm8k/test\.jsonl' line 5: not valid JSON"):
        build_task(cfg(data_dir=str(root)))


def test_corrupt_json_array_names_file_and_line(tmp_path):
    root = _small_data_dir(tmp_path)
    path = root / "svamp" / "SVAMP.json"
    text = path.read_text(encoding="utf-8").replace('"Answer": 51.0,', '"Answer": 51.0,,', 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabError, match=r"SVAMP\.json' line 7: not valid JSON"):
        build_task(cfg(data_dir=str(root)))


def test_record_without_fields_names_file_and_line(tmp_path):
    root = _small_data_dir(tmp_path)
    path = root / "gsm8k" / "train.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = json.dumps({"question": "What?", "answer": "no final answer"})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LabError, match=r"train\.jsonl line 3: no numeric final answer"):
        build_task(cfg(data_dir=str(root)))


# ------------------------------------------------------------------------- hub source


def test_hub_source_maps_the_hub_fields(monkeypatch):
    """`source: hub` with the hub datasets' field names (no network: a fake load_dataset)."""
    import datasets

    gsm = {"question": QUESTION, "answer": SOLUTION}
    fake = {
        ("openai/gsm8k", "main"): {"train": [gsm] * 1 + [{**gsm, "question": f"Q{i}?"}
                                                          for i in range(30)],
                                   "test": [{**gsm, "question": f"T{i}?"} for i in range(5)]},
        ("ChilleD/SVAMP", None): {
            "train": [{"ID": "chal-1", "Body": "Each pack costs 76 dollars", "Question":
                       "How much?", "Equation": "", "Answer": 76.0, "Type": "x",
                       "question_concat": ""}],
            "test": [{"ID": "chal-2", "Body": "B.", "Question": "Q?", "Equation": "",
                      "Answer": 2.5, "Type": "y", "question_concat": ""}],
        },
        ("EleutherAI/asdiv", None): {"validation": [
            {"body": "Seven apples.", "question": "How many?", "solution_type": "Addition",
             "answer": "7 (apples)", "formula": "7=7"},
            {"body": "A.", "question": "Who?", "solution_type": "", "answer": "Mrs. Hilt",
             "formula": ""},
        ]},
        ("ChilleD/MultiArith", None): {"train": [{"question": "M?", "final_ans": "39"}],
                                       "test": []},
    }  # fmt: skip
    aqua = {
        "question": "Q?",
        "options": ["A)1", "B)2", "C)3", "D)4", "E)5"],
        "correct": "B",
        "rationale": "",
    }
    kojima = {"iIndex": 1, "lEquations": [], "lSolutions": ["43"], "sQuestion": " Joan ? "}

    def load_dataset(path, name=None, data_files=None, **kw):
        if data_files:
            assert data_files.startswith(math_sources.KOJIMA)
            if data_files.endswith("AQuA/test.json"):
                return {"train": [aqua]}
            return {"train": [kojima]}
        return fake[(path, name)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    try:
        splits = build_task(cfg(source="hub", n_train=BIG, n_dev=3))
    finally:
        math_sets.clear_cache()
    assert len(splits["train"]) == 28 and len(splits["test"]) == 5
    assert splits["train"][0].program == "s1 = 48 / 2\ns2 = 48 + s1\nprint(s2)"
    assert [e.answer for e in splits["ood_svamp"]] == ["2.5", "76"]  # sorted split order
    assert splits["ood_svamp"][1].question == "Each pack costs 76 dollars. How much?"
    assert [(e.question, e.answer) for e in splits["ood_asdiv"]] == [
        ("Seven apples. How many?", "7")
    ]
    assert [e.answer for e in splits["ood_multiarith"]] == ["39"]
    assert [(e.question, e.answer) for e in splits["ood_addsub"]] == [("Joan ?", "43")]
    assert [(e.answer, e.gold_index) for e in splits["ood_aqua"]] == [("2", 1)]
    assert [(e.question, e.answer) for e in splits["ood_aqua_gen"]] == [
        ("Q? Answer Choices: (A) 1 (B) 2 (C) 3 (D) 4 (E) 5", "B")
    ]


def test_hub_failure_is_a_lab_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LabError, match="could not load 'openai/gsm8k' from the hub"):
        build_task(cfg(source="hub"))


def test_aqua_loads_for_multiple_choice():
    rows = [aqua_row(r) for r in math_sources.load_records("aqua", cfg())]
    assert len(rows) == 254
    assert all(sorted(r["options"]) == list("ABCDE") for r in rows)
    assert all(r["answer"] in "ABCDE" for r in rows)


def test_aqua_record_without_its_fields_is_a_lab_error(tmp_path):
    """An AQuA record without 'correct' ends in one line naming the fix (the Python builder
    read its gold letter as 'None' and built the task)."""
    root = _small_data_dir(tmp_path)
    path = root / "AQuA" / "test.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[3])
    del rec["correct"]
    lines[3] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LabError, match=r"AQuA record without 'question' and 'correct'.*restore"):
        build_task(cfg(data_dir=str(root)))
