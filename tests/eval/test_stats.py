"""Bootstrap statistics (eval/stats.py) against known means, hand-computed widths and planted
differences."""

from __future__ import annotations

import numpy as np
import pytest

from eval.stats import bootstrap_ci, gain_ci, paired_bootstrap


def bernoulli(rng: np.random.Generator, p, shape) -> np.ndarray:
    return (rng.random(shape) < p).astype(float)


def test_ci_covers_known_mean_with_plausible_width():
    x = bernoulli(np.random.default_rng(1), 0.3, (3, 400))
    mean, lo, hi = bootstrap_ci(x)
    assert mean == pytest.approx(x.mean())
    assert lo < 0.3 < hi
    assert lo < mean < hi
    # Seeds and examples both resampled: wider than the iid normal approximation over all
    # 1200 cells (+-0.026) because seed resampling adds the seed-level spread.
    assert 0.025 < (hi - lo) / 2 < 0.055


def test_one_seed_matches_normal_approximation():
    x = bernoulli(np.random.default_rng(2), 0.3, (1, 400))
    mean, lo, hi = bootstrap_ci(x)
    half = 1.96 * np.sqrt(mean * (1 - mean) / 400)  # ~0.045
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.2)
    # 1-D input is one seed: the same replicates.
    assert bootstrap_ci(x[0]) == (mean, lo, hi)


def test_deterministic_given_seed():
    x = np.random.default_rng(3).random((3, 100))
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci(x, seed=7) != bootstrap_ci(x, seed=8)
    assert paired_bootstrap(x, x[::-1] * 0.5, seed=7) == paired_bootstrap(x, x[::-1] * 0.5, seed=7)


def test_constant_scores_give_a_point_interval():
    assert bootstrap_ci(np.ones((3, 50))) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_coverage(n_seeds):
    """95% intervals over 200 simulated datasets cover the true mean 90-99% of the time.

    Per-example difficulty (Beta, mean 0.3) shared by all seeds plus, with several seeds, a
    small per-seed offset: the structure of real eval scores, where the two-level bootstrap is
    about right. (On cell-wise iid scores with several seeds it is conservative, ~99.5%: see
    the module docstring. With one seed a seed effect cannot be seen, so none is simulated.)"""
    hits = 0
    for i in range(200):
        rng = np.random.default_rng(1000 + i)
        p = rng.beta(0.6, 1.4, size=400)
        offset = rng.normal(0.0, 0.03, size=(n_seeds, 1)) if n_seeds > 1 else 0.0
        x = bernoulli(rng, np.clip(p + offset, 0, 1), (n_seeds, 400))
        _, lo, hi = bootstrap_ci(x, n_boot=500, seed=i)
        hits += lo <= 0.3 <= hi
    assert 0.9 <= hits / 200 <= 0.99


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_paired_detects_planted_difference(n_seeds):
    rng = np.random.default_rng(4)
    # Seeds agree on most examples, as trained models do: a shared 0/1 pattern, 10% of each
    # seed's cells re-drawn.
    shared = bernoulli(rng, 0.6, 500)
    redraw = rng.random((n_seeds, 500)) < 0.1
    a = np.where(redraw, bernoulli(rng, 0.6, (n_seeds, 500)), shared)
    b = a.copy()
    b[:, rng.choice(500, size=75, replace=False)] = 0.0  # 15% of examples forced wrong
    r = paired_bootstrap(a, b)
    assert r["diff"] == pytest.approx(a.mean() - b.mean())
    assert r["diff"] > 0
    assert r["p_value"] < 0.01
    assert 0 < r["lo"] < r["diff"] < r["hi"]
    assert r["n_examples"] == 500
    # The other way round: the sign flips, the evidence does not.
    r2 = paired_bootstrap(b, a)
    assert r2["diff"] == pytest.approx(-r["diff"])
    assert r2["hi"] < 0 and r2["p_value"] < 0.01


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_identical_arms(n_seeds):
    a = bernoulli(np.random.default_rng(5), 0.5, (n_seeds, 200))
    r = paired_bootstrap(a, a.copy())
    assert r["diff"] == 0.0
    assert r["p_value"] == 1.0
    assert r["lo"] <= 0.0 <= r["hi"]


def test_null_difference_not_detected():
    """Two arms drawn independently at the same per-example rates: p > 0.05 most times."""
    not_significant = 0
    for i in range(40):
        rng = np.random.default_rng(2000 + i)
        p = rng.random(200)
        a, b = bernoulli(rng, p, (1, 200)), bernoulli(rng, p, (1, 200))
        not_significant += paired_bootstrap(a, b, n_boot=2000, seed=i)["p_value"] > 0.05
    assert not_significant >= 34  # ~38 expected at a 5% false-positive rate


def test_pairing_narrows_the_interval_on_correlated_arms():
    rng = np.random.default_rng(6)
    easy = rng.random(400) < 0.5  # per-example difficulty shared by both arms
    a = np.where(easy, bernoulli(rng, 0.95, (2, 400)), bernoulli(rng, 0.15, (2, 400)))
    b = np.where(easy, bernoulli(rng, 0.85, (2, 400)), bernoulli(rng, 0.1, (2, 400)))
    paired = paired_bootstrap(a, b)
    unpaired = paired_bootstrap(a, b, paired=False)
    assert paired["diff"] == unpaired["diff"]
    assert paired["hi"] - paired["lo"] < 0.8 * (unpaired["hi"] - unpaired["lo"])


def test_shape_mismatch_and_bad_input():
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap(np.ones((2, 10)), np.ones((2, 11)))
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(np.zeros((2, 0)))


def test_gain_ci_id_and_pooled_ood():
    rng = np.random.default_rng(7)
    # FT gains 0.2 on ID, nothing on OOD (two OOD splits of different sizes).
    icl_id = bernoulli(rng, 0.5, (3, 300))
    ft_id = np.maximum(icl_id, bernoulli(rng, 0.4, (3, 300)))
    icl_ood = [bernoulli(rng, 0.4, (3, 200)), bernoulli(rng, 0.3, (3, 100))]
    ft_ood = [v.copy() for v in icl_ood]
    r = gain_ci(ft_id, icl_id, ft_ood, icl_ood, n_boot=2000)

    assert r["id"]["diff"] == pytest.approx(ft_id.mean() - icl_id.mean())
    assert r["id"]["p_value"] < 0.01 and r["id"]["lo"] > 0
    assert r["ood"]["diff"] == 0.0 and r["ood"]["p_value"] == 1.0
    assert r["ood"]["n_examples"] == 300
    assert r["gap"]["diff"] == pytest.approx(r["id"]["diff"] - r["ood"]["diff"])
    assert r["gap"]["lo"] > 0

    # The ID gain is the same statistic as paired_bootstrap's (different replicates).
    pb = paired_bootstrap(ft_id, icl_id, n_boot=2000)
    assert pb["diff"] == pytest.approx(r["id"]["diff"])
    assert abs((pb["hi"] - pb["lo"]) - (r["id"]["hi"] - r["id"]["lo"])) < 0.02

    with pytest.raises(ValueError, match="split by split"):
        gain_ci(ft_id, icl_id, ft_ood, icl_ood[:1])
    with pytest.raises(ValueError, match="same seeds on ID and OOD"):
        gain_ci(ft_id, icl_id, [v[:2] for v in ft_ood], icl_ood)
