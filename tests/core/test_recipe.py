"""Recipe validation: every user error is one clear message naming the fix."""

from pathlib import Path

import pytest

from lab.core.errors import LabError
from lab.core.recipe import SMOKE_DEFAULTS, load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[2]
MIN = {"name": "t", "model": "tiny-random", "arms": [{"name": "zs", "method": "icl"}]}


def _with(**over):
    return {**MIN, **over}


def test_quickstart_recipe_is_valid_and_has_the_eight_arms():
    r = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    methods = {(a.method, a.format, a.k > 0, a.trigger is not None) for a in r.arms}
    assert len(r.arms) == 8
    assert ("icl", "answer", False, False) in methods  # zero-shot
    assert ("icl", "answer", True, False) in methods  # k-shot
    assert ("icl", "cot", True, False) in methods  # k-shot CoT
    assert ("icl", "cot", False, True) in methods  # zero-shot CoT
    assert {("lora", f) for f in ("answer", "cot", "code")} <= {
        (a.method, a.format) for a in r.arms
    }
    assert any(a.method == "full" for a in r.arms)


def test_smoke_overrides_model_and_sizes():
    r = load_recipe(ROOT / "recipes" / "quickstart.yaml", smoke=True)
    assert r.model == "tiny-random"
    assert r.task.n_test == SMOKE_DEFAULTS["task"]["n_test"]
    assert len(r.arms) == 8  # the same study


def test_unknown_key_suggests_the_right_one():
    bad = _with(arms=[{"name": "zs", "method": "icl", "formt": "cot"}])
    with pytest.raises(
        LabError, match=r"unknown key 'arms\[0\].formt' \(did you mean 'format'\?\)"
    ):
        parse_recipe(bad)


def test_bad_value_names_key_and_value():
    with pytest.raises(LabError, match=r"arms\[0\].method.*'sft'"):
        parse_recipe(_with(arms=[{"name": "x", "method": "sft"}]))


def test_missing_key_and_duplicate_arms():
    with pytest.raises(LabError, match="'model' is missing"):
        parse_recipe({"name": "t", "arms": MIN["arms"]})
    with pytest.raises(LabError, match="unique"):
        parse_recipe(_with(arms=[MIN["arms"][0], MIN["arms"][0]]))


def test_arm_train_overrides_are_validated_up_front():
    arm = {"name": "ft", "method": "lora", "train": {"stpes": 3}}
    with pytest.raises(LabError, match="stpes.*did you mean 'steps'"):
        parse_recipe(_with(arms=[arm]))
    icl = {"name": "x", "method": "icl", "train": {"steps": 3}}
    with pytest.raises(LabError, match="ICL arm"):
        parse_recipe(_with(arms=[icl]))
    ok = parse_recipe(_with(arms=[{"name": "ft", "method": "full", "train": {"lr": 1e-5}}]))
    assert ok.train_for(ok.arms[0]).lr == 1e-5
    assert ok.train_for(ok.arms[0]).steps == ok.train.steps


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(LabError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(LabError, match="not valid YAML"):
        load_recipe(p)


def test_hash_changes_with_content_not_with_tracking():
    a = parse_recipe(MIN)
    b = parse_recipe(_with(tracking={"mode": "disabled"}))
    c = parse_recipe(_with(seeds=[0, 1]))
    assert a.hash() == b.hash() != c.hash()


def test_profile_applies_named_overrides_and_unknown_profile_is_refused():
    path = ROOT / "recipes" / "quickstart.yaml"
    full, demo = load_recipe(path), load_recipe(path, profile="demo")
    assert len(full.seeds) >= 3 and len(full.budgets) >= 2  # the fair study
    assert demo.seeds == [0] and demo.budgets == [8] and demo.arms == full.arms
    assert demo.task.n_test >= 64 and demo.train.steps < full.train.steps  # the demo's sizes
    assert full.task.n_test == 16 and full.train.steps == 24  # the study keeps its design
    assert demo.hash() != full.hash()
    with pytest.raises(LabError, match=r"no profile 'dmo' \(did you mean 'demo'\?\)"):
        load_recipe(path, profile="dmo")


def test_hash_ignores_unapplied_override_sets():
    a = parse_recipe(_with())
    b = parse_recipe(_with(profiles={"x": {"seeds": [5]}}, smoke={"seeds": [4]}))
    assert a.hash() == b.hash()


def test_recorded_study_hashes_hold():
    """The hash of a recipe is what a recorded study resumes under: a refactor must not
    change it (quickstart's, as recorded by the studies run so far)."""
    from lab.core.recipe import load_recipe

    assert load_recipe(ROOT / "recipes" / "quickstart.yaml").hash() == "e3d28b2d66f91cf2"
    assert (
        load_recipe(ROOT / "recipes" / "quickstart.yaml", smoke=True).hash() == "1a7712225ddd5674"
    )


def test_prompt_section_defaults_keep_the_hash_and_chat_smoke_uses_the_tiny_chat_model():
    plain = parse_recipe(dict(MIN))
    explicit = parse_recipe({**MIN, "prompt": {"style": "plain", "demos": "single_turn"}})
    chat = parse_recipe({**MIN, "prompt": {"style": "chat"}})
    multi = parse_recipe({**MIN, "prompt": {"style": "chat", "demos": "multi_turn"}})
    assert plain.hash() == explicit.hash()
    assert len({plain.hash(), chat.hash(), multi.hash()}) == 3
    assert (
        parse_recipe({**MIN, "prompt": {"style": "chat"}}, smoke=True).model == "tiny-random-chat"
    )
    ladder = {**MIN, "model": ["a/b", "c/d"], "prompt": {"style": "chat"}}
    assert parse_recipe(ladder, smoke=True).model == ["tiny-random-chat", "tiny-random-d96-chat"]
    with pytest.raises(LabError, match="multi_turn needs prompt.style: chat"):
        parse_recipe({**MIN, "prompt": {"demos": "multi_turn"}})
