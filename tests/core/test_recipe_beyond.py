"""The schema of the arms beyond k demos vs fine-tuning (issue 25): `format: cot_self`,
`method: ttt` and its `ttt:` section; hash-stable for recipes that leave them out."""

from __future__ import annotations

import pytest

from lab.core.errors import LabError
from lab.core.recipe import parse_recipe

BASE = {"name": "r", "model": "m", "budgets": [8]}


def _recipe(*arms, **over):
    return parse_recipe({**BASE, "arms": list(arms), **over})


@pytest.mark.parametrize(
    "arm, message",
    [
        ({"name": "t", "method": "ttt", "k": 4, "train": {"steps": 3}}, "adapter is set in `ttt:`"),
        ({"name": "l", "method": "lora", "ttt": {"steps": 3}}, "needs method: ttt"),
        ({"name": "t", "method": "ttt", "k": 4, "format": "cot"}, "answer format"),
        ({"name": "t", "method": "ttt", "ttt": {"stepz": 3}}, "unknown key"),
    ],
)
def test_bad_ttt_arms_are_refused_with_the_fix(arm, message):
    with pytest.raises(LabError, match=message):
        _recipe(arm)


def test_cot_self_generates_with_the_cot_budget():
    r = _recipe({"name": "s", "method": "icl", "format": "cot_self", "k": 4})
    assert r.arms[0].format == "cot_self"
    with pytest.raises(LabError, match="no entry for format 'cot'"):
        _recipe(
            {"name": "s", "method": "lora", "format": "cot_self"},
            eval={"max_new_tokens": {"answer": 4}},
        )


def test_ttt_defaults_keep_the_hash_and_settings_change_it():
    plain = _recipe({"name": "a", "method": "lora"})
    explicit = _recipe({"name": "a", "method": "lora", "ttt": {}})
    assert plain.hash() == explicit.hash()
    t = {"name": "t", "method": "ttt", "k": 4}
    assert _recipe(t).hash() != _recipe({**t, "ttt": {"per_query": True}}).hash()
