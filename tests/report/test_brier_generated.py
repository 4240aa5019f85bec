"""The Brier table beside an arm that generates on a choice split (format cot_self: its
predictions have no choice probabilities): that arm's cell is empty, the report does not
fail (it raised KeyError 'brier' before)."""

from lab.report.breakdown import brier_table


def test_an_arm_without_choice_scores_gets_no_brier():
    preds = {
        ("c1", "test"): [{"id": "a", "brier": 0.5}, {"id": "b", "brier": 0.25}],
        ("c2", "test"): [{"id": "a", "correct": True}, {"id": "b", "correct": False}],
    }
    cells = {("icl_kshot", 4): ["c1"], ("icl_cot_self", 4): ["c2"]}
    cols, rows = brier_table(cells, lambda c, s: preds[(c, s)], ["test"])
    assert cols == ["arm", "test"]
    assert rows[0][1] == 0.375 and rows[1][1] is None


def test_the_generating_arm_listed_first_does_not_hide_the_others_scores():
    """The splits scored by choices are found in any arm, not in the first one only (an
    arm that generates listed first hid every other arm's Brier score and ECE), and the ECE
    table leaves a generating arm's cell empty (it raised KeyError 'choice_probs')."""
    from lab.report.breakdown import calibration_table

    preds = {
        ("c2", "test"): [{"id": "a", "correct": True}],
        ("c1", "test"): [
            {"id": "a", "brier": 0.5, "choice_probs": [0.5, 0.5], "pred_index": 0, "correct": True}
        ],
    }
    cells = {("icl_cot_self", 4): ["c2"], ("icl_kshot", 4): ["c1"]}
    got = brier_table(cells, lambda c, s: preds[(c, s)], ["test"])
    assert got is not None and got[1][1][1] == 0.5 and got[1][0][1] is None
    cal = calibration_table(cells, lambda c, s: preds[(c, s)], ["test"])
    assert cal is not None and cal[1][0][1:] == [None, None] and cal[1][1][1] == 0.5
