"""BIG-bench linearity and breakthroughness on synthetic curves with hand-computed values."""

import math

import pytest

from eval.scaling import breakthroughness, linearity, scaling_metrics, total_improvement


def test_linear_curve_has_maximal_linearity():
    y = [0.0, 0.1, 0.2, 0.3]  # steps 0.1, 0.1, 0.1: I = 0.3, RMS = RMedS = 0.1
    assert total_improvement(y) == pytest.approx(0.3)
    assert linearity(y) == pytest.approx(3.0)  # N - 1, the maximum
    assert breakthroughness(y) == pytest.approx(3.0)


def test_single_jump_is_a_breakthrough():
    y = [0.0, 0.0, 0.0, 0.6]  # steps 0, 0, 0.6: RMS = sqrt(0.36 / 3), median step^2 = 0
    assert linearity(y) == pytest.approx(math.sqrt(3))
    assert breakthroughness(y) == math.inf


def test_late_rise_values():
    y = [0.0, 0.0, 0.4, 0.6]  # steps 0, 0.4, 0.2: squares 0, 0.16, 0.04
    assert linearity(y) == pytest.approx(0.6 / math.sqrt(0.2 / 3))  # 2.3238
    assert breakthroughness(y) == pytest.approx(0.6 / 0.2)  # median square 0.04


def test_noisy_non_monotone_curve_scores_low():
    y = [
        0.1,
        0.5,
        0.1,
        0.5,
        0.2,
    ]  # I = +0.4 (min at index 0 before max at 1); |steps| 0.4,0.4,0.4,0.3
    rms = math.sqrt((0.16 * 3 + 0.09) / 4)
    assert linearity(y) == pytest.approx(0.4 / rms)
    assert breakthroughness(y) == pytest.approx(0.4 / 0.4)  # median of 0.09,0.16,0.16,0.16
    assert linearity(y) < linearity([0.1, 0.2, 0.3, 0.4, 0.5])


def test_inverse_scaling_is_negative_and_flat_is_zero():
    assert linearity([0.3, 0.2, 0.1, 0.0]) == pytest.approx(-3.0)
    assert breakthroughness([0.3, 0.2, 0.1, 0.0]) == pytest.approx(-3.0)
    assert linearity([0.4, 0.4, 0.4]) == 0.0 and breakthroughness([0.4, 0.4, 0.4]) == 0.0


def test_two_models_give_the_sign_only():
    assert linearity([0.2, 0.5]) == pytest.approx(1.0)
    assert breakthroughness([0.5, 0.2]) == pytest.approx(-1.0)


def test_invariant_to_affine_rescaling_and_sorted_by_scale():
    y = [0.0, 0.05, 0.4, 0.45]
    scaled = [3 * v - 7 for v in y]  # e.g. log-probabilities instead of accuracies
    assert linearity(scaled) == pytest.approx(linearity(y))
    assert breakthroughness(scaled) == pytest.approx(breakthroughness(y))
    shuffled_x = [1.4e9, 1.35e8, 3.6e8, 7e7]
    shuffled_y = [y[3], y[1], y[2], y[0]]  # y given in the order of shuffled_x
    m = scaling_metrics(shuffled_x, shuffled_y)
    assert m["linearity"] == pytest.approx(linearity(y))
    assert m["breakthroughness"] == pytest.approx(breakthroughness(y))
    assert m["improvement"] == pytest.approx(0.45)


def test_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        linearity([0.5])
    with pytest.raises(ValueError, match="finite"):
        breakthroughness([0.1, float("nan")])
    with pytest.raises(ValueError, match="length"):
        scaling_metrics([1, 2], [0.1])
