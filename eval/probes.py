"""Evaluate probe splits (``lab/tasks/probes.py``): each example carries its own fixed prompt,
so every arm — prompted or fine-tuned — is asked exactly the same thing.

- BBH: the prompt is ``meta['prefix']`` (the subtask's 3-shot CoT prompt); the answer is
  extracted per BBH answer type (below).
- Cross-task probes (``lab/tasks/task_probes.py``): the prompt is the probed task's own k
  demos (``meta['demos']``) in the probe's format, and the split is scored exactly as the
  probed task scores it (``eval.evaluate.evaluate_split``: number extraction, sandboxed
  tests, or the log-likelihood of the choices)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from typing import Any

from eval.evaluate import PromptSpec, summarize
from eval.lm import LM, GenRequest
from eval.parallel import evaluate_split_parallel, map_sharded
from lab.core.example import Example
from lab.core.numbers import last_number, normalize_number

# The CoT answer ends at the next question (or a blank line).
PROBE_STOP = ("\n\n", "\nQ:")
_ANSWER = re.compile(r"answer is\s*:?\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_CHOICE = re.compile(r"\(([A-R])\)")
_LABELS = ("true", "false", "yes", "no", "valid", "invalid")
_LABEL = re.compile(r"\b(" + "|".join(_LABELS) + r")\b", re.IGNORECASE)


def probe_prompt(ex: Example) -> str:
    return f"Q: {ex.question}\nA: {ex.meta['trigger']}"


def _span(text: str) -> str | None:
    """What follows the last 'the answer is' (to the end of its line), or None."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def normalize_bbh(answer: str, answer_type: str) -> str | None:
    """Canonical form of a BBH answer of this type (gold or extracted)."""
    a = answer.strip()
    if answer_type == "numeric":
        return normalize_number(a)
    if answer_type == "label":
        return a.lower().rstrip(".")
    if answer_type == "choice":
        m = _CHOICE.fullmatch(a)
        return f"({m.group(1)})" if m else " ".join(a.lower().split())
    return " ".join(a.rstrip(".").split())


def extract_bbh(text: str, answer_type: str) -> str | None:
    """The answer of a BBH CoT generation: after the last 'So the answer is', else (choice,
    label, numeric) the last option letter / label word / number in the text."""
    span = _span(text)
    if answer_type == "choice":
        m = _CHOICE.findall(span) if span else []
        m = m or _CHOICE.findall(text)
        return f"({m[-1]})" if m else None
    if answer_type == "label":
        m = _LABEL.findall(span) if span else []
        if m:
            return m[0].lower()
        m = _LABEL.findall(text)
        return m[-1].lower() if m else None
    if answer_type == "numeric":
        return (last_number(span) if span else None) or last_number(text)
    if span is None:
        return None
    return " ".join(span.rstrip(".").split()) or None


def evaluate_probe(
    lm: LM, examples: Sequence[Example], desc: str = "probe"
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(per-example predictions, metrics) of one probe split, prompted with its own prompt.
    Under `accelerate launch` the generations are sharded across the processes (every
    process gets all predictions, in order)."""
    requests = [
        GenRequest(ex.meta["prefix"], probe_prompt(ex), PROBE_STOP, ex.meta["max_new_tokens"])
        for ex in examples
    ]
    gens = map_sharded(lambda reqs: lm.generate(reqs, desc=desc), requests)
    preds = []
    for ex, g in zip(examples, gens, strict=True):
        kind = ex.meta["answer_type"]
        pred = extract_bbh(g.text, kind)
        gold = normalize_bbh(ex.answer, kind)
        preds.append(
            {
                "id": ex.id,
                "question": ex.question,
                "gold": ex.answer,
                "generation": g.text,
                "pred": pred,
                "correct": pred is not None and pred == gold,
                "error": None if pred is not None else "no answer found",
                "stopped": g.stopped,
                "prompt_tokens": g.prompt_tokens,
                "new_tokens": g.new_tokens,
                "gold_logprob": None,
                "meta": {k: v for k, v in ex.meta.items() if k != "prefix"},
            }
        )
    return preds, summarize(preds)


def task_probe_spec(examples: Sequence[Example]) -> PromptSpec:
    """The one prompt of a cross-task probe split: its fixed demos in its format (no
    trigger), whatever the arm."""
    m = examples[0].meta
    return PromptSpec(m["probe_format"], tuple(m["demos"]))


def task_probe_max_new_tokens(examples: Sequence[Example], defaults: dict[str, int]) -> int:
    """The probe's own `max_new_tokens`, else the study's for the probe's format."""
    m = examples[0].meta
    return m.get("max_new_tokens") or defaults[m["probe_format"]]


def evaluate_task_probe(
    lm: LM,
    examples: Sequence[Example],
    max_new_tokens: int,
    code_timeout_s: float = 5.0,
    desc: str = "probe",
    gold_logprob: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(per-example predictions, metrics) of one cross-task probe split: the probed task's
    own scoring with the split's fixed prompt (sharded across processes like an eval split).
    The predictions keep the demos' ids, not the demos."""
    preds, metrics = evaluate_split_parallel(
        lm,
        examples,
        task_probe_spec(examples),
        max_new_tokens,
        code_timeout_s,
        desc,
        gold_logprob,
    )
    for p in preds:
        p["meta"] = {k: v for k, v in p["meta"].items() if k != "demos"}
    return preds, metrics


def macro_average(per_split: dict[str, dict[str, float]]) -> dict[str, float]:
    """Macro average over a probe family's subtasks (each subtask weighs the same)."""
    return {
        "exact_match": statistics.fmean(m["exact_match"] for m in per_split.values()),
        "n": sum(m["n"] for m in per_split.values()),
        "subtasks": len(per_split),
    }
