"""Contamination check: word n-gram overlap between training text and eval splits.

Normalisation: a text is lowercased, every character that is neither a letter/digit nor
whitespace (punctuation, symbols, the underscore) is replaced by a space, and the result is
split on whitespace. So "Don't stop!" is the words ``don t stop`` and "1,234" is ``1 234``;
the same rule applies to train and eval texts, so a verbatim copy always matches.

Grams: a text of at least ``n`` words contributes its word n-grams (``len - n + 1`` of them);
a text of 1 to ``n - 1`` words contributes its whole word sequence as one (shorter) gram, so a
short eval text matches only a train text with the identical normalised word sequence (a short
text is not flagged for occurring inside a longer train text: short phrases occur everywhere);
a text with no words contributes no gram and is never contaminated.

Pass everything the model saw as ``train_texts``: the FT training set and the ICL demos
(prompt and answer text alike).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["contamination_table", "ngram_overlap"]

_NOT_WORD = re.compile(r"[^\w\s]|_")

Gram = tuple[str, ...]


def words(text: str) -> list[str]:
    """The normalised word sequence of ``text`` (see the module docstring)."""
    return _NOT_WORD.sub(" ", text.lower()).split()


def _iter_grams(w: list[str], n: int) -> Iterable[Gram]:
    if len(w) < n:
        return [tuple(w)] if w else []
    return zip(*(w[i:] for i in range(n)), strict=False)


def grams(text: str, n: int = 8) -> set[Gram]:
    """The set of word n-grams of ``text``; a text of fewer than ``n`` words is one gram."""
    return set(_iter_grams(words(text), n))


def _train_grams(train_texts: Iterable[str], n: int) -> set[Gram]:
    out: set[Gram] = set()
    for text in train_texts:
        out.update(_iter_grams(words(text), n))
    return out


def _overlap(train: set[Gram], eval_texts: list[str], n: int) -> dict:
    contaminated = 0
    max_overlap = 0.0
    for text in eval_texts:
        g = grams(text, n)
        if not g:
            continue
        hits = len(g & train)
        if hits:
            contaminated += 1
            max_overlap = max(max_overlap, hits / len(g))
    return {
        "n": n,
        "examples": len(eval_texts),
        "contaminated": contaminated,
        "rate": contaminated / len(eval_texts) if eval_texts else 0.0,
        "max_overlap": max_overlap,
    }


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


def ngram_overlap(train_texts: list[str], eval_texts: list[str], n: int = 8) -> dict:
    """Word n-gram overlap of ``eval_texts`` with ``train_texts``.

    Returns ``{"n", "examples", "contaminated", "rate", "max_overlap"}``: the number of eval
    texts, how many share at least one gram with any train text, that count over
    ``examples`` (0.0 for no eval texts), and the largest fraction of one eval text's distinct
    grams found among the train grams (0.0 when nothing overlaps). Grams are counted as sets:
    a gram repeated within a text counts once.
    """
    _check_n(n)
    return _overlap(_train_grams(train_texts, n), list(eval_texts), n)


def contamination_table(
    train_texts: list[str], splits: dict[str, list[str]], n: int = 8
) -> list[dict]:
    """One ``ngram_overlap`` row per eval split, with ``"split"`` (its name) first, in the
    order of ``splits``. The train grams are built once."""
    _check_n(n)
    train = _train_grams(train_texts, n)
    return [{"split": name, **_overlap(train, list(texts), n)} for name, texts in splits.items()]
