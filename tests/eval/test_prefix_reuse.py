"""Many-shot prompts (`k: all`): the demo prefix is computed once per variant and reused by
every query of every call (generation, log p(gold), the next split), and the scores are
those of the unshared path (each prompt run whole, prefix included)."""

from __future__ import annotations

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM, GenRequest
from lab.core.prompts import prompt


def _lm(tiny_model) -> LM:
    model, tok = tiny_model
    return LM(model, tok, batch_size=4, progress=False, invariant=True)


def test_many_shot_prefix_runs_once_and_scores_as_the_unshared_path(tiny_model, splits):
    spec = PromptSpec("answer", tuple(splits["train"][:16]))
    lm = _lm(tiny_model)
    p_len = len(lm.bos) + len(lm.encode(spec.prefix))
    assert 150 < p_len < lm.max_len
    prefix = lm.clock.phases["prefix"]
    xs = splits["test"][:4]
    preds, _ = evaluate_split(lm, xs, spec, max_new_tokens=4)
    evaluate_split(lm, splits["ood_digits"][:2], spec, max_new_tokens=4)
    # the shared tokens ran once (the first split's generation), not per call or split
    assert prefix["calls"] == 1 and prefix["tokens"] > p_len - 4, dict(prefix)
    whole = _lm(tiny_model)  # the unshared path: each prompt whole, prefix in its text
    texts = [spec.prefix + prompt(x) for x in xs]
    gens = whole.generate([GenRequest("", t, spec.stop, 4) for t in texts])
    lps = whole.loglikelihood([("", t, f" {x.answer}") for t, x in zip(texts, xs, strict=True)])
    assert "prefix" not in whole.clock.phases  # nothing shared there
    assert [g.text for g in gens] == [p["generation"] for p in preds]
    assert [lp for lp, _g, _n in lps] == [p["gold_logprob"] for p in preds]
