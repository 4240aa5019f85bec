"""Self-written rationales (`format: cot_self`; STaR's filter, Reinforced ICL's demos): for the
budget's examples (question and gold answer only), the base model writes a rationale with
the zero-shot CoT prompt (`prompt(ex, ZERO_SHOT_COT_TRIGGER)`, greedy decoding, the study's
`eval.max_new_tokens.cot`); a rationale is kept when its generation ended by itself (a stop
string or EOS, not the length limit) and the task's own scoring of it, with the CoT answer
extraction, is correct. The kept ones serve as CoT demos (`icl`, format cot_self) and CoT
fine-tuning targets (`lora` / `full`, format cot_self); from there on they are shown, trained
on, generated and extracted as `cot` rationales (lab/core/prompts.py `written_as`).

A kept rationale is the generation on one line (whitespace collapsed), ending in "The answer
is <gold>." when it does not already state "answer is" (the answer it stated was the gold
one: it passed the check), so that demos and training targets end as the CoT extraction
reads them. Labelled examples counted: the whole budget (the gold answers are read, for the
filter only); the rows record how many were written and kept (`rationales_written`,
`rationales_kept`).

Written once per (base model, data seed, budget's examples) and reused by every cot_self arm
of that budget: `OUT/rationales/<key>.json` (lab/core/layout.py), with the example ids and
the model's fingerprint it was written for; deterministic (greedy, batch-invariant
evaluation). Tasks scored by choices (NLI) have no generation to read a rationale from:
their examples are generated and read by the `exact` extractor for cot_self (the text after
the last "answer is", compared with the gold label), both when writing and when evaluating.

What differs from STaR at this scale: one greedy rationale per example (no sampling of
several, no temperature), zero-shot CoT instead of a hand-written few-shot seed prompt, no
rationalization (no hint with the gold answer), no iterations (one round of filtering).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from eval.evaluate import PromptSpec
from eval.lm import LM
from eval.parallel import evaluate_split_parallel
from lab.core.example import Example
from lab.core.io import atomic_write_json, read_json
from lab.core.layout import CellDir
from lab.core.prompts import ZERO_SHOT_COT_TRIGGER
from lab.study.format_eval import with_formats
from lab.study.plan import CellPlan, Variant, cell_data

_STATES_ANSWER = re.compile(r"answer is", re.IGNORECASE)


def as_generated(examples: Sequence[Example]) -> list[Example]:
    """Examples scored by choices, as generated ones read by the `exact` extractor (the
    label after the last "answer is" of a CoT); other examples unchanged."""
    return [
        replace(ex, choices=(), output_type="generate", extractor="exact") if ex.choices else ex
        for ex in examples
    ]


def rationale_text(generation: str, answer: str) -> str:
    """A kept generation as a one-line rationale ending as the CoT extraction reads it."""
    text = " ".join(generation.split())
    if not _STATES_ANSWER.search(text):
        text = f"{text} The answer is {answer}.".strip()
    return text


def keep_correct(examples: Sequence[Example], written: Sequence[dict[str, Any]]) -> list[Example]:
    """The examples whose written rationale is kept (correct and complete), in order, each
    carrying its rationale."""
    by_id = {w["id"]: w for w in written}
    kept = []
    for ex in examples:
        w = by_id[ex.id]
        if w["correct"] and w["stopped"] != "length":
            kept.append(replace(ex, rationale=rationale_text(w["generation"], ex.answer)))
    return kept


def write_rationales(
    lm: LM, examples: Sequence[Example], max_new_tokens: int, timeout_s: float, desc: str
) -> list[dict[str, Any]]:
    """One zero-shot CoT generation per example, scored by the task's own scoring: per
    example its id, generation, extracted answer, `correct` and how it stopped."""
    spec = PromptSpec("cot", (), ZERO_SHOT_COT_TRIGGER)
    preds, _ = evaluate_split_parallel(
        lm, as_generated(examples), spec, max_new_tokens, timeout_s, desc, gold_logprob=False
    )
    keys = ("id", "generation", "pred", "correct", "stopped", "prompt_tokens", "new_tokens")
    return [{k: p[k] for k in keys} for p in preds]


def with_rationales(runner: Any, plan: CellPlan, cell_dir: CellDir) -> tuple[CellPlan, dict]:
    """A cot_self cell's plan with the kept self-written rationales as its demos (icl) or
    training set (lora/full), and what its rows record about them; other cells unchanged.
    An FT cell with no rationale kept has nothing to train on: it is the base model at
    k = 0 (what training on nothing gives), recorded `trained: false`."""
    cell, arm = plan.cell, plan.cell.arm
    if arm.format != "cot_self":
        return plan, {}
    r, data = runner.recipe, runner.data
    wanted, ft_data = cell_data(r, data.pool, cell, data.splits)
    budget = wanted or ft_data
    written = cached_rationales(runner, cell, budget, cell_dir)
    kept = keep_correct(budget, written)
    info: dict[str, Any] = {
        "rationales_written": len(budget),
        "rationales_kept": len(kept),
        "rationale_ids": [ex.id for ex in kept],
        # the one-off writing's tokens (prompt + generated), shared by the budget's cot_self arms
        "rationale_tokens": sum(
            w.get("prompt_tokens", 0) + w.get("new_tokens", 0) for w in written
        ),
    }
    if arm.method == "icl":
        fit = getattr(runner, "fit_demos", None)
        demos = tuple(fit(kept, arm) if fit is not None and kept else kept)
        new = replace(
            plan,
            demos=demos,
            k_requested=len(kept),
            variants=_with_demos(plan.variants, demos),
            read=tuple(budget),
        )
        return new, info
    ids = {ex.id: ex for ex in kept}
    train_set = tuple(ids[ex.id] for ex in plan.train_set if ex.id in ids)
    held_out = tuple(ids[ex.id] for ex in plan.held_out if ex.id in ids)
    if not train_set:
        runner.log(f"[lab]   {cell.key}: no self-written rationale kept: nothing to train on")
        prompted = Variant("prompted", None, replace(plan.variants[0].spec, demos=()))
        new = replace(
            plan,
            train=None,
            train_set=(),
            held_out=(),
            read=tuple(budget),
            variants=tuple(with_formats(r, [prompted])),
        )
        return new, info | {"trained": False, "selected": "prompted", "n_train": 0}
    return replace(plan, train_set=train_set, held_out=held_out, read=tuple(budget)), info


def _with_demos(variants: Sequence[Variant], demos: tuple[Example, ...]) -> tuple[Variant, ...]:
    """The plan's variants (the study's prompt style and formats kept) prompted with `demos`."""
    return tuple(replace(v, spec=replace(v.spec, demos=demos)) for v in variants)


def cached_rationales(
    runner: Any, cell: Any, examples: Sequence[Example], cell_dir: CellDir
) -> list[dict[str, Any]]:
    """The written rationales of these examples by this base model: read back when a cell
    of the same (model, data seed, budget) wrote them, else written and stored."""
    r, base = runner.recipe, runner.base
    tag = f"{cell.model_tag}__" if cell.model_tag else ""
    path = cell_dir.rationales(f"{tag}d{cell.data_seed}__n{len(examples)}")
    fingerprint = base.resolved.fingerprint
    ids = [ex.id for ex in examples]
    if path.is_file():
        stored = read_json(path)
        if stored.get("ids") == ids and stored.get("model_fingerprint") == fingerprint:
            return stored["written"]
    model, tok = base.load()
    lm = LM(model, tok, r.eval.batch_size, progress=runner.progress, invariant=r.eval.invariant)
    written = write_rationales(
        lm,
        examples,
        r.eval.max_new_tokens["cot"],
        r.eval.code_timeout_s,
        desc=f"rationales {cell.key}",
    )
    if runner.acc.is_main_process:
        atomic_write_json(
            path,
            {
                "ids": ids,
                "model_fingerprint": fingerprint,
                "trigger": ZERO_SHOT_COT_TRIGGER,
                "written": written,
            },
        )
    kept = sum(w["correct"] and w["stopped"] != "length" for w in written)
    runner.log(f"[lab]   {cell.key}: {kept} of {len(written)} self-written rationales kept")
    return written
