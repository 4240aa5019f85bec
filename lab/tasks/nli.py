"""Hooks of the sentence-pair tasks (lab/tasks/yaml/mnli_hans.yaml, rte_hans.yaml,
qqp_paws.yaml): the ID/OOD pairs of Mosbach et al. 2023 ("Few-shot Fine-tuning vs.
In-context Learning"), MNLI -> HANS (and the mismatched genres), RTE -> HANS, QQP ->
PAWS-QQP, scored by the log-likelihood of the verbalizers " Yes" / " No" after one pattern
shared by ICL demos, fine-tuning and evaluation (their "gpt-3" in-context format,
uds-lsv/llmft scripts/in_context/mnli/run_gpt3.sh):

    {premise} question: {hypothesis} Yes or No? answer: Yes

The tasks themselves are declarative (patterns, label maps, sources, samples, ids: the
YAML files); what templates cannot express is here: `sample_hans` (HANS sampled evenly over
its 30 subcases, so heuristics and labels stay balanced in small samples) and the row maps
of the hub copies (`task.source: hub`: integer labels to the label names of the local
files, RTE's sentence1/2, HANS's subcase).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# Integer labels of the hub copies -> the label names of the local files.
_HUB_LABELS = {
    "mnli": ("entailment", "neutral", "contradiction"),
    "hans": ("entailment", "non-entailment"),
    "rte": ("entailment", "not_entailment"),
}


def _perm(n: int, tag: str) -> list[int]:
    order = list(range(n))
    random.Random(tag).shuffle(order)
    return order


def sample_hans(pairs: list[Any], n: int, tag: str) -> list[Any]:
    """n examples spread evenly over the subcases: round r takes the r-th example of every
    subcase's seeded permutation, the subcases interleaved so that any prefix of a round
    alternates heuristics and labels (lexical_overlap / subsequence / constituent, then
    entailment / non-entailment). Works on anything with a `meta` holding `subcase`,
    `heuristic` and `label` (the HANS examples of a declarative task: its `sampler` hook)."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by[p.meta.get("subcase", "")].append(i)

    def slot(sub: str) -> tuple[int, int, str]:
        p = pairs[by[sub][0]]
        same = sorted(
            s
            for s in by
            if pairs[by[s][0]].meta.get("heuristic") == p.meta.get("heuristic")
            and pairs[by[s][0]].meta["label"] == p.meta["label"]
        )
        return (same.index(sub), p.meta["label"] != "entailment", p.meta.get("heuristic", ""))

    ranked = []
    for j, sub in enumerate(sorted(by, key=slot)):
        idx = by[sub]
        for r, k in enumerate(_perm(len(idx), f"{tag}-{sub}")):
            ranked.append((r, j, idx[k]))
    return [pairs[i] for i in sorted(i for _r, _j, i in sorted(ranked)[:n])]


def hub_row(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A `map` hook for the hub copies of the declarative pair tasks (lab/tasks/yaml/):
    integer labels to the label names of the local files, RTE's sentence1/2 to premise /
    hypothesis, HANS's subcase to subcase_inferred."""
    names = _HUB_LABELS[kind]

    def row(rec: dict[str, Any]) -> dict[str, Any]:
        rec = dict(rec)
        if isinstance(rec.get("label"), int) and rec["label"] >= 0:
            rec["label"] = names[rec["label"]]
        if kind == "hans":
            rec["subcase_inferred"] = rec.get("subcase", "")
        if kind == "rte" and "sentence1" in rec:
            rec["premise"], rec["hypothesis"] = rec["sentence1"], rec["sentence2"]
        return rec

    return row


mnli_hub_row = hub_row("mnli")
rte_hub_row = hub_row("rte")
hans_hub_row = hub_row("hans")
