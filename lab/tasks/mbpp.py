"""MBPP (ID) -> HumanEval (OOD): code generation scored by running each problem's tests in
the sandbox (pass@1 with greedy decoding). Task name ``mbpp_humaneval``; only the ``code``
format has targets (answer/CoT arms are refused when the study is validated).

Data: ``data/mbpp/mbpp.jsonl`` (Austin et al. 2021, CC BY 4.0) and
``data/humaneval/HumanEval.jsonl.gz`` (Chen et al. 2021, MIT), loaded with the ``json``
builder of ``datasets.load_dataset``; ``task.source: hub`` reads
``google-research-datasets/mbpp`` (config ``full``) and ``openai/openai_humaneval``.

Splits (the standard MBPP task-id ranges; each a seeded sample, listed in task-id order):

- ``train``: MBPP task ids 601-974 (374; at most ``n_train``): FT trains on the reference
  solutions; k-shot arms draw their demos from it.
- ``dev``: MBPP 511-600 (the validation range; at most ``n_dev``), for the ID-dev loss.
- ``test``: MBPP 11-510 (at most ``n_test`` of 500).
- ``ood_humaneval``: HumanEval (at most ``n_test`` of 164).
- ``demos_mbpp``: MBPP 2, 3, 4, the fixed 3-shot prompt set of Austin et al. (arm key
  ``demos: mbpp``; not in the budgeted pool, never evaluated).

Prompts use the lab's one template (``Question: ...\\nAnswer:`` then the program on the next
lines). MBPP question: the problem text and, as is standard, its first test ("Your code
should pass this test: assert ..."). HumanEval question: the signature and docstring
(``prompt``). The reference program (target) is the MBPP solution, or HumanEval ``prompt +
canonical_solution``, with ``\\r`` and trailing spaces removed, tabs expanded and blank lines
dropped (a blank line ends a generated program).

Scoring (``eval/codegen.py``): the generation runs in the sandbox, then the problem's tests
(MBPP: setup code + its 3 asserts; HumanEval: ``check(entry_point)``), each top-level
statement run by the sandbox's harness; correct iff the harness reports that every statement
ran without an error within the time limit (an exit code proves nothing). For HumanEval the prompt is put in front of the generation (a generation
that redefines the function replaces the prompt's stub; a body completes it), so helpers
and imports defined in the prompt are available.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.recipe import TaskCfg
from lab.tasks.base import Example

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"
MBPP_FILE = "mbpp/mbpp.jsonl"
HUMANEVAL_FILE = "humaneval/HumanEval.jsonl.gz"
RANGES = {"train": (601, 974), "dev": (511, 600), "test": (11, 510)}
PROMPT_IDS = (2, 3, 4)


def clean_code(code: str) -> str:
    """No carriage returns, tabs expanded (Python's own tab stops), no trailing spaces, no
    blank lines: one block that the code stop string cannot cut."""
    lines = [line.expandtabs(8).rstrip() for line in code.replace("\r\n", "\n").split("\n")]
    return "\n".join(line for line in lines if line.strip())


def _load_json(path: Path) -> list[dict[str, Any]]:
    import datasets

    if not path.is_file():
        raise LabError(
            f"data file '{path}' not found; restore it (`git checkout -- data/`), point "
            "task.data_dir at a folder with the layout of data/, or set task.source: hub"
        )
    try:
        return list(datasets.load_dataset("json", data_files=str(path))["train"])
    except Exception as e:
        raise LabError(
            f"data file '{path}' could not be read ({type(e).__name__}); fix the file or "
            "restore it (`git checkout -- data/`)"
        ) from None


def _load(cfg: TaskCfg) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if cfg.source == "hub":
        import datasets

        try:
            mb = datasets.load_dataset("google-research-datasets/mbpp", "full")
            he = datasets.load_dataset("openai/openai_humaneval")["test"]
        except Exception as e:
            raise LabError(
                f"could not load MBPP/HumanEval from the hub ({type(e).__name__}); check the "
                "network or use task.source: local"
            ) from None
        return [r for split in sorted(mb) for r in mb[split]], list(he)
    root = Path(cfg.data_dir).expanduser().resolve() if cfg.data_dir else DEFAULT_DATA_DIR
    return _load_json(root / MBPP_FILE), _load_json(root / HUMANEVAL_FILE)


def _mbpp_example(split: str, rec: dict[str, Any]) -> Example:
    tests = list(rec["test_list"])
    question = f"{rec['text'].strip()}\nYour code should pass this test:\n{tests[0]}"
    setup = (rec.get("test_setup_code") or "").strip()
    return Example(
        id=f"{split}-{int(rec['task_id']):04d}",
        question=question,
        answer="",  # scored by its tests, not by an answer string
        rationale="",
        program=clean_code(rec["code"]),
        meta={
            "split": split, "source": "mbpp", "task_id": int(rec["task_id"]),
            "tests": "\n".join([setup, *tests]).strip() + "\n",
        },
    )  # fmt: skip


def _humaneval_example(split: str, i: int, rec: dict[str, Any]) -> Example:
    entry = rec["entry_point"]
    return Example(
        id=f"{split}-{i:04d}",
        question=rec["prompt"].strip(),
        answer="",
        rationale="",
        program=clean_code(rec["prompt"] + rec["canonical_solution"]),
        meta={
            "split": split, "source": "humaneval", "task_id": rec["task_id"],
            "entry_point": entry, "code_prefix": rec["prompt"],
            "tests": f"{rec['test']}\n\ncheck({entry})\n",
        },
    )  # fmt: skip


def _sample(xs: list[Any], n: int, tag: str) -> list[Any]:
    order = list(range(len(xs)))
    random.Random(tag).shuffle(order)
    return [xs[i] for i in sorted(order[:n])]


def build_mbpp_humaneval(cfg: TaskCfg) -> dict[str, list[Example]]:
    params = dict(cfg.params)
    if params:
        raise LabError(
            f"task mbpp_humaneval: params {sorted(params)} not understood; the one parameter "
            "is `probes`, which every task takes (e.g. probes: {bbh: {n_per_task: 5}})"
        )
    mbpp, humaneval = _load(cfg)
    by_id = {int(r["task_id"]): r for r in mbpp}
    missing = [t for t in (*PROMPT_IDS, 11, 974) if t not in by_id]
    if missing:
        raise LabError(f"MBPP data lacks task ids {missing}; restore data/mbpp/mbpp.jsonl")
    out: dict[str, list[Example]] = {}
    sizes = {"train": cfg.n_train, "dev": cfg.n_dev, "test": cfg.n_test}
    for split, (lo, hi) in RANGES.items():
        ids = [t for t in sorted(by_id) if lo <= t <= hi]
        pick = _sample(ids, sizes[split], f"mbpp-{cfg.seed}-{split}")
        out[split] = [_mbpp_example(split, by_id[t]) for t in pick]
    he = _sample(list(enumerate(humaneval)), cfg.n_test, f"humaneval-{cfg.seed}")
    out["ood_humaneval"] = [_humaneval_example("ood_humaneval", i, r) for i, r in he]
    out["demos_mbpp"] = [_mbpp_example("demos_mbpp", by_id[t]) for t in PROMPT_IDS]
    return out


def describe() -> dict[str, str]:
    return {
        "train": "ID pool: MBPP task ids 601-974 (reference solutions: the FT targets and demos)",
        "dev": "ID dev (not used by the arms): MBPP task ids 511-600",
        "test": "ID test: MBPP task ids 11-510, pass@1 (greedy) on the 3 tests of each problem",
        "ood_humaneval": "OOD HumanEval (164 problems), pass@1 (greedy) with check(entry_point)",
        "demos_mbpp": "fixed demo set (arm key `demos: mbpp`): MBPP 2, 3, 4, the 3-shot prompt "
        "of Austin et al. 2021; not from the budgeted pool, never evaluated",
    }
