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
(prompt and answer text alike): ``seen_texts`` collects them from a task's splits, each
example as ``example_text`` (question, answer, rationale, program).

Template: a task's examples share fixed text ("Your code should pass this test: assert",
"... and then add 74. What is the final number?"), and 8-grams of that text with one
varying word in them are shared by most eval examples without any example having been
seen. With ``template_share``, the words present in at least that share of the train texts
(and in at least ``MIN_TEMPLATE_COUNT`` of them) are the task's template, and of an eval
text only the grams richest in varying content (numbers, names, the specific words of a
problem: at least half of the gram, or as much as the text has) are looked up among the
train grams (``content_grams``). The words stay in place, so a gram still tells
"4 * 5 - 13" from "4 * 5 - 7".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from lab.core.example import TRAIN_SPLITS, Example

__all__ = ["contamination_table", "ngram_overlap", "seen_texts", "example_text"]

TEMPLATE_SHARE = 0.05  # the report's: a word in >= 5% of the seen texts is template
MIN_TEMPLATE_COUNT = 3  # ... and in at least 3 of them (a small pool has no template)
MOSTLY_SEEN = 0.7  # an example with >= 70% of its grams seen (PaLM's "dirty" rule)

_NOT_WORD = re.compile(r"[^\w\s]|_")

Gram = tuple[str, ...]


def words(text: str) -> list[str]:
    """The normalised word sequence of ``text`` (see the module docstring)."""
    return _NOT_WORD.sub(" ", text.lower()).split()


def example_text(ex: Example) -> str:
    """Everything of an example a model can see: question, answer, rationale, program."""
    return "\n".join(t for t in (ex.question, ex.answer, ex.rationale, ex.program) if t)


def seen_texts(splits: dict[str, list[Example]]) -> list[str]:
    """The texts of every example a model of the study may have seen: the train pool (FT
    data and pool demos), the ID dev split (model selection) and the fixed demo sets."""
    names = [s for s in splits if s in TRAIN_SPLITS or s.startswith("demos_")]
    return [example_text(ex) for s in names for ex in splits[s]]


def template_words(texts: list[str], share: float) -> set[str]:
    """The words present in at least ``share`` of ``texts`` (and in at least
    ``MIN_TEMPLATE_COUNT``): the fixed text of the task."""
    df: Counter[str] = Counter()
    for text in texts:
        df.update(set(words(text)))
    need = max(MIN_TEMPLATE_COUNT, share * len(texts))
    return {w for w, c in df.items() if c >= need}


def _iter_grams(w: list[str], n: int) -> Iterable[Gram]:
    if len(w) < n:
        return [tuple(w)] if w else []
    return zip(*(w[i:] for i in range(n)), strict=False)


def grams(text: str, n: int = 8) -> set[Gram]:
    """The set of word n-grams of ``text``; a text of fewer than ``n`` words is one gram."""
    return set(_iter_grams(words(text), n))


def content_grams(text: str, n: int = 8, template: frozenset[str] = frozenset()) -> set[Gram]:
    """The grams of an eval text that are checked: all of them without a template; with one,
    those with the most varying (non-template) words, up to half of ``n`` of them. So a gram
    of template text around one number does not count, while a text whose varying words
    are few (a template and three numbers) is still found when copied; a text with no
    varying word has none."""
    out = grams(text, n)
    if not template:
        return out
    score = {g: sum(w not in template for w in g) for g in out}
    need = min((n + 1) // 2, max(score.values(), default=0))
    return {g for g, c in score.items() if c >= need} if need else set()


def _train_grams(train_texts: Iterable[str], n: int) -> set[Gram]:
    out: set[Gram] = set()
    for text in train_texts:
        out.update(_iter_grams(words(text), n))
    return out


def _overlap(train: set[Gram], eval_texts: list[str], n: int, template: frozenset[str]) -> dict:
    contaminated = mostly = 0
    max_overlap = 0.0
    for text in eval_texts:
        g = content_grams(text, n, template)
        if not g:
            continue
        hits = len(g & train)
        if hits:
            contaminated += 1
            max_overlap = max(max_overlap, hits / len(g))
            mostly += hits / len(g) >= MOSTLY_SEEN
    return {
        "n": n,
        "examples": len(eval_texts),
        "contaminated": contaminated,
        "rate": contaminated / len(eval_texts) if eval_texts else 0.0,
        "max_overlap": max_overlap,
        "mostly_seen": mostly,
    }


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


def ngram_overlap(
    train_texts: list[str], eval_texts: list[str], n: int = 8, template_share: float | None = None
) -> dict:
    """Word n-gram overlap of ``eval_texts`` with ``train_texts``.

    Returns ``{"n", "examples", "contaminated", "rate", "max_overlap", "mostly_seen"}``: the
    number of eval texts, how many share at least one gram with any train text, that count
    over ``examples`` (0.0 for no eval texts), the largest fraction of one eval text's
    distinct grams found among the train grams (0.0 when nothing overlaps), and how many eval
    texts have at least ``MOSTLY_SEEN`` of their grams among them. Grams are counted as sets:
    a gram repeated within a text counts once. With ``template_share``, over the varying
    content only (see the module docstring).
    """
    row = contamination_table(train_texts, {"": list(eval_texts)}, n, template_share)[0]
    del row["split"]
    return row


def contamination_table(
    train_texts: list[str],
    splits: dict[str, list[str]],
    n: int = 8,
    template_share: float | None = None,
) -> list[dict]:
    """One ``ngram_overlap`` row per eval split, with ``"split"`` (its name) first, in the
    order of ``splits``. The train grams are built once. With ``template_share``, each row
    also says how many words were the template (``template_words``)."""
    _check_n(n)
    template: frozenset[str] = frozenset()
    if template_share is not None:
        template = frozenset(template_words(train_texts, template_share))
    train = _train_grams(train_texts, n)
    extra = {"template_words": len(template)} if template_share is not None else {}
    return [
        {"split": name, **_overlap(train, list(texts), n, template), **extra}
        for name, texts in splits.items()
    ]
