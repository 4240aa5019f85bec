"""The one-sentence answer on planted cases: its words follow tested quantities (the ID gain,
the OOD gain and their difference, one joint paired bootstrap), and the strongest arm,
chosen after looking, is exploratory with Holm-adjusted p-values."""

from __future__ import annotations

import numpy as np
import pytest

from lab.core.recipe import parse_recipe
from lab.report.analysis import headline
from lab.report.verdict import holm, paired_gains

N = 300  # examples per split
RECIPE = parse_recipe(
    {
        "name": "planted",
        "model": "tiny-random",
        "budgets": [8],
        "arms": [
            {"name": "icl", "method": "icl", "k": 8},
            {"name": "lora_answer", "method": "lora"},
            {"name": "lora_cot", "method": "lora", "format": "cot"},
            {"name": "full_cot", "method": "full", "format": "cot"},
        ],
    }
)


def planted(accuracy: float, seed: int, seeds: int = 3) -> np.ndarray:
    """(seeds, N) 0/1 scores with exactly `accuracy` correct, in a seeded order."""
    row = np.zeros(N)
    row[: round(accuracy * N)] = 1
    return np.tile(np.random.default_rng(seed).permutation(row), (seeds, 1))


def pair(id_ft: float, id_icl: float, ood_ft: float, ood_icl: float, arm="lora_answer"):
    """A tested FT/ICL pair at budget 8 with the planted accuracies."""
    res = paired_gains(
        planted(id_ft, 1), planted(id_icl, 2), [planted(ood_ft, 3)], [planted(ood_icl, 4)]
    )
    return {
        "ft": (arm, 8),
        "icl": ("icl", 8),
        "labelled": (8, 8),
        "equal": True,
        "has_ood": True,
        **res,
    }


@pytest.mark.parametrize(
    ("accuracies", "words"),
    [
        ((0.8, 0.3, 0.2, 0.6), "fine-tuning buys ID accuracy at the price of OOD robustness"),
        ((0.5, 0.5, 0.4, 0.4), "no significant difference between fine-tuning and prompting"),
        ((0.9, 0.2, 0.6, 0.4), "improves both, but the OOD gain is significantly smaller"),
        ((0.65, 0.5, 0.8, 0.2), "improves both, and the OOD gain is significantly larger"),
        # both gains significant, their difference (0.05) not: no "smaller" claim
        ((0.8, 0.5, 0.75, 0.5), "improves ID and OOD alike (no significant difference"),
    ],
)
def test_headline_words_follow_tested_quantities(accuracies, words):
    res = pair(*accuracies)
    assert {"id", "ood", "gap"} <= set(res)
    text = headline(RECIPE, [res])
    assert words in text, text
    assert "the ID gain minus the OOD gain is" in text and "8 labelled examples each" in text


def test_the_gap_is_tested_not_read_off_point_estimates():
    res = pair(0.8, 0.5, 0.75, 0.5)
    assert res["ood"]["diff"] < res["id"]["diff"]  # smaller as a point estimate...
    assert res["gap"]["lo"] < 0 < res["gap"]["hi"] and res["gap"]["p_value"] >= 0.05  # ...n.s.
    assert "smaller" not in headline(RECIPE, [res])


def test_unequal_budgets_get_no_verdict():
    res = {
        "ft": ("lora_answer", 8),
        "icl": ("icl", 8),
        "labelled": (10, 8),
        "equal": False,
        "has_ood": True,
    }
    text = headline(RECIPE, [res])
    assert "unequal budgets: no paired verdict" in text
    assert "lora_answer (10 labelled examples) and icl (8)" in text


def test_no_ood_split_no_headline():
    res = {
        "ft": ("lora_answer", 8),
        "icl": ("icl", 8),
        "labelled": (8, 8),
        "equal": True,
        "has_ood": False,
        **paired_gains(planted(0.5, 1), planted(0.5, 2)),
    }
    assert headline(RECIPE, [res]) is None


def q(diff: float, p: float) -> dict[str, float]:
    return {"diff": diff, "lo": diff - 0.1, "hi": diff + 0.1, "p_value": p, "n_examples": N}


def test_strongest_arm_is_exploratory_with_holm_adjusted_p_values():
    def res(arm, id_p, id_diff):
        return {
            "ft": (arm, 8),
            "icl": ("icl", 8),
            "labelled": (8, 8),
            "equal": True,
            "has_ood": True,
            "id": q(id_diff, id_p),
            "ood": q(0.01, 0.8),
            "gap": q(id_diff - 0.01, 0.5),
        }

    primary = res("lora_answer", 0.001, 0.10)
    strongest = res("lora_cot", 0.03, 0.30)  # significant alone, not after Holm (0.06)
    results = [primary, strongest, res("full_cot", 0.5, 0.05)]
    text = headline(RECIPE, results)
    first, _, second = text.partition(" Exploratory")
    assert "lora_answer vs icl" in first and "lora_cot" not in first
    assert "Holm-adjusted over the 3 fine-tuned arm(s)" in second
    assert "ID accuracy by +0.300" in second and "p_Holm=0.06" in second
    assert "no significant difference between fine-tuning and prompting" in second
    # unadjusted, the same numbers would have read as a significant ID gain
    assert "improves ID accuracy" in headline(RECIPE, [strongest])


def test_strongest_arm_not_repeated_when_it_is_the_primary():
    results = [pair(0.9, 0.2, 0.6, 0.4), pair(0.6, 0.2, 0.6, 0.4, arm="lora_cot")]
    assert "Exploratory" not in headline(RECIPE, results)


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.2, 0.3]) == pytest.approx([0.4, 0.4])  # monotone in the raw p-values
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_the_only_tested_pair_is_reported_when_the_primary_has_unequal_budgets():
    unequal = {
        "ft": ("lora_answer", 8),
        "icl": ("icl", 8),
        "labelled": (10, 8),
        "equal": False,
        "has_ood": True,
    }
    text = headline(RECIPE, [unequal, pair(0.9, 0.2, 0.6, 0.4, arm="lora_cot")])
    assert "unequal budgets: no paired verdict" in text
    assert "Exploratory" in text and "lora_cot vs icl" in text


def test_a_study_without_labelled_counts_gets_no_verdict():
    old = {
        "ft": ("lora_answer", 8),
        "icl": ("icl", 8),
        "labelled": ("not recorded", 8),
        "equal": False,
        "has_ood": True,
    }
    assert "labelled examples not recorded" in headline(RECIPE, [old])
