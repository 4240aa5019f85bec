"""Labelled-data parity: which labelled examples each cell touches, how a fine-tuned arm
selects its checkpoint without touching more of them, and that paired predictions score
the same examples.

- Accounting. Every results row carries `labelled_examples`: the number of distinct
  labelled examples behind that row's predictions: the fine-tuned arm's training set, the
  examples its checkpoint was selected on, and the demos in the row's prompt (demos drawn
  from the pool, a fixed demo set such as `demos: wei`, the FT-then-ICL variant's demos). An
  example's label is all of its target text (answer, rationale, program): a CoT demo or
  training example counts once, like a plain-answer one. Probe rows (BBH, cross-task) count
  what the arm itself used and carry the probe prompt's own fixed demos in `probe_demos`
  (the same for every arm, not from this task's pool).
- Selection inside the budget. `train.select: last` (the default) touches no labelled
  example beyond the training set: one checkpoint, no dev loss. `train.select: best_dev`
  holds out the last `train.dev_fraction` of the arm's budgeted examples (at least 1, leaving
  at least 1 to train on), trains on the rest and picks the checkpoint with the lowest loss
  on the held-out ones; both the picked and the last checkpoint are evaluated. At budget b
  the arm uses b labelled examples either way, like the b-shot ICL arm. No arm uses the
  task's `dev` split.
- Pairing. Two arms are compared only when their rows' `labelled_examples` are equal (the
  report says "unequal budgets" otherwise), and only on predictions holding the same example
  ids (checked; a mismatch stops the report).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.prompts import prompt
from lab.core.recipe import Recipe, TrainCfg

# How `train.select: best_dev` selects, recorded in study.json: a study whose record lacks
# it was started by a lab that selected on the task's dev split, and is not resumed.
SELECTION = "held-out-inside-budget"


def held_out_size(n: int, cfg: TrainCfg) -> int:
    """Examples of an n-example budget held out for checkpoint selection (0: select last)."""
    if cfg.select != "best_dev":
        return 0
    return min(n - 1, max(1, round(n * cfg.dev_fraction)))


def split_budget(examples: Sequence[Example], cfg: TrainCfg) -> tuple[list[Example], list[Example]]:
    """(training set, held-out selection set) of a fine-tuned arm's budgeted examples: the
    held-out ones are the last of them, so both stay inside the budget."""
    cut = len(examples) - held_out_size(len(examples), cfg)
    return list(examples[:cut]), list(examples[cut:])


def check_selection(arm: str, cfg: TrainCfg, sizes: Iterable[int]) -> None:
    """best_dev needs at least 2 examples in every budget of the arm: 1 to train, 1 to select."""
    if cfg.select != "best_dev":
        return
    small = sorted({n for n in sizes if n < 2})
    if small:
        raise LabError(
            f"arm '{arm}' selects its checkpoint on examples held out from its budget "
            f"(train.select: best_dev) but has a budget of {small[0]} example(s); use "
            "train.select: last or a budget of at least 2"
        )


def content_key(ex: Example) -> str:
    """A hash of the example's normalised input (its prompt, lower-cased, whitespace
    collapsed): two examples with the same input share it, whatever their ids. A query or
    training target is never among its own demos by this key (eval/retrieve.py,
    train/icft_data.py)."""
    text = " ".join(prompt(ex).lower().split())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def count_labelled(*parts: Iterable[Example]) -> int:
    """Distinct labelled examples (by id) in the given sets: one used twice counts once."""
    return len({ex.id for part in parts for ex in part})


def fixed_demo_count(examples: Sequence[Example]) -> int:
    """The fixed demos of a probe split's prompt: cross-task probes list their demo ids, a
    BBH prompt holds its exemplars as 'Q:' blocks."""
    meta = examples[0].meta if examples else {}
    if "demo_ids" in meta:
        return len(meta["demo_ids"])
    return len(re.findall(r"^Q:", str(meta.get("prefix", "")), flags=re.M))


def same_selection(old_info: dict[str, Any], recipe: Recipe) -> bool:
    """Whether a recorded study selects checkpoints as this lab does: a best_dev study
    started before selection moved inside the budget is a different study."""
    best_dev = any(
        arm.method != "icl" and recipe.train_for(arm).select == "best_dev" for arm in recipe.arms
    )
    return not best_dev or old_info.get("selection") == SELECTION


def same_ids(preds: Iterable[dict[str, Any]], examples: Iterable[Example]) -> bool:
    """Whether a predictions file scores exactly the split's examples."""
    return sorted(str(p["id"]) for p in preds) == sorted(ex.id for ex in examples)


def check_same_ids(a: Sequence[str], b: Sequence[str], what: str) -> None:
    """Paired columns must be the same examples: stop, naming both sides, if they are not."""
    if list(a) == list(b):
        return
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    detail = (
        f"{len(only_a)} ids only in the first (e.g. {only_a[:2]}), "
        f"{len(only_b)} only in the second (e.g. {only_b[:2]})"
        if only_a or only_b
        else f"the same ids but {len(a)} vs {len(b)} predictions"
    )
    raise LabError(
        f"{what}: the paired predictions are not the same examples ({detail}); delete the "
        "stale predictions or cells and rerun the study"
    )


def describe(meta: dict[str, Any]) -> str:
    """A row's accounting for the results table: 'total = train + held out + demos'."""
    total = meta.get("labelled_examples")
    if total is None:
        return "not recorded"
    kept = meta.get("rationales_kept")
    own = f", {kept} self-written rationales kept" if kept is not None else ""
    if meta.get("method") == "icl":
        where = f" (fixed set '{meta['demos']}')" if meta.get("demos_fixed") else ""
        return f"{total} demos{where}{own}"
    if meta.get("method") == "ttt":
        return f"{total} demos (also test-time trained on)"
    if own:  # cot_self FT: the budget's answers all read, the kept ones trained on
        return f"{total} answers read{own}, {meta.get('n_train', 0)} trained on"
    text = f"{total} = {meta.get('n_train')} train + {meta.get('n_select', 0)} held out"
    probe = meta.get("ft_then_icl_k") or 0
    return text + (f" + {probe} demos" if probe else "")


def guarantees(recipe: Recipe) -> list[str]:
    """The report's fairness section: what this study guarantees, as markdown bullets."""
    rules = {
        recipe.train_for(a).select: recipe.train_for(a).dev_fraction
        for a in recipe.arms
        if a.method != "icl"
    }
    select = []
    if "last" in rules:
        select.append("`last`: the last checkpoint; no labelled example beyond the training set")
    if "best_dev" in rules:
        select.append(
            f"`best_dev`: the checkpoint with the lowest loss on the last {rules['best_dev']:.0%} "
            "of the arm's own budgeted examples, held out from its training set (both inside "
            "the budget); the last checkpoint is evaluated too"
        )
    return [
        "- labelled examples: every row counts the distinct labelled examples behind it "
        "(`labelled_examples`: training set + checkpoint-selection examples + prompt demos, "
        "fixed demo sets included; rationales and programs are part of an example's label); "
        "no arm uses the task's `dev` split",
        "- checkpoint selection (FT arms): " + ("; ".join(select) or "no FT arm"),
        "- pairing: an FT arm is tested only against a k-shot arm with the same budget and as "
        'many labelled examples (else the pair reads "unequal budgets"), on predictions '
        "checked to hold the same example ids",
        "- the answer: its words follow tested quantities (ID gain, OOD gain and their "
        "difference: one joint paired bootstrap, significant at p < 0.05); the strongest "
        "fine-tuned arm is exploratory, its p-values Holm-adjusted over the arms considered",
    ]
