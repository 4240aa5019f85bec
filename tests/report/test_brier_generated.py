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
