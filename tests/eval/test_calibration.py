"""Expected calibration error (eval/calibration.py) against hand computations, and its place
in the choice-scored split's metrics (eval/choice.py)."""

from __future__ import annotations

import pytest

from eval.calibration import ece, ece_mass
from eval.choice import summarize_choices


def test_ece_equal_width_by_hand():
    # 15 bins of width 1/15: 0.55 and 0.58 share (8/15, 9/15] = (0.533, 0.6]; 0.95 is in
    # (14/15, 1]; 0.9 in (13/15, 14/15].
    conf = [0.55, 0.58, 0.95, 0.9]
    correct = [True, False, True, False]
    # bin (0.533, 0.6]: acc 0.5, conf 0.565 -> 2/4 * 0.065; bin 0.95: 1/4 * 0.05;
    # bin 0.9: 1/4 * 0.9
    want = 0.5 * 0.065 + 0.25 * 0.05 + 0.25 * 0.9
    assert ece(conf, correct) == pytest.approx(want)  # 0.27
    assert ece([0.7] * 10, [True] * 7 + [False] * 3) == pytest.approx(0.0)  # calibrated
    assert ece([1.0, 1.0], [False, False]) == pytest.approx(1.0)


def test_ece_bins_are_left_open():
    # 0.6 = 9/15 is the right edge of (8/15, 9/15], so it shares a bin with 0.55, not 0.62
    assert ece([0.55, 0.6], [True, False]) == pytest.approx(abs(0.5 - 0.575))
    assert ece([0.62, 0.6], [True, False]) == pytest.approx(0.5 * 0.38 + 0.5 * 0.6)


def test_ece_equal_mass_by_hand():
    conf = [0.9, 0.6, 0.8, 0.7]
    correct = [True, True, False, False]
    # 2 equal-mass bins: sorted 0.6 (T), 0.7 (F) | 0.8 (F), 0.9 (T): each acc 0.5
    want = 0.5 * abs(0.5 - 0.65) + 0.5 * abs(0.5 - 0.85)
    assert ece_mass(conf, correct, n_bins=2) == pytest.approx(want)  # 0.25
    # 15 bins over 4 examples: one per bin, the rest empty: mean |correct - conf|
    assert ece_mass(conf, correct) == pytest.approx((0.1 + 0.4 + 0.8 + 0.7) / 4)
    with pytest.raises(ValueError):
        ece_mass([], [])


def test_choice_split_metrics_carry_ece_of_the_top_label():
    def pred(probs, gold):
        best = max(range(len(probs)), key=lambda i: probs[i])
        return {
            "choice_probs": probs,
            "pred_index": best,
            "correct": best == gold,
            "prompt_tokens": 1,
            "gold_logprob": -1.0,
            "brier": 0.0,
        }

    preds = [pred([0.2, 0.8], 1), pred([0.9, 0.1], 1), pred([0.3, 0.7], 0)]
    m = summarize_choices(preds)
    # top-label confidences 0.8 (right), 0.9 (wrong), 0.7 (wrong): three bins of one
    assert m["ece"] == pytest.approx((0.2 + 0.9 + 0.7) / 3)
    assert m["ece_mass"] == pytest.approx(m["ece"])
