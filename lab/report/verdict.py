"""The one-sentence answer, decided by tested quantities, not by point estimates.

For a fine-tuned arm F and its matched k-shot arm P (equal labelled examples, the same eval
examples), one joint paired bootstrap (`eval/stats.py:gain_ci`) gives the ID gain F - P,
the OOD gain F - P (pooled over the OOD mean's examples) and the gap, ID gain - OOD gain,
each with a 95% CI and a two-sided p-value. A quantity is significant when its p-value is
below `ALPHA`; its direction is the sign of its estimate. The words follow (`verdict`):
"the OOD gain is smaller" is said only when the gap is significantly positive.

Multiplicity. The headline's pair is fixed before looking at results: the plain-answer FT
arm at the largest budget (else the first FT arm there); its p-values are used as they are.
The "strongest fine-tuned arm" (the largest ID gain at that budget) is chosen after looking:
its p-values are Holm-adjusted over the arms considered (every FT arm paired at that budget
with equal labelled data, separately for the ID gain, the OOD gain and the gap) and the
sentence calls it exploratory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eval.stats import gain_ci, paired_bootstrap

ALPHA = 0.05
QUANTITIES = ("id", "ood", "gap")


def paired_gains(
    ft_id: np.ndarray,
    icl_id: np.ndarray,
    ft_ood: Sequence[np.ndarray] = (),
    icl_ood: Sequence[np.ndarray] = (),
) -> dict[str, dict[str, float]]:
    """{"id", "ood", "gap"} (each diff, lo, hi, p_value, n_examples) of FT vs ICL from
    (seeds, examples) matrices whose columns are the same examples; OOD as one matrix per
    OOD split. Without OOD splits, only "id"."""
    if not ft_ood:
        return {"id": paired_bootstrap(ft_id, icl_id)}
    return gain_ci(ft_id, icl_id, list(ft_ood), list(icl_ood))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values (family-wise error), in the input order."""
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _sign(x: dict[str, float]) -> int:
    """+1 / -1: significantly positive / negative (p < ALPHA, the estimate's sign); 0: not."""
    if x["p_value"] >= ALPHA or x["diff"] == 0:
        return 0
    return 1 if x["diff"] > 0 else -1


def verdict(res: dict[str, Any]) -> str:
    """The words for a tested pair (`paired_gains`'s dict with "ood" and "gap")."""
    si, so, sg = _sign(res["id"]), _sign(res["ood"]), _sign(res["gap"])
    if si > 0 and so < 0:
        return "fine-tuning buys ID accuracy at the price of OOD robustness"
    if si > 0 and so > 0:
        if sg > 0:
            return "fine-tuning improves both, but the OOD gain is significantly smaller than the ID gain"
        if sg < 0:
            return "fine-tuning improves both, and the OOD gain is significantly larger than the ID gain"
        return "fine-tuning improves ID and OOD alike (no significant difference between the gains)"
    if si > 0:
        return "fine-tuning improves ID accuracy without a significant OOD change" + (
            ", and its OOD gain is significantly smaller than its ID gain" if sg > 0 else ""
        )
    ood = {
        1: "fine-tuning is better out of distribution",
        -1: "fine-tuning is worse out of distribution",
        0: "no significant OOD difference",
    }[so]
    if si < 0:
        return f"prompting beats fine-tuning in distribution; {ood}"
    if so == 0:
        return "no significant difference between fine-tuning and prompting, ID or OOD"
    return f"no significant ID difference; {ood}"


def decision(res: dict[str, Any]) -> str:
    """A compared pair's decision in words, without numbers (two are the same decision when
    the words are): `verdict` for a tested pair with OOD splits; the ID gain's sign without
    them; "not tested" for unequal or unrecorded budgets."""
    if not res["equal"]:
        return "not tested"
    if "gap" in res:
        return verdict(res)
    return {
        1: "fine-tuning is better in distribution",
        -1: "prompting is better in distribution",
        0: "no significant ID difference",
    }[_sign(res["id"])]


def formats_clause(words: dict[str, str], main: str) -> str:
    """Whether a pair's decision holds under every prompt format (`words`: format name ->
    `decision`, the main format's under `main`), in one sentence."""
    n = len(words)
    same = [f for f, w in words.items() if w == words[main]]
    if len(same) == n:
        return (
            f"This verdict holds under every one of the {n} prompt formats (eval.formats; the "
            "fine-tuned arm was trained in the main format only)."
        )
    other = "; ".join(f"under {f}: {w}" for f, w in words.items() if w != words[main])
    return (
        f"This verdict does not hold under every prompt format: it holds under {len(same)} of "
        f"the {n} (eval.formats; the fine-tuned arm was trained in the main format only); "
        f"{other}."
    )


def _label(group: tuple[str, Any]) -> str:
    return group[0]


def sentence(res: dict[str, Any], p_name: str = "p") -> str:
    """One tested pair in words: the three quantities with CIs and p-values, then the verdict."""

    def q(x: dict[str, float]) -> str:
        return f"{x['diff']:+.3f} (95% CI {x['lo']:+.3f} to {x['hi']:+.3f}, {p_name}={x['p_value']:.2g})"

    n = res["labelled"][0]
    return (
        f"{_label(res['ft'])} vs {_label(res['icl'])} ({n} labelled examples each) changes ID "
        f"accuracy by {q(res['id'])} and OOD accuracy by {q(res['ood'])}; the ID gain minus the "
        f"OOD gain is {q(res['gap'])}: {verdict(res)}"
    )


def answer_pair(
    budgets: Sequence[Any] | None, results: list[dict[str, Any]], answer_arms: Sequence[str]
) -> dict[str, Any] | None:
    """The pre-specified pair of the answer (of `results`, as `answer_sentence` takes them): the
    plain-answer FT arm at the largest budget, else the first FT arm there; None when the
    study has no pair or no OOD split."""
    if not results or not any(r["has_ood"] for r in results):
        return None
    order = {b: i for i, b in enumerate(budgets or [])}
    top = max(order.get(r["ft"][1], 0) for r in results)
    at_top = [r for r in results if order.get(r["ft"][1], 0) == top]
    return next((x for x in at_top if x["ft"][0] in answer_arms), at_top[0])


def one_line(res: dict[str, Any]) -> str:
    """A compared pair's verdict in one line: `<FT> vs <ICL> @ <budget>: <words>`."""
    budget = f" @ {res['ft'][1]}" if res["ft"][1] is not None else ""
    name = f"{_label(res['ft'])} vs {_label(res['icl'])}{budget}"
    if res["equal"] and "gap" in res:
        return f"{name}: {verdict(res)}"
    if res["equal"]:
        return (
            f"{name}: no OOD split; ID gain {res['id']['diff']:+.3f} (p={res['id']['p_value']:.2g})"
        )
    if all(isinstance(n, int) for n in res["labelled"]):
        return f"{name}: unequal budgets ({res['labelled'][0]} vs {res['labelled'][1]}), not tested"
    return f"{name}: labelled examples not recorded, not tested"


def answer_sentence(
    model: str,
    task: str,
    budgets: Sequence[Any] | None,
    results: list[dict[str, Any]],
    answer_arms: Sequence[str],
) -> str | None:
    """The answer in one sentence for the pre-specified pair (the plain-answer FT arm at the
    largest budget), plus an exploratory one for the arm with the largest ID gain there when
    that is another arm. `results`: one dict per FT/ICL pair with "ft", "icl" (groups),
    "labelled" (FT, ICL counts), "equal" and, when equal, `paired_gains`'s quantities. None
    when the study has no pair or no OOD split."""
    r = answer_pair(budgets, results, answer_arms)
    if r is None:
        return None
    order = {x: i for i, x in enumerate(budgets or [])}
    at_top = [x for x in results if order.get(x["ft"][1], 0) == order.get(r["ft"][1], 0)]
    budget = f" at budget {r['ft'][1]}" if r["ft"][1] is not None else ""
    text = f"For {model} on {task}{budget}, "
    if r["equal"]:
        text += sentence(r) + "."
    elif all(isinstance(n, int) for n in r["labelled"]):
        n_ft, n_icl = r["labelled"]
        text += (
            f"{_label(r['ft'])} ({n_ft} labelled examples) and {_label(r['icl'])} ({n_icl}) "
            "have unequal budgets: no paired verdict."
        )
    else:
        text += (
            f"{_label(r['ft'])} vs {_label(r['icl'])}: labelled examples not recorded (a study "
            "of an older lab): no paired verdict."
        )
    considered = [x for x in at_top if x["equal"]]
    if not considered:
        return text
    best = max(considered, key=lambda x: x["id"]["diff"])
    if best is r or (r["equal"] and best["id"]["diff"] <= r["id"]["diff"]):
        return text
    adjusted = dict(best)
    for name in QUANTITIES:
        p = holm([x[name]["p_value"] for x in considered])[considered.index(best)]
        adjusted[name] = {**best[name], "p_value": p}
    return text + (
        f" Exploratory (the arm was chosen after looking; p-values Holm-adjusted over the "
        f"{len(considered)} fine-tuned arm(s) tested at this budget): the strongest fine-tuned "
        f"arm, {sentence(adjusted, 'p_Holm')}."
    )
