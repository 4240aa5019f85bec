"""Evaluating a test-time training arm (`method: ttt`) on one split: train a temporary
adapter on leave-one-out tasks from the cell's k demos (train/ttt.py), answer the split with
the same k demos in the prompt, discard the adapter.

`ttt.per_query: false` (default): one adapter per evaluation split, shared by its queries
(the paper's per-task setting, as its BBH runs). The adapter's seed is the cell's train seed,
the same for every split: the splits' adapters are the same weights, trained again for each
split so that none outlives its split. `ttt.per_query: true`: one adapter per query (seeded
by the train seed and the query's id: with demos shared by every query, only the sampled
leave-one-out orders and the adapter's initialisation differ between queries), which costs
a training run per query: n_queries x the per-split cost.

The demos are the budget's (the cell's plan); no query is among them (checked here: the
train pool and the evaluation splits are disjoint by construction, so this is a guard).
Compute is counted per query: each prediction carries `ttt_flops`, its share of its
adapter's training FLOPs (per split: the split's training FLOPs / its queries; per query:
its own adapter's), which the cell adds to the query's inference FLOPs. The base model's
weights are checksummed before and after each split and must be unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from eval.evaluate import PromptSpec, summarize
from eval.lm import LM
from eval.parallel import evaluate_split_parallel
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.recipe import TttCfg
from train.ttt import train_adapter, weights_checksum


def evaluate_split_ttt(
    lm: LM,
    examples: Sequence[Example],
    spec: PromptSpec,
    cfg: TttCfg,
    seed: int,
    max_new_tokens: int,
    code_timeout_s: float = 5.0,
    desc: str = "ttt",
    gold_logprob: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(predictions, metrics) of one split under test-time training; the metrics also hold
    `ttt_flops` (all adapters of the split), `ttt_adapters` and `ttt_tasks` (per adapter)."""
    demos = spec.demos
    clash = {d.id for d in demos} & {ex.id for ex in examples}
    if clash:
        raise LabError(f"{desc}: queries among the test-time training demos: {sorted(clash)[:3]}")
    before = weights_checksum(lm.model)
    groups = [list(examples)] if not cfg.per_query else [[ex] for ex in examples]
    preds: list[dict[str, Any]] = []
    flops, tasks = 0.0, 0
    for group in groups:
        seed_of = seed if not cfg.per_query else f"{seed}-{zlib.crc32(group[0].id.encode())}"
        adapted, record = train_adapter(
            lm.model, lm.tok, demos, spec.fmt, cfg, seed_of, spec.style, spec.turns
        )
        inner = LM(adapted, lm.tok, lm.batch_size, progress=False, invariant=lm.invariant)
        p, _ = evaluate_split_parallel(
            inner, group, spec, max_new_tokens, code_timeout_s, desc, gold_logprob
        )
        for k in lm.counts:  # the adapted model's forward tokens count as this split's
            lm.counts[k] += inner.counts[k]
        for x in p:
            x["ttt_flops"] = record["flops"] / len(group)
        preds += p
        flops, tasks = flops + record["flops"], record["tasks"]
        del inner, adapted  # the adapter is discarded with its copy of the model
    if weights_checksum(lm.model) != before:
        raise RuntimeError(f"{desc}: test-time training changed the base model's weights")
    m = summarize(preds)
    m |= {"ttt_flops": flops, "ttt_adapters": len(groups), "ttt_tasks": tasks}
    return preds, m
