"""The gsm8k task (lab/tasks/yaml/gsm8k.yaml and its hooks: lab/tasks/math_sets.py,
gsm8k_programs.py, aqua.py): splits (and their stored fingerprint: the examples of the former
Python builder), the CoT and code formats, program verification, answer extraction on math
outputs. Data files, loading errors and the hub: tests/tasks/test_gsm8k_sources.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from gsm8k_record import QUESTION, SOLUTION

from eval.extract import extract, extract_cot
from eval.sandbox import run_program
from lab.core.errors import LabError
from lab.core.example import usable
from lab.core.numbers import first_number, is_correct, last_number
from lab.core.prompts import STOP
from lab.core.recipe import TaskCfg, load_recipe
from lab.tasks import build_task, describe_task, math_sets
from lab.tasks import gsm8k_programs as g

ROOT = Path(__file__).resolve().parents[2]
OOD = [f"ood_{n}" for n in math_sets.OOD_SETS]
BIG = 100_000  # "all of it"


def cfg(**kw) -> TaskCfg:
    return TaskCfg(**{"name": "gsm8k", "n_train": 40, "n_dev": 10, "n_test": 12, **kw})


@pytest.fixture(scope="module")
def full():
    """Every problem: train = GSM8K train minus 30 dev, all of test, every OOD set."""
    return build_task(cfg(n_train=BIG, n_dev=30, n_test=BIG))


# ------------------------------------------------------------------------- splits


def test_split_sizes_and_order(full):
    small = build_task(cfg())
    # (a declarative task lists its fixed demo sets last; the Python builder had demos_wei
    # before the AQuA splits: only the eval splits' order matters to a run, and it is kept)
    assert list(small) == ["train", "dev", "test", *OOD, "ood_aqua", "ood_aqua_gen", "demos_wei"]
    assert {k: len(v) for k, v in small.items()} == {
        "train": 40,
        "dev": 10,
        "test": 12,
        **{s: 12 for s in OOD},
        "demos_wei": 8,
        "ood_aqua": 12,
        "ood_aqua_gen": 12,
    }
    sizes = {k: len(v) for k, v in full.items()}
    assert sizes == {
        "train": 7473 - 30,
        "dev": 30,
        "test": 1319,
        "ood_svamp": 1000,
        "ood_asdiv": 2158,  # 2305 minus 146 non-numeric answers, 1 repeated question
        "ood_multiarith": 580,  # 600 minus 20 repeated questions
        "ood_addsub": 395,
        "ood_singleeq": 508,
        "demos_wei": 8,
        "ood_aqua": 247,  # multiple choice (lab/tasks/aqua.py): 254 minus 7 repeated options
        "ood_aqua_gen": 247,  # the same problems, scored by generation + option extraction
    }


def test_no_overlap_and_unique_ids(full):
    rows = {s: {ex.meta["row"] for ex in full[s]} for s in ("train", "dev")}
    assert not rows["train"] & rows["dev"]
    assert len(rows["train"] | rows["dev"]) == 7473  # dev carved out of train, nothing lost
    q = {s: {ex.question.lower() for ex in exs} for s, exs in full.items()}
    assert not q["train"] & q["test"] and not q["dev"] & q["test"]
    for s in OOD:
        assert not q[s] & (q["train"] | q["dev"] | q["test"]), s
        assert len(q[s]) == len(full[s]), f"{s} has a repeated question"
    for s, exs in full.items():
        assert len({ex.id for ex in exs}) == len(exs)
        assert all(ex.id.startswith(f"{s}-") and ex.meta["split"] == s for ex in exs)
        assert [ex.meta["row"] for ex in exs] == sorted(ex.meta["row"] for ex in exs)


def test_every_answer_is_a_normalised_number(full):
    for s, exs in full.items():
        if s in ("ood_aqua", "ood_aqua_gen"):  # the gold option's text / letter
            continue
        for ex in exs:
            assert is_correct(ex.answer, ex.answer) and "," not in ex.answer, (s, ex.answer)
    by_id = {ex.meta.get("source_id"): ex for ex in full["ood_asdiv"]}
    assert by_id["nluds-0001"].answer == "9"  # "9 (apples)"
    assert full["ood_svamp"][0].answer == "51"  # 51.0
    assert full["ood_svamp"][0].question == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack. "
        "How much do you have to pay to buy each pack?"
    )


def test_ood_sets_are_eval_only(full):
    for s in OOD:
        assert all(ex.rationale == "" and ex.program == "" for ex in full[s])
        assert usable(full[s], "code") == [] and usable(full[s], "answer") == full[s]


def test_seeded_sampling_is_deterministic_and_nested():
    a, b = build_task(cfg(seed=3)), build_task(cfg(seed=3))
    assert {s: [e.to_dict() for e in v] for s, v in a.items()} == {
        s: [e.to_dict() for e in v] for s, v in b.items()
    }
    other = build_task(cfg(seed=4))
    assert {e.id for e in other["dev"]} != {e.id for e in a["dev"]}
    assert {e.id for e in other["test"]} != {e.id for e in a["test"]}
    bigger = build_task(cfg(seed=3, n_test=24, n_train=80))
    for s in ["test", *OOD]:  # a larger sample only adds problems
        assert {e.id for e in a[s]} <= {e.id for e in bigger[s]}, s
    assert {e.id for e in a["train"]} <= {e.id for e in bigger["train"]}
    assert [e.id for e in a["dev"]] == [e.id for e in bigger["dev"]]


def test_task_rejects_params():
    with pytest.raises(LabError, match=r"task gsm8k: unknown param 'ops'"):
        build_task(cfg(params={"ops": "+"}))


# Per split, the sha256 (first 16 hex digits) of its examples' fields as JSON (without
# `output_type` / `extractor`, which the Python builder did not set): computed with the
# Python builder at 3670e5d (lab/tasks/gsm8k.py, lab/tasks/aqua.py) and equal for the YAML.
FINGERPRINT_FULL = {
    "demos_wei": "72f94ffbb3b52823",
    "dev": "dac548a30ed36166",
    "ood_addsub": "fdeb12a16b43857f",
    "ood_aqua": "133e57b54a3841f7",
    "ood_aqua_gen": "b9175c6797741a3a",
    "ood_asdiv": "7c241536d4aa404c",
    "ood_multiarith": "be3007e49637b8bb",
    "ood_singleeq": "4e2a8b3485380621",
    "ood_svamp": "b76320a3804325f6",
    "test": "cdd524f6423c854a",
    "train": "02552fbc94d231bd",
}
FINGERPRINT_SEED3 = {
    "demos_wei": "72f94ffbb3b52823",
    "dev": "668607c84ad35bf4",
    "ood_addsub": "271ef2cde276980e",
    "ood_aqua": "e6c276b3533ea7d9",
    "ood_aqua_gen": "d773478302d4089b",
    "ood_asdiv": "950891f21c370b8a",
    "ood_multiarith": "100ce04f619d0886",
    "ood_singleeq": "2e15f83fcee56bc7",
    "ood_svamp": "908c0a825a2339dd",
    "test": "1c3e23237bdf6c99",
    "train": "33c3b06728c656e2",
}


def fingerprint(splits: dict) -> dict[str, str]:
    out = {}
    for name, xs in sorted(splits.items()):
        rows = [
            {k: v for k, v in vars(e).items() if k not in ("output_type", "extractor")} for e in xs
        ]
        blob = json.dumps(rows, sort_keys=True, default=list).encode()
        out[name] = hashlib.sha256(blob).hexdigest()[:16]
    return out


def test_splits_equal_the_stored_fingerprint(full):
    """Every example (ids, texts, formats, meta, choices) of every split, at full size and
    at small seeded sizes, is that of the former Python builder; and each split says how
    it is scored."""
    assert fingerprint(full) == FINGERPRINT_FULL
    assert fingerprint(build_task(cfg(seed=3))) == FINGERPRINT_SEED3
    scoring = {(s, e.output_type, e.extractor) for s, xs in full.items() for e in xs}
    assert scoring == {
        *((s, "generate", "number") for s in ["train", "dev", "test", *OOD, "demos_wei"]),
        ("ood_aqua", "multiple_choice", ""),
        ("ood_aqua_gen", "generate", "option_letter"),
    }


# ------------------------------------------------------------------------- CoT format


def test_clean_rationale_hand_example():
    assert g.clean_rationale(SOLUTION, "72") == (
        "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in "
        "April and May. The answer is 72."
    )


def test_every_rationale_is_one_clean_line(full):
    for s in ("train", "dev", "test"):
        for ex in full[s]:
            r = ex.rationale
            assert "<<" not in r and ">>" not in r and "####" not in r, ex.id
            assert STOP["cot"][0] not in r, ex.id  # one line: the CoT stop string is "\n"
            assert r.endswith(f"The answer is {ex.answer}."), ex.id
            assert extract_cot(" " + r) == ex.answer, ex.id


def test_gold_answer_with_thousands_separator():
    assert g.gsm8k_gold("so $1,200 in total\n#### 1,200") == "1200"
    assert g.gsm8k_gold("no marker") is None


# ------------------------------------------------------------------------- code format


def test_program_hand_examples():
    prog, why = g.derive_program(QUESTION, SOLUTION, "72")
    assert why is None
    assert prog == "s1 = 48 / 2\ns2 = 48 + s1\nprint(s2)"  # 48 is in the question: a literal

    q = "Weng earns $12 an hour for babysitting. She did 50 minutes. How much did she earn?"
    sol = "12/60 = $<<12/60=0.2>>0.2 per minute.\n0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"
    assert g.derive_program(q, sol, "10") == ("s1 = 12 / 60\ns2 = s1 * 50\nprint(s2)", None)

    # An annotated result rounded by the annotator: substituting the exact step result
    # (125.99999999999999) would miss the gold answer; the literal 126 is kept instead.
    q = "They buy goods for $90 and sell them for 7/5 of that. What is their profit?"
    sol = "7/5*90=$<<7/5*90=126>>126\n$126-$90=$<<126-90=36>>36\n#### 36"
    assert g.derive_program(q, sol, "36") == ("s1 = 7 / 5 * 90\ns2 = 126 - 90\nprint(s2)", None)


def test_program_failures_are_reported_not_raised():
    assert g.derive_program("q", "He has 5 + 3 = 8.\n#### 8", "8") == (
        "",
        "no calculator annotations",
    )
    # the last annotated step is not the final answer (the last step was not annotated)
    sol = "5*7=<<5*7=35>>35\n75-35 = 40, 40/4 = 10\n#### 10"
    assert g.derive_program("q", sol, "10") == ("", "last step is not the gold answer")


def test_program_verification_count_on_gsm8k_train(full):
    stats = math_sets.program_stats()
    train = stats["train"]
    assert train["total"] == 7473
    assert train["verified"] == 6994 and train["failed"] == 479
    assert train["failures"] == {
        "last step is not the gold answer": 384,
        "no calculator annotations": 95,
    }
    assert stats["test"]["total"] == 1319
    assert "6994/7473" in describe_task("gsm8k")["train"]
    for s in ("train", "dev", "test"):
        for ex in full[s]:
            assert bool(ex.program) == ex.meta["program_ok"], ex.id
            if ex.program:
                assert g.verify_program(ex.program, ex.answer), ex.id
                assert ex.program.splitlines()[-1].startswith("print(s")
    code = usable(full["train"], "code")
    assert 0 < len(code) < len(full["train"])
    assert all(ex.program for ex in code)
    assert usable(full["train"], "cot") == full["train"]


def test_restricted_interpreter_matches_python_in_the_sandbox(full):
    programs = [ex.program for ex in full["dev"] if ex.program][:3]
    programs.append("s1 = 10 / 3\ns2 = s1 * 3 - 2 ** 3 + 7 // 2 % 5\nprint(s2)\nprint(-s1)")
    for prog in programs:
        res = run_program(prog)
        assert res.error is None
        assert g.run_arithmetic(prog) == res.stdout
        assert extract("\n" + prog, "code")["pred"] == last_number(res.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "program",
    ["import os\nprint(1)", "s1 = open('x')\nprint(s1)", "s1 = 2 ** 10 ** 10\nprint(s1)"],
)
def test_restricted_interpreter_rejects_everything_else(program):
    with pytest.raises(ValueError):
        g.run_arithmetic(program)
    assert not g.verify_program(program, "1")


# ------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "gen, want",
    [
        (" 48 / 2 = 24. 48 + 24 = 72. The answer is 72.", "72"),
        (" She earns $1,234.50 in total. The answer is $1,234.50.", "1234.5"),
        (" The answer is 18 dollars.", "18"),
        (" The answer is: $ 18.00", "18"),
        (" The final answer is **42**.", "42"),
        (" The answer is -5.", "-5"),
        (" The answer is .5", "0.5"),
        (" 10-4 = 6 apples are left. The answer is 6", "6"),
        (" So she has 5 apples left.", "5"),  # no "answer is": the last number
        (" 2,000 - 500 = 1,500 so the total is 1,500 dollars", "1500"),
        (" It drops to x = -3", "-3"),
        (" 16 - 3 - 4 = 9 eggs\n#### 9", "9"),
    ],
)
def test_cot_extraction_on_math_outputs(gen, want):
    assert extract(gen, "cot")["pred"] == want


@pytest.mark.parametrize(
    "gen, want",
    [
        (" $1,200 per month", "1200"),
        (" 18 dollars.", "18"),
        (" 3.50.", "3.5"),
        (" -7 degrees", "-7"),
        (" a 20-year-old", "20"),
        (" 1,2,3", "1"),
        (" .25", "0.25"),
    ],
)
def test_answer_extraction_on_math_outputs(gen, want):
    assert first_number(gen) == want


def test_last_number_does_not_read_a_minus_as_a_sign():
    assert last_number("10-4") == "4"
    assert last_number("items 1,2,3") == "3"
    assert last_number("(-2)") == "-2"


# ------------------------------------------------------------------------- extras, recipe


def test_wei_exemplars(full):
    demos = full["demos_wei"]
    assert len(demos) == 8
    assert demos[0].question.startswith("There are 15 trees in the grove.")
    for d in demos:
        assert d.rationale.endswith(f"The answer is {d.answer}.")
        assert extract_cot(d.rationale) == d.answer
    assert usable(demos, "cot") == demos


def test_recipe_validates_with_and_without_smoke():
    path = ROOT / "recipes" / "gsm8k_reasoning.yaml"
    for smoke in (False, True):
        r = load_recipe(path, smoke=smoke)
        assert r.task.name == "gsm8k"
        assert {a.name for a in r.arms} == {
            "zero_shot",
            "icl_8shot_cot",
            "zero_shot_cot",
            "lora_answer",
            "lora_cot",
            "lora_code",
        }
    assert load_recipe(path).model == "smollm2-135m-instruct"
    arm = next(a for a in load_recipe(path).arms if a.name == "icl_8shot_cot")
    assert (arm.k, arm.demos) == (8, "wei")  # the standard Wei et al. exemplars
