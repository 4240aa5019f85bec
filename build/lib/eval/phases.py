"""Where evaluation time goes: seconds and work per phase of eval/lm.py.

Phases: `prefix` (shared-prefix forwards), `scored` (log-likelihood and next-token batches),
`prefill` (a generation batch's prompt forward), `decode` (generation steps). Per phase the
clock keeps calls, seconds, forward tokens, LM-head positions and attention (query, key)
pairs actually attended (a token at position p attends p + 1 keys), which is what
bench/phases.py turns into achieved FLOP/s. Keeping it costs two clock reads per forward.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

PHASES = ("prefix", "scored", "prefill", "decode")


def attended_pairs(pos: torch.Tensor, real: torch.Tensor | None = None) -> int:
    """(query, key) pairs of causal attention for queries at positions `pos` (real only)."""
    keys = pos + 1
    return int(keys[real.bool()].sum() if real is not None else keys.sum())


class PhaseClock:
    def __init__(self, device: Any = None):
        self.sync = torch.cuda.synchronize if getattr(device, "type", "") == "cuda" else None
        self.reset()

    def reset(self) -> None:
        self.phases: dict[str, dict[str, float]] = defaultdict(
            lambda: {"calls": 0, "s": 0.0, "tokens": 0, "head": 0, "attn_pairs": 0}
        )

    @contextmanager
    def phase(self, name: str, tokens: int, head: int, attn_pairs: int) -> Iterator[None]:
        if self.sync:
            self.sync()
        t0 = time.perf_counter()
        yield
        if self.sync:
            self.sync()
        p = self.phases[name]
        p["calls"] += 1
        p["s"] += time.perf_counter() - t0
        p["tokens"] += tokens
        p["head"] += head
        p["attn_pairs"] += attn_pairs
