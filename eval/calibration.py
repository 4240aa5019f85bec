"""Expected calibration error (ECE) of choice-scored splits (classification, multiple choice).

Each example contributes its top-label confidence, the largest probability over its choices
(the softmax of the choices' log-likelihoods: renormalised over the label set, eval/choice.py),
and whether that top choice is the gold one. With the examples grouped into bins B_1..B_M,

    ECE = sum_m (|B_m| / n) * |acc(B_m) - conf(B_m)|

(Guo, Pleiss, Sun, Weinberger 2017). Two binnings, M = 15 each:
- `ece`: equal-width bins over [0, 1], the m-th holding confidences in ((m-1)/M, m/M]
  (Guo et al.; torchmetrics' default M);
- `ece_mass`: equal-mass bins: the examples sorted by confidence and cut into M groups of
  (nearly) equal size (numpy.array_split), less biased (Roelofs et al. 2022).
Empty bins contribute nothing. At n = 100 a perfectly calibrated model still scores about
0.09 (equal-width): gaps under ~0.05 are noise; use the same bins for every arm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BINS = 15


def _gap(conf: np.ndarray, acc: np.ndarray, groups: list[np.ndarray]) -> float:
    n = len(conf)
    return float(sum(len(g) / n * abs(acc[g].mean() - conf[g].mean()) for g in groups if len(g)))


def ece(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> float:
    """ECE with `n_bins` equal-width bins ((lo, hi], the first also holding 0)."""
    conf, acc = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if not len(conf):
        raise ValueError("ece of no examples")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], conf, side="left")  # bin m: (edges[m], edges[m+1]]
    return _gap(conf, acc, [np.flatnonzero(which == m) for m in range(n_bins)])


def ece_mass(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> float:
    """ECE with `n_bins` equal-mass bins (sorted by confidence, ties in input order)."""
    conf, acc = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if not len(conf):
        raise ValueError("ece_mass of no examples")
    order = np.argsort(conf, kind="stable")
    return _gap(conf, acc, list(np.array_split(order, n_bins)))
