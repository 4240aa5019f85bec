"""W&B prediction tables with typed columns: one row per example of a split.

`correct` is a bool, `gold_logprob` and `brier` floats, token counts ints; every key of the
example's `meta` is a column of its own (`meta.<key>`), and so is every other field of the
prediction rows (choice scores, the option read from a generation...). A column whose
values are not all of one scalar type (lists, dicts, a mix) is JSON text. The prompt is the
example's own prompt; the demos before it, the same for every row, are returned apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

# (column, type) first in every table; `prompt` comes from the caller, the rest from the rows
FIXED: list[tuple[str, type]] = [
    ("id", str),
    ("prompt", str),
    ("generation", str),
    ("gold", str),
    ("pred", str),
    ("correct", bool),
    ("gold_logprob", float),
    ("brier", float),
    ("error", str),
    ("stopped", str),
    ("prompt_tokens", int),
    ("new_tokens", int),
]
_SKIP = {"question", "meta"}  # the question is in the prompt; meta is spread into columns


def column_type(values: Sequence[Any]) -> type:
    """The one type of a column: bool, int, float (ints and floats mixed) or str (text,
    and JSON for anything else); None values do not count."""
    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {bool}:
        return bool
    if kinds and kinds <= {int}:
        return int
    if kinds and kinds <= {int, float}:
        return float
    return str


def _cast(v: Any, kind: type) -> Any:
    if v is None:
        return None
    if kind is str:
        return v if isinstance(v, str) else json.dumps(v, default=str)
    return kind(v)


def columns_and_rows(
    preds: Sequence[Mapping[str, Any]], prompts: Mapping[str, str] | None = None
) -> tuple[list[str], list[type], list[list[Any]]]:
    """(columns, their types, rows) of a split's predictions; `prompts` maps example ids to
    their prompt text."""
    prompts = prompts or {}
    fixed = [(c, t) for c, t in FIXED if c == "prompt" or any(c in p for p in preds)]
    seen = {c for c, _t in fixed} | _SKIP
    extra = list(dict.fromkeys(k for p in preds for k in p if k not in seen))
    meta = list(dict.fromkeys(k for p in preds for k in (p.get("meta") or {})))

    def value(p: Mapping[str, Any], col: str) -> Any:
        if col == "prompt":
            return prompts.get(str(p.get("id")))
        if col.startswith("meta."):
            return (p.get("meta") or {}).get(col[5:])
        return p.get(col)

    cols = [c for c, _t in fixed] + extra + [f"meta.{k}" for k in meta]
    raw = [[value(p, c) for c in cols] for p in preds]
    kinds = dict(fixed)
    types = [kinds.get(c) or column_type([r[i] for r in raw]) for i, c in enumerate(cols)]
    rows = [[_cast(v, t) for v, t in zip(r, types, strict=True)] for r in raw]
    return cols, types, rows


def predictions_table(
    preds: Sequence[Mapping[str, Any]],
    prompts: Mapping[str, str] | None = None,
    variant: str | None = None,
) -> Any:
    """A `wandb.Table` of a split's predictions, its column types declared; with `variant`
    (the prompt or checkpoint evaluated), a first column naming it."""
    import wandb

    cols, types, rows = columns_and_rows(preds, prompts)
    if variant is not None:
        cols, types, rows = ["variant", *cols], [str, *types], [[variant, *r] for r in rows]
    return wandb.Table(columns=cols, data=rows, dtype=types)


def summary_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    """A report table (lab.report.table.Table) as a `wandb.Table`: a column of numbers stays
    numeric (a missing or non-finite value is null), any other is text."""
    import wandb

    rows = [[None if isinstance(v, float) and not math.isfinite(v) else v for v in r] for r in rows]
    types = [column_type([r[i] for r in rows]) for i in range(len(columns))]
    types = [float if t is int else t for t in types]
    data = [[_cast(v, t) for v, t in zip(r, types, strict=True)] for r in rows]
    return wandb.Table(columns=list(columns), data=data, dtype=types)
