"""Scored batches shaped as trees: the second level of eval/lm.py's cache.

A *unit* is one context (the trunk, the tokens after the group's shared prefix) with every
continuation scored after it (the branches: e.g. the 4 choices of a question). The trunk is
run once; each branch sits after it in the same row, with position ids that restart where
the trunk ends, and attends to the shared prefix, the trunk and its own earlier tokens only.
Each continuation's log-likelihood is then that of `prefix + context + continuation` run
alone (the same attention pattern and positions, up to float reassociation), at the cost of
the context once instead of once per continuation.

Rows: with a long shared prefix (k-shot demos) the units of a batch share rows of up to the
prefix's length after the prefix cache (few copies of the prefix, little padding, and a
query skips at most that many masked keys); otherwise (no shared prefix: zero-shot, or a
different demo set per example) each unit is its own left-padded row.

The explicit 4D mask replaces the model's own causal mask, so trees are used only where that
mask is all the model needs (full attention everywhere, sdpa or eager attention); other
models take eval/lm.py's plain path (one row per continuation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Unit:
    ctx: list[int]  # the trunk: context tokens after the shared prefix (>= 1)
    conts: list[list[int]]  # the branches: continuations, each >= 1 token

    @property
    def size(self) -> int:
        return len(self.ctx) + sum(len(c) for c in self.conts)


@dataclass
class TreeBatch:
    ids: torch.Tensor  # (R, W) token ids, left-padded
    pos: torch.Tensor  # (R, W) position ids
    allowed: torch.Tensor  # (R, 1, W, p_len + W) bool: query may attend key
    real: torch.Tensor  # (R, W) bool: not padding
    rows: torch.Tensor  # (N,) row of each scored position
    cols: torch.Tensor  # (N,) column of each scored position (predicts `targets`)
    targets: torch.Tensor  # (N,) the continuation tokens
    spans: list[int]  # tokens per continuation, in unit then branch order


def layout(units: list[Unit], p_len: int) -> list[list[int]]:
    """Which units share a row. After a shared prefix at least as long as every unit, units
    fill rows of up to `p_len` tokens (so that the keys a query skips in its row are at most
    the prefix again); otherwise each unit is its own row."""
    sizes = [u.size for u in units]
    if p_len == 0 or p_len < max(sizes):
        return [[i] for i in range(len(units))]
    rows: list[list[int]] = [[]]
    width = 0
    for i, size in enumerate(sizes):
        if rows[-1] and width + size > p_len:
            rows.append([])
            width = 0
        rows[-1].append(i)
        width += size
    return rows


def build(units: list[Unit], p_len: int, pad_id: int, device: Any) -> TreeBatch:
    """The batch for `units` after a shared prefix of `p_len` cached tokens."""
    rows = layout(units, p_len)
    width = max(sum(units[u].size for u in row) for row in rows)
    n_rows = len(rows)
    ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    pos = torch.zeros((n_rows, width), dtype=torch.long)
    unit = torch.full((n_rows, width), -1, dtype=torch.long)
    branch = torch.zeros((n_rows, width), dtype=torch.long)
    s_rows: list[int] = []
    s_cols: list[int] = []
    targets: list[int] = []
    spans: list[int] = []
    for r, row in enumerate(rows):
        col = width - sum(units[u].size for u in row)  # left padding
        for u in row:
            ctx, n = units[u].ctx, len(units[u].ctx)
            ids[r, col : col + n] = torch.tensor(ctx)
            pos[r, col : col + n] = torch.arange(p_len, p_len + n)
            unit[r, col : col + n] = u
            last_ctx = col + n - 1
            col += n
            for b, cont in enumerate(units[u].conts, 1):
                m = len(cont)
                ids[r, col : col + m] = torch.tensor(cont)
                pos[r, col : col + m] = torch.arange(p_len + n, p_len + n + m)
                unit[r, col : col + m] = u
                branch[r, col : col + m] = b
                # the last context token predicts the first continuation token, then each
                # continuation token the next one
                s_cols += [last_ctx, *range(col, col + m - 1)]
                s_rows += [r] * m
                targets += cont
                spans.append(m)
                col += m
    same_unit = unit[:, :, None] == unit[:, None, :]
    same_branch = (branch[:, None, :] == 0) | (branch[:, :, None] == branch[:, None, :])
    causal = pos[:, None, :] <= pos[:, :, None]
    real = (unit >= 0)[:, :, None]
    allowed = same_unit & same_branch & causal & real
    allowed |= torch.eye(width, dtype=torch.bool)  # a pad query attends to itself (no NaN)
    prefix = torch.ones((n_rows, width, p_len), dtype=torch.bool)
    allowed = torch.cat([prefix, allowed], dim=-1)[:, None]
    return TreeBatch(
        ids.to(device),
        pos.to(device),
        allowed.to(device),
        (unit >= 0).to(device),
        torch.tensor(s_rows, device=device),
        torch.tensor(s_cols, device=device),
        torch.tensor(targets, device=device),
        spans,
    )


def score(
    logits: torch.Tensor, targets: torch.Tensor, spans: list[int]
) -> list[tuple[float, bool, int]]:
    """(sum log p, greedy?, tokens) per continuation, from the logits at the scored positions
    (`spans`: how many of them each continuation has, in order)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp = logp.gather(-1, targets[:, None]).squeeze(-1)
    hit = logp.argmax(-1) == targets
    out = []
    for lps, hits in zip(lp.split(spans), hit.split(spans), strict=True):
        out.append((float(lps.sum()), bool(hits.all()), len(lps)))
    return out
