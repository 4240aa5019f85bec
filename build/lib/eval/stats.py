"""Bootstrap statistics for per-example scores: CIs over seeds and examples, paired differences.

Every function takes per-example scores as a 2-D array of shape ``(n_seeds, n_examples)``: row
``s`` holds one seed's (one trained model's, or one demo draw's) score on each eval example,
0/1 for exact match or any float (log-probability of the gold answer, Brier score). The
columns are the same eval examples in the same order for every row and, where two arms are
compared, for both arms (align them by example id before calling). A 1-D array is read as a
single seed.

What is resampled (a two-level, "seeds x examples" bootstrap): each replicate draws, with
replacement, ``n_seeds`` rows and, independently, ``n_examples`` columns, and takes the mean of
the selected sub-matrix (a row or a column drawn twice counts twice). The column indices are
the same for every row, because every seed is scored on the same examples: the resample keeps
the example-level correlation between seeds. With one seed this is the ordinary bootstrap over
examples. With seeds and examples both resampled the interval covers both sources of
variation; it is slightly conservative (the seed-to-seed spread of a row mean already contains
some example noise, which the column resample then adds again).

Intervals are percentile intervals. Replicates are computed in vectorised chunks from
resample counts (``np.einsum``, no BLAS threads); results depend only on the inputs and
``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_ci", "gain_ci", "paired_bootstrap"]

# Replicates per chunk are chosen so a chunk's example-count matrix holds about this many cells.
_CHUNK_CELLS = 1 << 20


def _as_scores(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as a float (n_seeds, n_examples) array; a 1-D array is one seed."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name}: expected a non-empty (n_seeds, n_examples) array, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: scores must be finite (no NaN or inf)")
    return arr


def _counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """(b, n) float array: how often each of n items is drawn in each of b resamples of size n
    with replacement."""
    idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)


def _mean(x: np.ndarray, seed_w: np.ndarray, ex_w: np.ndarray) -> np.ndarray:
    """Replicate means of x (S, N) under seed counts (b, S) and example counts (b, N)."""
    s, n = x.shape
    return np.einsum("bs,sn,bn->b", seed_w, x, ex_w) / (s * n)


def _chunks(n_boot: int, n_cols: int) -> list[int]:
    size = max(1, _CHUNK_CELLS // max(1, n_cols))
    return [min(size, n_boot - start) for start in range(0, n_boot, size)]


def _check_boot(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _summary(point: float, boot: np.ndarray, alpha: float, n_examples: int) -> dict:
    """Point estimate, percentile CI and shifted-null two-sided p-value of a difference.

    p-value: the bootstrap distribution of the difference, shifted to be centred on 0, stands
    in for the null distribution; p is the fraction of shifted replicates at least as extreme
    as the observed difference, ``#{|boot - diff| >= |diff|}``, with the usual +1 correction
    ``(1 + count) / (1 + n_boot)`` so that p is never exactly 0 (its floor is
    ``1 / (n_boot + 1)``). An observed difference of exactly 0 gives p = 1.
    """
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    extreme = int(np.count_nonzero(np.abs(boot - point) >= abs(point)))
    return {
        "diff": float(point),
        "lo": float(lo),
        "hi": float(hi),
        "p_value": min(1.0, (1 + extreme) / (1 + boot.size)),
        "n_examples": int(n_examples),
    }


def bootstrap_ci(
    correct: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean score with a two-level bootstrap percentile CI over seeds and examples.

    ``correct`` is (n_seeds, n_examples), 0/1 or float; 1-D means one seed. Each of the
    ``n_boot`` replicates resamples the seeds (rows) with replacement and, independently, the
    examples (columns) with replacement, using the same column indices for every row, and
    takes the mean. Returns ``(mean, lo, hi)``: the plain mean of ``correct`` and the
    ``alpha/2`` and ``1 - alpha/2`` quantiles of the replicate means. Deterministic given
    ``seed``.
    """
    _check_boot(n_boot, alpha)
    x = _as_scores(correct, "correct")
    s, n = x.shape
    rng = np.random.default_rng(seed)
    boot = np.concatenate(
        [_mean(x, _counts(rng, s, b), _counts(rng, n, b)) for b in _chunks(n_boot, n)]
    )
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
    paired: bool = True,
) -> dict:
    """Bootstrap the difference ``mean(a) - mean(b)`` of two arms scored on the same examples.

    ``a`` is (n_seeds_a, n_examples) and ``b`` is (n_seeds_b, n_examples), columns aligned by
    example id. Each replicate resamples the examples with replacement once and applies the
    same column indices to both arms (that is the pairing: per-example difficulty cancels in
    the difference), and resamples the seeds of ``a`` and the seeds of ``b`` independently,
    each with replacement. ``paired=False`` resamples the examples independently for each arm
    instead (the unpaired test, for comparison only; it ignores the example alignment).

    Returns ``{"diff", "lo", "hi", "p_value", "n_examples"}``: the observed difference, its
    percentile CI at level ``1 - alpha``, and a two-sided p-value by the shifted-null method:
    ``p = (1 + #{|boot_diff - diff| >= |diff|}) / (1 + n_boot)``, i.e. how often the bootstrap
    distribution re-centred on 0 lands at least as far from 0 as the observed difference.
    Identical arms give diff = 0 and p = 1; the smallest possible p is ``1 / (n_boot + 1)``.
    """
    _check_boot(n_boot, alpha)
    xa, xb = _as_scores(a, "a"), _as_scores(b, "b")
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(
            f"a and b must score the same examples: {xa.shape[1]} vs {xb.shape[1]} columns"
        )
    n = xa.shape[1]
    rng = np.random.default_rng(seed)
    parts = []
    for size in _chunks(n_boot, n):
        ex_a = _counts(rng, n, size)
        ex_b = ex_a if paired else _counts(rng, n, size)
        wa, wb = _counts(rng, xa.shape[0], size), _counts(rng, xb.shape[0], size)
        parts.append(_mean(xa, wa, ex_a) - _mean(xb, wb, ex_b))
    return _summary(xa.mean() - xb.mean(), np.concatenate(parts), alpha, n)


def _splits(x: np.ndarray | Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    """One 2-D array, or a list/tuple of 2-D arrays (one per split, same seeds), as blocks."""
    if isinstance(x, list | tuple):
        blocks = [np.asarray(v) for v in x]
        if not blocks or any(v.ndim != 2 for v in blocks):
            raise ValueError(
                f"{name}: pass one (n_seeds, n_examples) array per split; got a sequence "
                "that is empty or holds arrays that are not 2-D"
            )
        blocks = [_as_scores(v, f"{name}[{i}]") for i, v in enumerate(blocks)]
    else:
        blocks = [_as_scores(x, name)]
    if len({v.shape[0] for v in blocks}) != 1:
        raise ValueError(f"{name}: every split must have the same seeds (rows)")
    return blocks


def gain_ci(
    ft_id: np.ndarray,
    icl_id: np.ndarray,
    ft_ood: np.ndarray | Sequence[np.ndarray],
    icl_ood: np.ndarray | Sequence[np.ndarray],
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, dict]:
    """The gain of fine-tuning over ICL on ID and on OOD examples, and the gap between them.

    ``ft_id``/``icl_id`` are (n_seeds, n_examples) on the ID eval split; ``ft_ood``/``icl_ood``
    the same on OOD, either one array or a list with one array per OOD split (the lists in the
    same split order, each FT array with the same seeds). Several OOD splits are pooled over
    examples: the OOD mean is the mean over all OOD examples, each example weighing the same
    (so a larger split weighs more; for one number per split call ``paired_bootstrap`` on it).

    One joint bootstrap: each replicate resamples the FT seeds once (the same FT rows on ID and
    OOD: row ``s`` is the same trained model on both), the ICL seeds once, likewise shared,
    the ID examples (shared by both arms: paired) and the OOD examples within each OOD split
    (shared by both arms; split sizes stay fixed).

    Returns ``{"id": ..., "ood": ..., "gap": ...}``, each a dict like ``paired_bootstrap``'s
    (diff, lo, hi, p_value, n_examples): "id" is ``mean(ft_id) - mean(icl_id)``, "ood" is
    ``mean(ft_ood) - mean(icl_ood)`` and "gap" is ``id - ood`` (positive: fine-tuning gains
    more on ID than on OOD); p-values by the shifted-null method (see ``paired_bootstrap``).
    """
    _check_boot(n_boot, alpha)
    f_id, i_id = _as_scores(ft_id, "ft_id"), _as_scores(icl_id, "icl_id")
    f_ood, i_ood = _splits(ft_ood, "ft_ood"), _splits(icl_ood, "icl_ood")
    if f_id.shape[1] != i_id.shape[1]:
        raise ValueError("ft_id and icl_id must score the same examples")
    if [v.shape[1] for v in f_ood] != [v.shape[1] for v in i_ood]:
        raise ValueError("ft_ood and icl_ood must score the same examples, split by split")
    if f_ood[0].shape[0] != f_id.shape[0] or i_ood[0].shape[0] != i_id.shape[0]:
        raise ValueError("each arm must have the same seeds on ID and OOD")
    ood_sizes = [v.shape[1] for v in f_ood]
    f_ood_all, i_ood_all = np.concatenate(f_ood, axis=1), np.concatenate(i_ood, axis=1)
    n_id, n_ood = f_id.shape[1], f_ood_all.shape[1]

    rng = np.random.default_rng(seed)
    g_id, g_ood = [], []
    for size in _chunks(n_boot, n_id + n_ood):
        wf, wi = _counts(rng, f_id.shape[0], size), _counts(rng, i_id.shape[0], size)
        e_id = _counts(rng, n_id, size)
        e_ood = np.concatenate([_counts(rng, k, size) for k in ood_sizes], axis=1)
        g_id.append(_mean(f_id, wf, e_id) - _mean(i_id, wi, e_id))
        g_ood.append(_mean(f_ood_all, wf, e_ood) - _mean(i_ood_all, wi, e_ood))
    boot_id, boot_ood = np.concatenate(g_id), np.concatenate(g_ood)
    d_id = f_id.mean() - i_id.mean()
    d_ood = f_ood_all.mean() - i_ood_all.mean()
    return {
        "id": _summary(d_id, boot_id, alpha, n_id),
        "ood": _summary(d_ood, boot_ood, alpha, n_ood),
        "gap": _summary(d_id - d_ood, boot_id - boot_ood, alpha, n_id + n_ood),
    }
