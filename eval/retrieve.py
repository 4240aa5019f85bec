"""Retrieved demos (`demos: knn`): for each query, the k examples of the budget nearest to
it, by Okapi BM25 over the examples' inputs.

Why BM25 and not embeddings: it is deterministic (integer term counts, one float formula,
no kernel or batch dependence), costs nothing beside evaluation (no forward pass: at budget
b, b short documents), needs no outside model (an NLI/STS-trained encoder would bring labels
from outside the budget), and is what Bertsch et al. (2024, arXiv 2405.00200) retrieve with
over the training pool. The base model's own mean-pooled states (SGPT-style) are the other
budget-fair choice; untuned, how well they rank is not established, so they are not offered.
On the synthetic arithmetic task BM25 mostly matches shared numbers and phrasing; that is
what "nearest" means here.

The rules (lab/core/fairness.py, research note section 8):
- the index is the budget only (the cell's b examples, in the data seed's order);
- a query is never among its own demos: index examples with the query's content key (its
  normalised input text, hashed) are left out, whatever their ids;
- ties are broken by pool order (the earlier example of the budget first);
- the k chosen demos are joined in ascending similarity: the most similar one last, right
  before the query (KATE's released code puts it first; which is better is not settled).

Written here (about 30 lines) rather than taken from rank-bm25 / bm25s: those are not among
the lab's dependencies, and the formula is short enough to read in full.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import cached_property

from lab.core.example import Example
from lab.core.fairness import content_key
from lab.core.prompts import prompt

K1, B = 1.5, 0.75  # Okapi BM25's usual constants (Robertson & Zaragoza 2009)
_TERM = re.compile(r"\w+", re.UNICODE)


def terms(text: str) -> list[str]:
    """Lower-cased word and number tokens (punctuation and operators dropped)."""
    return _TERM.findall(text.lower())


class Retriever:
    """BM25 over the inputs of `index` (the budget); `demos(query)` its k nearest."""

    def __init__(self, index: Sequence[Example], k: int):
        if k <= 0:
            raise ValueError("a retriever needs k > 0 demos per query")
        self.index, self.k = tuple(index), k
        self._memo: dict[str, tuple[Example, ...]] = {}  # query input -> its demos

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Retriever)
            and self.k == other.k
            and [e.id for e in self.index] == [e.id for e in other.index]
        )

    def __hash__(self) -> int:
        return hash((self.k, tuple(e.id for e in self.index)))

    def __repr__(self) -> str:
        return f"Retriever(bm25, index={len(self.index)}, k={self.k})"

    @cached_property
    def _stats(self) -> tuple[list[Counter[str]], list[int], dict[str, float], float, list[str]]:
        docs = [Counter(terms(prompt(ex))) for ex in self.index]
        lengths = [sum(d.values()) for d in docs]
        df: Counter[str] = Counter(t for d in docs for t in d)
        n = len(docs)
        idf = {t: math.log((n - c + 0.5) / (c + 0.5) + 1.0) for t, c in df.items()}
        avg = sum(lengths) / n if n else 0.0
        return docs, lengths, idf, avg, [content_key(ex) for ex in self.index]

    def scores(self, query: Example) -> list[float]:
        """BM25 of every index example against the query's input (index order)."""
        docs, lengths, idf, avg, _keys = self._stats
        q = Counter(terms(prompt(query)))
        out = []
        for d, n in zip(docs, lengths, strict=True):
            s = 0.0
            for t in q:
                f = d.get(t, 0)
                if f:
                    s += idf[t] * f * (K1 + 1) / (f + K1 * (1 - B + B * n / (avg or 1.0)))
            out.append(s)
        return out

    def demos(self, query: Example) -> tuple[Example, ...]:
        """The query's k nearest index examples (its own input excluded), joined in
        ascending similarity (the most similar last; equal scores in index order); which
        k are chosen: the highest scores, ties to the earlier index example."""
        text = prompt(query)  # what the choice depends on (not the id)
        if text in self._memo:
            return self._memo[text]
        own = content_key(query)
        keys = self._stats[4]
        scored = [(-s, i) for i, s in enumerate(self.scores(query)) if keys[i] != own]
        best = sorted(scored)[: self.k]
        chosen = tuple(self.index[i] for _s, i in sorted(best, key=lambda p: (-p[0], p[1])))
        self._memo[text] = chosen
        return chosen
