"""What a reviewer opens first: the HTML report (a verdict per compared pair, the forest
plot of paired gains, the sentence, notes rendered, not printed as Markdown) and the W&B
Report's panels (only for what was logged)."""

from __future__ import annotations

import re

from wandb_study import RECIPE

from lab.core.io import read_json
from lab.core.recipe import parse_recipe
from lab.report.wandb_report import logged


def test_report_panels_only_for_what_was_logged():
    base = {**RECIPE, "profiles": {}, "smoke": {}}
    full = logged(parse_recipe(base))
    assert full["metrics"] == ["exact_match", "gold_logprob"] and "dev/loss" in full["curves"]
    off = {
        **base,
        "eval": {**RECIPE["eval"], "gold_logprob": False},
        "train": {**RECIPE["train"], "select": "last"},
    }
    less = logged(parse_recipe(off))
    assert less["metrics"] == ["exact_match"] and "dev/loss" not in less["curves"]
    icl_only = logged(parse_recipe({**base, "arms": RECIPE["arms"][:2]}))
    assert icl_only["curves"] == []


def test_html_report_opens_with_verdicts_and_the_forest_plot_and_renders_its_notes(study):
    page = (study / "report" / "index.html").read_text()
    text = re.sub(r"<img[^>]*>", "", page)
    text = re.sub(r"<code>.*?</code>", "", text)
    assert "`" not in text  # Markdown backticks rendered as <code>, not printed
    assert "<code>labelled_examples</code>" in page and "<code>test</code>" in page
    verdicts = page.index("Verdict per compared pair")
    assert verdicts < page.index("alt='forest'") < page.index("<b>Answer.</b>")
    assert (
        page.index("<b>Answer.</b>") < page.index("<h2>Fairness</h2>") < page.index("<h2>Results")
    )
    md = (study / "report" / "report.md").read_text()
    assert md.index("## Verdict per compared pair") < md.index("**Answer.**")
    for line in read_json(study / "report" / "summary.json")["verdicts"]:
        assert f"<li>{line}</li>" in page and f"- {line}" in md
