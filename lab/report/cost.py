"""The compute table of a study's report: what each arm costs to build and to query, and
fine-tuning's break-even against its matched k-shot arm (lab/core/compute.py counts)."""

from __future__ import annotations

from typing import Any

from lab.core.compute import break_even
from lab.report.table import Table

Group = tuple[str, Any]  # (arm, budget)


def compute_table(agg: dict[Group, dict[str, Any]], pairs: list[tuple[Group, Group]]) -> Table:
    """The cost view: what each arm costs to build and to query, and — for each FT arm vs its
    matched k-shot arm — after how many queries fine-tuning's training FLOPs are paid back by
    its shorter (demo-free) prompts: each prompt run whole (the 2N count), and with the demo
    prefix computed once and cached (eval/lm.py: the prefix a one-off cost, each query then
    paying its own tokens and their attention to the prefix; lab/core/compute.py)."""
    icl_of = dict(pairs)
    rows = []
    for g, a in agg.items():
        even = cached = None  # numbers (W&B sorts them); never paid back: inf
        if g in icl_of:
            b = agg[icl_of[g]]
            even = break_even(a["train_flops"], a["infer"], 0.0, b["infer"])
            own = a["train_flops"] + a.get("prefix_flops", 0.0)
            cached = break_even(own, a["infer_cached"], b["prefix_flops"], b["infer_cached"])
        rows.append(
            [
                g[0],
                g[1],
                a["train_flops"] or None,
                a["infer"],
                a.get("prefix_flops") or None,
                a.get("infer_cached"),
                a["flops"],
                round(a["train_s"], 1) if a["train_flops"] else None,
                round(a["eval_s"], 1),
                icl_of[g][0] if g in icl_of else None,
                even,
                cached,
            ]
        )
    cols = [
        "arm",
        "budget",
        "train FLOPs",
        "infer FLOPs/query",
        "prefix FLOPs (once)",
        "infer FLOPs/query, prefix cached",
        "total FLOPs (train + eval set)",
        "train s",
        "eval s",
        "vs ICL",
        "break-even queries (inf: never)",
        "break-even, prefix cached",
    ]
    return Table(cols, rows)
