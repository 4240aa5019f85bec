"""BIG-bench scaling metrics of a performance-vs-scale curve: linearity and breakthroughness.

Srivastava et al. 2022, "Beyond the Imitation Game" (BIG-bench, arXiv:2206.04615),
Appendix B ("Definitions of linearity and breakthroughness"). For models ordered by scale
(here: parameter count) with scores ``y_1 .. y_N`` (N >= 2):

    I_y = sign(argmax_i y_i - argmin_i y_i) * (max_i y_i - min_i y_i)

is the total improvement with scale, negative when the best model is smaller than the
worst one. With the successive differences ``d_i = y_{i+1} - y_i`` (i = 1 .. N-1):

    linearity         L = I_y / RootMeanSquare(d)   = I_y / sqrt(mean_i d_i^2)
    breakthroughness  B = I_y / RootMedianSquare(d) = I_y / sqrt(median_i d_i^2)

L is largest, N - 1, for a curve that improves by the same step at every rung (for a given
total improvement the root mean square of the steps is smallest when they are equal) and
only sqrt(N - 1) for a single jump. B uses the median, which ignores a few large steps: a
curve that is flat except for one or two sharp jumps has a small median step and a large B
(unbounded: ``inf`` when more than half the steps are exactly 0 while the curve improves).
Both are invariant to shifting or positively rescaling y, and depend on x only through the
order of the models. A flat curve has I_y = 0 and L = B = 0 (the paper's 0/0 made 0 here).

With N = 2 there is one step and L = B = sign(I_y) by construction: two models show a
direction, not a shape. Three or more rungs are needed for the metrics to separate
gradual from sudden improvement.

Provenance: the breakthroughness formula is the one Schaeffer, Miranda and Koyejo 2023 ("Are
Emergent Abilities of Large Language Models a Mirage?") restate from BIG-bench in their
meta-analysis; linearity is the same construction with the root mean square. The reference
search available when this module was written did not return the text of Appendix B itself
(only its title and third-party code using the same I_y / root-median-square form), so the
formulas above are as recalled, not checked against the appendix: verify them there before
publishing numbers computed with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["breakthroughness", "linearity", "scaling_metrics", "total_improvement"]


def _curve(y: Sequence[float]) -> np.ndarray:
    arr = np.asarray(y, dtype=float)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"a scaling curve needs at least 2 models' scores, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("scaling curve scores must be finite")
    return arr


def total_improvement(y: Sequence[float]) -> float:
    """I_y: signed range of the curve, positive when the best model is the larger one."""
    arr = _curve(y)
    spread = float(arr.max() - arr.min())
    if spread == 0.0:
        return 0.0
    return math.copysign(spread, int(arr.argmax()) - int(arr.argmin()))


def _ratio(i_y: float, denom: float) -> float:
    if i_y == 0.0:
        return 0.0
    if denom == 0.0:
        return math.copysign(math.inf, i_y)
    return i_y / denom


def linearity(y: Sequence[float]) -> float:
    """L = I_y / RootMeanSquare(y_{i+1} - y_i); `y` ordered by increasing model scale."""
    d = np.diff(_curve(y))
    return _ratio(total_improvement(y), float(np.sqrt(np.mean(d**2))))


def breakthroughness(y: Sequence[float]) -> float:
    """B = I_y / RootMedianSquare(y_{i+1} - y_i); `y` ordered by increasing model scale."""
    d = np.diff(_curve(y))
    return _ratio(total_improvement(y), float(np.sqrt(np.median(d**2))))


def scaling_metrics(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """{"linearity", "breakthroughness", "improvement"} of scores `y` at scales `x` (any
    order; sorted by x here, ties kept in the given order)."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    order = sorted(range(len(x)), key=lambda i: x[i])
    ys = [y[i] for i in order]
    return {
        "linearity": linearity(ys),
        "breakthroughness": breakthroughness(ys),
        "improvement": total_improvement(ys),
    }
