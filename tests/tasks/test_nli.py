"""The NLI / paraphrase tasks (lab/tasks/yaml/, hooks in lab/tasks/nli.py) and the AQuA
multiple-choice split: loading, sizes, label mapping, the shared pattern, HANS sampling, params, hub mapping."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lab.core.errors import LabError
from lab.core.recipe import TaskCfg, load_recipe
from lab.tasks import build_task, describe_task
from lab.tasks.aqua import aqua_problems

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"


def cfg(name="mnli_hans", **kw) -> TaskCfg:
    return TaskCfg(**{"name": name, "n_train": 40, "n_dev": 10, "n_test": 12, **kw})


@pytest.fixture(scope="module")
def mnli():
    return build_task(cfg(n_train=100_000, n_dev=50, n_test=100_000))


def test_licences_are_in_the_project():
    for folder in ("mnli", "hans", "rte", "qqp", "paws_qqp"):
        assert any(p.name.startswith("LICENSE") for p in (DATA / folder).iterdir()), folder


@pytest.mark.parametrize(
    ("name", "ood"),
    [
        ("mnli_hans", ["ood_hans", "ood_mnli_mm"]),
        ("rte_hans", ["ood_hans"]),
        ("qqp_paws", ["ood_paws_qqp"]),
    ],
)
def test_splits_sizes_and_determinism(name, ood):
    a, b = build_task(cfg(name)), build_task(cfg(name))
    assert list(a) == ["train", "dev", "test", *ood]
    assert {k: len(v) for k, v in a.items()} == {
        "train": 40,
        "dev": 10,
        "test": 12,
        **{s: 12 for s in ood},
    }
    assert [e.id for s in a.values() for e in s] == [e.id for s in b.values() for e in s]
    assert not {e.meta["row"] for e in a["train"]} & {e.meta["row"] for e in a["dev"]}
    other = build_task(cfg(name, seed=1))
    assert [e.id for e in other["test"]] != [e.id for e in a["test"]]
    for split in a.values():
        for e in split:
            assert e.choices == (" Yes", " No") and e.answer in ("Yes", "No")
            assert e.prompt.endswith(" Yes or No? answer:")
    assert set(describe_task(name)) == set(a)


def test_full_sizes_and_binary_label_mapping(mnli):
    # binary (Mosbach et al.): neutral removed everywhere; contradiction -> No
    assert len(mnli["train"]) + len(mnli["dev"]) == 8999 - 2980  # pool minus its neutral
    assert len(mnli["test"]) == 9815 - 3123  # validation_matched minus neutral
    assert len(mnli["ood_mnli_mm"]) == 1000 - 319
    assert len(mnli["ood_hans"]) == 30000
    for split in ("train", "dev", "test", "ood_mnli_mm"):
        labels = Counter((e.meta["label"], e.answer) for e in mnli[split])
        assert set(labels) == {("entailment", "Yes"), ("contradiction", "No")}
    assert Counter(e.answer for e in mnli["test"]) == {"Yes": 3479, "No": 3213}
    hans = Counter((e.meta["label"], e.answer) for e in mnli["ood_hans"])
    assert hans == {("entailment", "Yes"): 15000, ("non-entailment", "No"): 15000}
    per_sub = Counter(e.meta["subcase"] for e in mnli["ood_hans"])
    assert len(per_sub) == 30 and set(per_sub.values()) == {1000}
    assert Counter(e.meta["heuristic"] for e in mnli["ood_hans"]) == {
        "lexical_overlap": 10000,
        "subsequence": 10000,
        "constituent": 10000,
    }


def test_merge_maps_neutral_to_no():
    s = build_task(cfg(params={"labels": "merge"}, n_test=100_000))
    assert len(s["test"]) == 9815
    assert Counter((e.meta["label"], e.answer) for e in s["test"]) == {
        ("entailment", "Yes"): 3479,
        ("neutral", "No"): 3123,
        ("contradiction", "No"): 3213,
    }


def test_rte_and_qqp_label_mapping():
    rte = build_task(cfg("rte_hans", n_test=1000))
    assert Counter((e.meta["label"], e.answer) for e in rte["test"]) == {
        ("entailment", "Yes"): 146,
        ("not_entailment", "No"): 131,
    }
    qqp = build_task(cfg("qqp_paws", n_test=1000))
    assert Counter((e.meta["label"], e.answer) for e in qqp["test"]) == {
        ("1", "Yes"): 377,
        ("0", "No"): 623,
    }
    assert Counter(e.answer for e in qqp["ood_paws_qqp"][:0]) == Counter()
    paws = build_task(cfg("qqp_paws", n_test=1000))["ood_paws_qqp"]
    assert Counter(e.answer for e in paws) == {"No": 486, "Yes": 191}


def test_pattern_exact_text():
    s = build_task(cfg("rte_hans"))
    e = s["test"][0]
    first = json.loads((DATA / "rte" / "val.jsonl").read_text().splitlines()[e.meta["row"]])
    assert e.prompt == f"{first['premise']} question: {first['hypothesis']} Yes or No? answer:"
    m = build_task(cfg("rte_hans", params={"pattern": "minimal"}))["test"][0]
    assert m.prompt == f"{first['premise']} {first['hypothesis']} ?"


def test_hans_sample_is_balanced_over_heuristics_labels_and_subcases():
    for size in (6, 12, 60):
        hans = build_task(cfg(n_test=size))["ood_hans"]
        heur = Counter(e.meta["heuristic"] for e in hans)
        assert set(heur.values()) == {size // 3}
        assert Counter(e.answer for e in hans) == {"Yes": size // 2, "No": size // 2}
        assert len({e.meta["subcase"] for e in hans}) == min(size, 30)


def test_lmbff_split_replaces_train_and_dev():
    s = build_task(cfg(params={"lmbff_split": "16-42"}))
    assert len(s["train"]) == 32 and len(s["dev"]) == 32  # 16 per class, neutral removed
    assert Counter(e.answer for e in s["train"]) == {"Yes": 16, "No": 16}
    assert s["train"][0].meta["source"] == "mnli_lmbff_16-42" and "genre" in s["train"][0].meta
    merged = build_task(cfg(params={"lmbff_split": "16-42", "labels": "merge"}))
    assert len(merged["train"]) == 48


@pytest.mark.parametrize(
    ("params", "match"),
    [({"label": "binary"}, "unknown param 'label' \\(did you mean 'labels'"),
     ({"labels": "three"}, "params.labels='three' is not one of"),
     ({"lmbff_split": "16-1"}, "params.lmbff_split='16-1'")],
)  # fmt: skip
def test_bad_params_are_lab_errors(params, match):
    with pytest.raises(LabError, match=match):
        build_task(cfg(params=params))
    # rte_hans is declarative (lab/tasks/yaml/rte_hans.yaml): its one param is `pattern`
    with pytest.raises(LabError, match=r"unknown param 'lmbff_split'; known params: \['pattern'\]"):
        build_task(cfg("rte_hans", params={"lmbff_split": "16-42"}))


def test_missing_data_file_is_a_lab_error(tmp_path):
    with pytest.raises(LabError, match="not found; restore it"):
        build_task(cfg(data_dir=str(tmp_path)))


def test_hub_source_maps_integer_labels(monkeypatch):
    """`source: hub` (no network: a fake load_dataset with the hub datasets' fields)."""
    import datasets

    mnli = [{"premise": f"P{i}.", "hypothesis": f"H{i}.", "label": i % 3} for i in range(30)]
    hans = [
        {
            "premise": "A .",
            "hypothesis": "B .",
            "label": i % 2,
            "heuristic": "subsequence",
            "subcase": f"s{i % 2}",
        }
        for i in range(10)
    ]

    def load_dataset(path, name=None, split=None, **kw):
        if path == "nyu-mll/multi_nli":  # each split its own sentences, as on the hub
            return [{**r, "premise": f"{split} {r['premise']}"} for r in mnli]
        return {"jhu-cogsci/hans": hans}[path]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    s = build_task(cfg(source="hub", n_train=5, n_dev=2, n_test=4))
    assert {(e.meta["label"], e.answer) for e in s["test"]} <= {
        ("entailment", "Yes"),
        ("contradiction", "No"),
    }
    assert {(e.meta["label"], e.answer) for e in s["ood_hans"]} == {
        ("entailment", "Yes"),
        ("non-entailment", "No"),
    }


def test_aqua_is_a_multiple_choice_ood_split_of_gsm8k():
    rows, dropped = aqua_problems(TaskCfg(name="gsm8k"))
    assert (len(rows), dropped) == (247, 7)
    s = build_task(TaskCfg(name="gsm8k", n_train=10, n_dev=2, n_test=1000))
    aqua = s["ood_aqua"]
    assert len(aqua) == 247 and "ood_aqua" in describe_task("gsm8k")
    for e in aqua:
        assert len(e.choices) == 5 and len(set(e.choices)) == 5
        assert e.choices[e.gold_index] == f" {e.answer}"
        assert "ABCDE"[e.gold_index] == e.meta["gold_letter"]
        assert e.prompt == ""  # the gsm8k template, like every gsm8k split


@pytest.mark.parametrize("name", ["mnli_hans", "rte_hans", "qqp_paws"])
def test_recipes_validate(name):
    path = ROOT / "recipes" / f"{name}.yaml"
    for smoke in (False, True):
        r = load_recipe(path, smoke=smoke)
        assert r.train.select == "best_dev" and r.task.name == name
    full = load_recipe(path)
    assert next(a.k for a in full.arms if a.name == "icl_16shot") == 16
    lora = {a.name: full.train_for(a).n_train for a in full.arms if a.method == "lora"}
    assert lora == {"lora_16": 16, "lora_128": 128, "lora_1024": 1024}
    assert len(full.seeds) >= 5


def test_mnli_reduced_profile():
    r = load_recipe(ROOT / "recipes" / "mnli_hans.yaml", profile="reduced")
    assert r.name == "mnli_hans_reduced" and r.task.n_test == 40 and r.seeds == [0]
    assert [a.name for a in r.arms] == ["zero_shot", "icl_16shot", "lora_16", "lora_128"]
    assert r.train.select == "best_dev" and r.task.params["labels"] == "binary"


def test_balanced_sampling_prefixes_are_class_balanced_and_nest():
    """sampling: balanced (Mosbach et al.'s demo sampling): every prefix of a data seed's
    order holds each label to within one example; the order is a permutation of the pool,
    differs between seeds, and is the random order's examples regrouped."""
    from lab.core.recipe import parse_recipe
    from lab.study.plan import data_order

    pool = build_task(TaskCfg(name="mnli_hans", n_train=200, n_dev=8, n_test=8))["train"]
    recipe = parse_recipe(
        {
            "name": "b",
            "model": "tiny-random",
            "task": {"name": "mnli_hans"},
            "sampling": "balanced",
            "arms": [{"name": "a", "method": "icl", "k": 4}],
        },
        where="test",
    )
    rand = data_order(recipe.model_copy(update={"sampling": "random"}), pool, 0)
    bal = data_order(recipe, pool, 0)
    assert sorted(e.id for e in bal) == sorted(e.id for e in pool)
    assert Counter(e.answer for e in rand[:16]) != Counter({"Yes": 8, "No": 8})  # seed 0
    for b in range(1, len(bal) + 1):
        counts = Counter(e.answer for e in bal[:b])
        assert max(counts.values()) - min(counts.values(), default=0) <= 1 or len(counts) < 2
        if b >= 2:
            assert len(counts) == 2, b
        if min(counts.values()) == Counter(e.answer for e in pool).most_common()[-1][1]:
            break  # the rarer label is used up: the rest is the other label
    for label in ("Yes", "No"):  # each label keeps its random-order sequence
        assert [e.id for e in bal if e.answer == label] == [e.id for e in rand if e.answer == label]
    assert [e.id for e in data_order(recipe, pool, 1)] != [e.id for e in bal]
