"""Declarative tasks (lab/tasks/declarative.py): a YAML spec over local files in a layout of
the user's, its checks (one-line exit-2 errors), `task show`, lm-eval task YAMLs as split
sources, and the explicit output type that eval uses."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import yaml

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import Generation
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.recipe import TaskCfg, load_recipe, parse_recipe
from lab.study.cli import main
from lab.tasks import build_task, describe_task

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No network, as on this machine. `datasets` reads the variable when first imported: a
    worker that imported it in an earlier test also gets its setting patched (else the hub
    load below waited ~20 s on the network before failing)."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _csv(path: Path, rows: list[dict]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


@pytest.fixture
def data(tmp_path):
    """Capitals: a CSV with its own column names; the OOD split in a second file."""
    rows = [
        {
            "key": f"k{i}",
            "country_name": f"Land{i}",
            "capital_city": f"City{i}",
            "continent": "north" if i % 2 else "south",
            "gold": "yes" if i % 3 else "no",
        }
        for i in range(40)
    ]
    _csv(tmp_path / "capitals.csv", rows)
    ood = [
        {
            "key": f"o{i}",
            "country_name": f"Isle{i}",
            "capital_city": f"Port{i}",
            "continent": "sea",
            "gold": "yes",
        }
        for i in range(12)
    ]
    _csv(tmp_path / "islands.csv", ood)
    return tmp_path


def spec(**over) -> dict:
    base = {
        "data_dir": None,
        "defaults": {
            "source": {"path": "csv", "data_files": "capitals.csv"},
            "output_type": "generate",
            "extract": "exact",
            "id": "{{ lab.split }}-{{ key }}",
            "input": "What is the capital of {{ country_name }}?",
            "target": "{{ capital_city }}",
            "meta": {"continent": "{{ continent }}", "row": "{{ lab.row }}"},
        },
        "splits": {
            "train": {"where": "continent == 'north'"},
            "test": {"where": "continent == 'south'"},
            "ood_islands": {"source": {"path": "csv", "data_files": "islands.csv"}},
        },
    }
    for key, value in over.items():
        base[key] = value
    return base


def task(data: Path, s: dict, **kw) -> TaskCfg:
    s = {k: v for k, v in s.items() if v is not None}
    return TaskCfg(name="capitals", spec=s, data_dir=str(data), n_train=10, n_dev=3, n_test=5, **kw)


def test_spec_builds_splits_of_examples(data):
    s = build_task(task(data, spec()))
    assert list(s) == ["train", "dev", "test", "ood_islands"]
    assert {k: len(v) for k, v in s.items()} == {"train": 10, "dev": 3, "test": 5, "ood_islands": 5}
    ex = s["test"][0]
    assert ex.id.startswith("test-k") and ex.question.startswith("What is the capital of Land")
    assert ex.answer == ex.question.split("Land")[1].rstrip("?").join(["City", ""])
    assert (ex.output_type, ex.extractor) == ("generate", "exact")
    assert ex.meta["continent"] == "south" and isinstance(ex.meta["row"], int)
    assert not {e.id for e in s["train"]} & {e.id for e in s["dev"]}
    assert all(e.id.startswith("dev-") for e in s["dev"])
    again = build_task(task(data, spec()))
    assert [e.id for x in again.values() for e in x] == [e.id for x in s.values() for e in x]
    other = build_task(task(data, spec(), seed=1))
    assert [e.id for e in other["test"]] != [e.id for e in s["test"]]
    assert set(describe_task(task(data, spec()))) == set(s)


def test_multiple_choice_with_label_map_and_index_targets(data):
    mc = spec()
    mc["defaults"] = {
        **mc["defaults"],
        "output_type": "multiple_choice",
        "extract": None,
        "prompt": "Is {{ capital_city }} in {{ country_name }}? Answer:",
        "target": "{{ gold }}",
        "choices": ["Yes", "No"],
        "label_map": {"yes": "Yes", "no": "No"},
    }
    mc["defaults"] = {k: v for k, v in mc["defaults"].items() if v is not None}
    s = build_task(task(data, mc))
    ex = s["train"][0]
    assert ex.choices == (" Yes", " No") and ex.answer in ("Yes", "No")
    assert ex.prompt.startswith("Is City") and ex.output_type == "multiple_choice"
    idx = dict(mc, defaults={**mc["defaults"], "target": "{{ 0 if gold == 'yes' else 1 }}"})
    del idx["defaults"]["label_map"]
    assert [e.answer for e in build_task(task(data, idx))["train"]] == [
        e.answer for e in s["train"]
    ]


def _error(data: Path, s: dict, **kw) -> str:
    with pytest.raises(LabError) as e:
        build_task(task(data, s, **kw))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_missing_field_names_the_columns_and_the_closest(data):
    bad = spec()
    bad["defaults"] = {**bad["defaults"], "input": "What is the capital of {{ country }}?"}
    msg = _error(data, bad)
    assert "`input` uses 'country'" in msg and "did you mean 'country_name'" in msg
    assert "'capital_city'" in msg and "'continent'" in msg  # the actual columns


def test_template_failing_on_row_n(data):
    bad = spec()
    bad["defaults"] = {**bad["defaults"], "target": "{{ 10 // (lab.row - 7) }}"}
    assert "`target` fails on row 7 (ZeroDivisionError" in _error(data, bad)


def test_invalid_template_and_unknown_key(data):
    bad = spec()
    bad["defaults"] = {**bad["defaults"], "input": "{{ country_name "}
    assert "`input` is not a valid Jinja template" in _error(data, bad)
    typo = spec()
    typo["splits"] = {**typo["splits"], "test": {"wher": "continent == 'south'"}}
    assert "splits.test: unknown key 'wher' (did you mean 'where'?)" in _error(data, typo)
    typo = spec()
    typo["defaults"] = {**typo["defaults"], "inputs": "x"}
    assert "defaults: unknown key 'inputs' (did you mean 'input'?)" in _error(data, typo)


def test_empty_split(data):
    bad = spec()
    bad["splits"] = {**bad["splits"], "test": {"where": "continent == 'west'"}}
    assert "split test is empty (40 rows read, none kept)" in _error(data, bad)


def test_label_outside_the_choices(data):
    bad = spec()
    bad["defaults"] = {
        **bad["defaults"],
        "output_type": "multiple_choice",
        "target": "{{ gold }}",
        "choices": ["Yes", "No"],
    }
    del bad["defaults"]["extract"]
    msg = _error(data, bad)
    assert "gold label 'yes' is not one of the choices ['Yes', 'No']" in msg


def test_duplicate_ids(data):
    bad = spec()
    bad["defaults"] = {**bad["defaults"], "id": "{{ lab.split }}-{{ continent }}"}
    assert "example id 'train-north' repeats (rows 1 and 3)" in _error(data, bad)


def test_ood_split_holding_train_questions(data):
    bad = spec()
    bad["splits"] = {**bad["splits"], "ood_islands": {"where": "continent == 'north'"}}
    msg = _error(data, bad)
    assert "OOD split ood_islands holds 20 question(s) of the train pool" in msg


def test_missing_output_type_and_file(data):
    bad = spec()
    del bad["defaults"]["output_type"]
    assert "no `output_type`" in _error(data, bad)
    gone = spec()
    gone["defaults"] = {**gone["defaults"], "source": {"path": "csv", "data_files": "nope.csv"}}
    assert "nope.csv' not found" in _error(data, gone)


def test_arm_format_the_task_cannot_supply(data):
    from lab.study.plan import validate

    r = parse_recipe(
        {
            "name": "x",
            "model": "tiny-random",
            "task": task(data, spec()).model_dump(),
            "arms": [{"name": "lora_cot", "method": "lora", "format": "cot"}],
        }
    )
    with pytest.raises(
        LabError, match="arm 'lora_cot' uses format cot, but task 'capitals' has no rationale"
    ):
        validate(r, build_task(r.task))


def test_cli_errors_are_one_line_exit_2(data, capsys, tmp_path):
    bad = spec()
    bad["defaults"] = {**bad["defaults"], "input": "{{ country }}"}
    bad["data_dir"] = str(data)
    path = tmp_path / "bad_task.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in bad.items() if v is not None}))
    assert main(["task", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: task bad_task split train")


def test_task_show_on_the_custom_example(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's data_dir is relative to the working directory
    assert main(["task", "show", "recipes/custom_task_example.yaml"]) == 0
    out = capsys.readouterr().out
    assert "train                     150  generate: extract number" in out
    assert "ood_market                 40  generate" in out
    assert "formats the train pool supplies (arm `format:`): answer, cot, code" in out
    assert "=== ood_market, format cot (2 of 40) ===" in out
    assert "Answer: 1353 / 33 = 41. The answer is 41." in out
    assert "every arm's format is supplied by the task" in out


def test_custom_example_recipe(monkeypatch):
    monkeypatch.chdir(ROOT)
    r = load_recipe(ROOT / "recipes" / "custom_task_example.yaml", smoke=True)
    s = build_task(r.task)
    assert {k: len(v) for k, v in s.items()} == {"train": 64, "dev": 8, "test": 6, "ood_market": 6}
    ex = s["ood_market"][0]
    assert ex.answer == str(
        int(ex.program.split("total = ")[1].split()[0])
        // int(ex.program.split("units = ")[1].split()[0])
    )


def test_task_yaml_file_and_shipped_name(data, tmp_path):
    path = tmp_path / "capitals.yaml"
    path.write_text(yaml.safe_dump({**spec(), "data_dir": str(data)}))
    s = build_task(TaskCfg(name=str(path), n_train=10, n_dev=3, n_test=5))
    assert s["test"][0].id.startswith("test-k")
    with pytest.raises(LabError, match="unknown task 'rte_hanz' \\(did you mean 'rte_hans'"):
        build_task(TaskCfg(name="rte_hanz"))


def test_recipe_hash_unchanged_without_a_spec():
    """Recipes without `task.spec` keep the hash they had before it (resume safety): the
    hashes computed by the lab just before declarative tasks (after the precision and
    selection changes, which changed them on purpose)."""
    assert load_recipe(ROOT / "recipes" / "quickstart.yaml").hash() == "e3d28b2d66f91cf2"
    assert load_recipe(ROOT / "recipes" / "mnli_hans.yaml", smoke=True).hash() == "2c8f3dd1360411ec"


# --------------------------------------------------------------------------- lm-eval YAML


def _lm_eval(tmp_path: Path, extra: str = "") -> Path:
    rows = [
        {"q": f"Which is larger, {i} or {i + 3}?", "opts": [str(i), str(i + 3)], "label": 1}
        for i in range(10)
    ]
    (tmp_path / "larger.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "larger.yaml"
    path.write_text(
        "task: larger\ndataset_path: json\ndataset_kwargs:\n  data_files: larger.jsonl\n"
        "test_split: train\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: {{q}}\\nAnswer:"\ndoc_to_target: label\ndoc_to_choice: opts\n'
        "metric_list:\n  - metric: acc\n" + extra
    )
    return path


def test_lm_eval_task_yaml_as_an_ood_split(data, tmp_path):
    path = _lm_eval(tmp_path)
    s = spec()
    s["splits"] = {**s["splits"], "ood_larger": {"lm_eval": {"file": str(path)}, "limit": 8}}
    out = build_task(task(data, s))["ood_larger"]
    assert len(out) == 5 and out[0].id.startswith("ood_larger-0000")  # the default id
    assert all(int(e.id.split("-")[1]) < 8 for e in out)  # `limit` over the lm-eval rows
    ex = out[0]
    assert ex.output_type == "multiple_choice" and ex.prompt.startswith("Question: Which is larger")
    assert ex.choices[ex.gold_index] == ex.choices[1] and ex.answer == ex.choices[1].strip()


def test_lm_eval_unsupported_keys_are_refused(data, tmp_path):
    path = _lm_eval(tmp_path, "process_docs: !function utils.process_docs\n")
    s = spec()
    s["splits"] = {**s["splits"], "ood_larger": {"lm_eval": {"file": str(path)}}}
    msg = _error(data, s)
    assert "lm-eval keys ['process_docs'] are not supported" in msg


# --------------------------------------------------------------------------- scoring


class _LM:
    def __init__(self, texts):
        self.texts = texts

    def generate(self, requests, desc=""):
        return [Generation(t, 10, 3, "stop") for t in self.texts]


def _ex(answer: str, **kw) -> Example:
    return Example(id="x", question="q", answer=answer, rationale="", program="", **kw)


def test_eval_uses_the_explicit_output_type_not_the_fields():
    """A generated example whose meta happens to hold `tests` (a user's column) is scored by
    its extractor, not run as code; the old inference from fields ran it as a program."""
    ex = _ex("Paris", output_type="generate", extractor="exact", meta={"tests": "assert False"})
    preds, m = evaluate_split(_LM([" Paris."]), [ex], PromptSpec("answer"), 8, gold_logprob=False)
    assert preds[0]["correct"] and preds[0]["pred"] == "paris" and m["exact_match"] == 1.0


def test_extractors():
    regex = _ex("42", output_type="generate", extractor=r"regex:#(\d+)")
    letter = _ex(
        "B",
        output_type="generate",
        extractor="option_letter",
        meta={"options": {"A": "3", "B": "5"}},
    )
    number = _ex("7", output_type="generate", extractor="number")
    gens = [" value #42 here", " The answer is (B).", " 7 apples"]
    preds, _m = evaluate_split(
        _LM(gens), [regex, letter, number], PromptSpec("answer"), 8, gold_logprob=False
    )
    assert [p["correct"] for p in preds] == [True, True, True]
    assert preds[1]["match"] == "letter"
    cot = _ex("Lyon", output_type="generate", extractor="exact")
    preds, _m = evaluate_split(
        _LM([" It is in France. The answer is Lyon."]),
        [cot],
        PromptSpec("cot"),
        8,
        gold_logprob=False,
    )
    assert preds[0]["correct"]


def test_params_when_set_and_column_renames(data):
    """A param a recipe sets under task.params: read by templates, and its `when_set` keys
    (here: another file, with its columns renamed) merged over the spec."""
    _csv(
        data / "extra.csv",
        [{"k": f"e{i}", "land": f"Far{i}", "city": f"Town{i}"} for i in range(8)],
    )
    s = spec()
    s["params"] = {
        "style": {"default": "plain", "choices": ["plain", "polite"]},
        "extra": {
            "default": False,
            "when_set": {
                "splits": {
                    "ood_islands": {
                        "source": {
                            "path": "csv",
                            "data_files": "{{ 'extra' }}.csv",
                            "columns": {
                                "key": "k",
                                "country_name": "land",
                                "capital_city": "city",
                                "continent": "k",
                            },
                        }
                    }
                }
            },
        },
    }
    s["defaults"] = {
        **s["defaults"],
        "input": "{{ 'Please: ' if lab.params.style == 'polite' }}"
        "What is the capital of {{ country_name }}?",
    }
    plain = build_task(task(data, s))
    assert plain["ood_islands"][0].question.startswith("What is the capital of Isle")
    polite = build_task(task(data, s, params={"style": "polite", "extra": True}))
    assert polite["ood_islands"][0].question.startswith("Please: What is the capital of Far")
    assert polite["ood_islands"][0].id.startswith("ood_islands-e")
    assert "params.style='rude' is not one of ['plain', 'polite']" in _error(
        data, s, params={"style": "rude"}
    )
    assert "unknown param 'stlye' (did you mean 'style'?)" in _error(data, s, params={"stlye": 1})


def test_lm_eval_generate_until_is_scored_by_exact_match(data, tmp_path):
    rows = [{"question": f"Say the word {w}.", "answer": w} for w in ("red", "blue", "green")]
    (tmp_path / "say.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "say.yaml"
    path.write_text(
        "task: say\ndataset_path: json\ndataset_kwargs: {data_files: say.jsonl}\n"
        "test_split: train\noutput_type: generate_until\ndoc_to_text: question\n"
        "doc_to_target: answer\ngeneration_kwargs: {until: ['\\n']}\n"
    )
    s = spec()
    s["splits"] = {**s["splits"], "ood_say": {"lm_eval": {"file": str(path)}}}
    ex = build_task(task(data, s))["ood_say"][0]
    assert (ex.output_type, ex.extractor, ex.question) == ("generate", "exact", "Say the word red.")
    assert ex.prompt == "Say the word red." and ex.answer == "red"


def test_hub_source_offline_is_one_line(data):
    """A hub id is the same `source` as a local file; without network (HF_DATASETS_OFFLINE)
    its load fails with one line naming the source and the fix."""
    s = spec()
    s["splits"] = {
        **s["splits"],
        "ood_hub": {
            "source": {"path": "no-such-org/no-such-set", "split": "test", "revision": "main"}
        },
    }
    msg = _error(data, s)
    assert "split ood_hub: could not load 'no-such-org/no-such-set'" in msg
    assert msg.endswith("fix the source (a local file, or a hub id with network access)")


def test_fixed_demo_sets_are_kept_whole(data):
    """A `demos_<name>` split keeps all its rows whatever n_test (an arm's `demos: <name>`
    takes its first k); other splits are seeded samples of n_test."""
    s = spec()
    s["splits"] = {**s["splits"], "demos_fixed": {"where": "key in ('k1', 'k3', 'k5', 'k7')"}}
    out = build_task(task(data, s).model_copy(update={"n_test": 2}))
    assert [e.id for e in out["demos_fixed"]] == [
        "demos_fixed-k1",
        "demos_fixed-k3",
        "demos_fixed-k5",
        "demos_fixed-k7",
    ]
    assert len(out["test"]) == 2


def test_source_hook_the_arithmetic_generator():
    """A source hook (module:function) for data no file holds: the synthetic arithmetic
    generator as a declarative task gives the examples of the generator itself (and the
    shipped `arithmetic` task is this spec)."""
    from lab.tasks.arithmetic import ArithmeticConfig, build_arithmetic

    split = {"source": {"hook": "lab.tasks.arithmetic:split_rows", "args": {"split": "x"}}}
    names = ["train", "dev", "test", "ood_digits", "ood_steps", "ood_phrasing"]
    s = {
        "defaults": {
            "sample": "all",
            "output_type": "generate",
            "id": "{{ id }}",
            "input": "{{ question }}",
            "target": "{{ answer }}",
            "rationale": "{{ rationale }}",
            "program": "{{ program }}",
            "meta": {k: f"{{{{ {k} }}}}" for k in ("steps", "digits", "template", "ops")},
        },
        "splits": {n: {"source": {**split["source"], "args": {"split": n}}} for n in names},
    }
    sizes = {"n_train": 30, "n_dev": 5, "n_test": 7, "seed": 2}
    got = build_task(TaskCfg(name="arith_yaml", spec=s, **sizes))
    want = build_arithmetic(ArithmeticConfig(2, 30, 5, 7))
    assert build_task(TaskCfg(name="arithmetic", **sizes)) == got
    assert list(got) == names
    strip = lambda e: {**vars(e), "output_type": "", "extractor": ""}  # noqa: E731
    assert {k: [strip(e) for e in v] for k, v in got.items()} == {
        k: [strip(e) for e in v] for k, v in want.items()
    }
    assert got["test"][0].output_type == "generate" and got["test"][0].extractor == "number"
    bad = {**s, "splits": {**s["splits"], "test": {"source": {"hook": "lab.tasks.nope:rows"}}}}
    with pytest.raises(LabError, match="hook 'lab.tasks.nope:rows' could not be imported"):
        build_task(TaskCfg(name="arith_yaml", spec=bad, **sizes))


def test_a_pool_is_built_once_per_process_and_again_when_its_file_or_seed_changes(
    data, monkeypatch
):
    """A split's pool (every kept row rendered) is reused by the next build of the same
    task, seed and params (the tests and a study's planning build a task many times); an
    edited data file or another seed (templates may read lab.seed) builds it anew."""
    from lab.tasks import declarative

    s = spec()
    s["defaults"] = {**s["defaults"], "input": "{{ country_name }}? (seed {{ lab.seed }})"}
    cfg = task(data, s)
    first = build_task(cfg)
    rendered = []
    real = declarative.SplitBuilder.example

    def counted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        rendered.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(declarative.SplitBuilder, "example", counted)
    assert build_task(cfg) == first
    assert rendered == ["train"] * 3  # only dev's 3 rows (drawn from the train rows)
    rendered.clear()
    other = build_task(cfg.model_copy(update={"seed": 1}))
    assert len(rendered) > 40 and other["test"][0].question.endswith("(seed 1)")
    time.sleep(0.01)  # a new modification time
    rows = [
        {
            "key": f"k{i}",
            "country_name": f"New{i}",
            "capital_city": f"C{i}",
            "continent": "north" if i % 2 else "south",
            "gold": "no",
        }
        for i in range(40)
    ]
    _csv(data / "capitals.csv", rows)
    edited = build_task(cfg)
    assert all(e.question.startswith("New") for e in edited["test"] + edited["train"])
