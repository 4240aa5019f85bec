"""The log-likelihood classification / multiple-choice path.

An example with `choices` is scored, not generated: every choice (a verbalizer such as
" Yes" / " No", or a multiple-choice option) is scored as a continuation of the same prompt
the generation path would use (ICL arms: the k demos in front; FT arms: none), with
`LM.loglikelihood` (sum of the continuation's token log-probabilities; the demo prefix is
run once per group and its KV cache reused); when every choice is one token, one forward
pass per example scores them all (`LM.next_token_logprobs`, the same numbers). The prediction is the highest-scoring choice
(the first one on an exact tie).

Metrics per split (each a row in results.jsonl):
- `exact_match`: accuracy of the predicted choice;
- `gold_logprob`: mean log p(gold choice | prompt) (unnormalised: the model's own probability);
- `brier`: mean over examples of sum_c (p_c - y_c)^2, with p the softmax of the choices'
  log-likelihoods (probabilities normalised over the choices) and y the one-hot gold:
  0 is perfect, 2 the worst; a uniform guess over two choices scores 0.5;
- `ece`, `ece_mass`: expected calibration error of the top-label confidence (the predicted
  choice's p), 15 equal-width / equal-mass bins (eval/calibration.py).

Every choice's log-likelihood is kept in the per-example predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from eval.calibration import ece, ece_mass
from eval.lm import LM
from lab.core.chat import chat_text
from lab.core.example import Example
from lab.core.formats import DEFAULT, PromptFormat
from lab.core.prompts import prompt


def choice_probs(logps: Sequence[float]) -> list[float]:
    """Softmax of the choices' log-likelihoods: probabilities normalised over the choices."""
    top = max(logps)
    w = [math.exp(x - top) for x in logps]
    z = sum(w)
    return [x / z for x in w]


def brier(probs: Sequence[float], gold: int) -> float:
    """Multi-class Brier score of one example: sum over choices of (p - 1[gold])^2."""
    return sum((p - (1.0 if i == gold else 0.0)) ** 2 for i, p in enumerate(probs))


def evaluate_choices(
    lm: LM,
    examples: Sequence[Example],
    prefix: str,
    trigger: str | None = None,
    desc: str = "choices",
    tail: str = "",
    chat: bool = False,
    prompt_format: PromptFormat = DEFAULT,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(per-example predictions, metrics) for examples that all carry `choices`. Chat style
    (lab/core/chat.py): `tail` closes the question's user turn and opens the assistant's,
    and each choice is scored as the assistant's content (without its leading space); in a
    prompt format other than DEFAULT each choice's leading space is that format's answer
    lead."""
    if not all(ex.choices for ex in examples):
        raise ValueError("evaluate_choices: every example of a split must carry `choices`")
    scored = _score(lm, examples, prefix, trigger, desc, tail, chat, prompt_format)
    preds: list[dict[str, Any]] = []
    for ex, got in zip(examples, scored, strict=True):
        n = len(got)
        logps = [lp for lp, _n in got]
        probs = choice_probs(logps)
        best = max(range(n), key=lambda i: (logps[i], -i))  # first on an exact tie
        gold = ex.gold_index
        n_prompt = len(lm.bos) + len(lm.encode(prefix + prompt(ex, trigger, prompt_format) + tail))
        preds.append(
            {
                "id": ex.id,
                "question": ex.question,
                "gold": ex.answer,
                "generation": "",
                "pred": ex.choices[best].strip(),
                "correct": best == gold,
                "error": None,
                "stopped": "choice",
                # the context once plus every scored choice (what scoring costs without cache)
                "prompt_tokens": n_prompt + sum(k for _lp, k in got),
                "new_tokens": 0,
                "gold_logprob": logps[gold],
                "choices": list(ex.choices),
                "choice_logprobs": logps,
                "choice_probs": probs,
                "gold_index": gold,
                "pred_index": best,
                "brier": brier(probs, gold),
                "meta": ex.meta,
            }
        )
    return preds, summarize_choices(preds)


def _score(
    lm: LM,
    examples: Sequence[Example],
    prefix: str,
    trigger: str | None,
    desc: str,
    tail: str = "",
    chat: bool = False,
    pf: PromptFormat = DEFAULT,
) -> list[list[tuple[float, int]]]:
    """Per example, (log p(choice | prompt), tokens) of each choice. When every choice is a
    single token (" Yes" / " No" for most tokenizers), one forward pass per example gives
    them all (`LM.next_token_logprobs`: the same numbers as `loglikelihood`); otherwise
    each choice is scored as its own continuation."""
    choices = [
        [chat_text(c) if chat else pf.continuation(c) for c in ex.choices] for ex in examples
    ]
    enc = [[lm.encode(c) for c in cs] for cs in choices]
    if all(len(t) == 1 for e in enc for t in e):
        reqs = [(prefix, prompt(ex, trigger, pf) + tail) for ex in examples]
        lps = lm.next_token_logprobs(reqs, [[t[0] for t in e] for e in enc], desc=desc)
        return [[(lp, 1) for lp in row] for row in lps]
    requests, spans = [], []
    for ex, cs in zip(examples, choices, strict=True):
        spans.append((len(requests), len(cs)))
        requests.extend((prefix, prompt(ex, trigger, pf) + tail, c) for c in cs)
    scored = lm.loglikelihood(requests, desc=desc)
    return [[(lp, k) for lp, _g, k in scored[s : s + n]] for s, n in spans]


def summarize_choices(preds: Sequence[dict[str, Any]]) -> dict[str, float]:
    n = len(preds)
    conf = [p["choice_probs"][p["pred_index"]] for p in preds]  # top-label confidence
    hits = [bool(p["correct"]) for p in preds]
    return {
        "n": n,
        "exact_match": sum(p["correct"] for p in preds) / n,
        "no_answer": 0.0,
        "truncated": 0.0,
        "prompt_tokens": sum(p["prompt_tokens"] for p in preds),
        "new_tokens": 0,
        "gold_logprob": sum(p["gold_logprob"] for p in preds) / n,
        "brier": sum(p["brier"] for p in preds) / n,
        "ece": ece(conf, hits),
        "ece_mass": ece_mass(conf, hits),
    }
