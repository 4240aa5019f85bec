"""The n-gram contamination check (eval/contamination.py) on hand-made cases."""

from __future__ import annotations

import random

import pytest

from eval.contamination import contamination_table, grams, ngram_overlap, words

TRAIN = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
]
COPY = TRAIN[0]
PARAPHRASE = (
    "In April Natalia sold clips to 48 friends; in May she sold half that many. "
    "What is the total number of clips she sold over both months?"
)


def test_normalisation():
    assert words("Don't STOP, 1,234 clips_here!") == [
        "don",
        "t",
        "stop",
        "1",
        "234",
        "clips",
        "here",
    ]
    assert grams("a b c d", n=2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert grams("a b a b a", n=2) == {("a", "b"), ("b", "a")}
    assert grams("a b", n=8) == {("a", "b")}
    assert grams(" ...! ", n=8) == set()


def test_copy_is_contaminated_and_paraphrase_is_not():
    r = ngram_overlap(TRAIN, [COPY, PARAPHRASE])
    assert r == {"n": 8, "examples": 2, "contaminated": 1, "rate": 0.5, "max_overlap": 1.0}


def test_case_and_punctuation_do_not_hide_a_copy():
    shouted = COPY.upper().replace(",", " ;").replace("?", "!!")
    assert ngram_overlap(TRAIN, [shouted])["contaminated"] == 1


def test_partial_overlap_fraction():
    # 10 words: 3 8-grams, the first 2 in train.
    text = "natalia sold clips to 48 of her friends in zzz"
    r = ngram_overlap(TRAIN, [text])
    assert r["contaminated"] == 1
    assert r["max_overlap"] == pytest.approx(2 / 3)


def test_smaller_n_finds_shorter_overlaps():
    assert ngram_overlap(TRAIN, [PARAPHRASE], n=8)["contaminated"] == 0
    assert ngram_overlap(TRAIN, [PARAPHRASE], n=3)["contaminated"] == 1


def test_short_texts_are_one_gram():
    train = ["The answer is 5.", "a much longer training text that goes on for many words here"]
    evals = [
        "the answer is 5",  # identical word sequence to a short train text
        "answer is 5",  # shorter: a different whole sequence
        "much longer training",  # inside a long train text, but short texts match whole only
        "",  # no words: never contaminated
    ]
    r = ngram_overlap(train, evals)
    assert r["examples"] == 4
    assert r["contaminated"] == 1
    assert r["rate"] == 0.25
    assert r["max_overlap"] == 1.0


def test_rate_arithmetic_and_empty():
    evals = [COPY, PARAPHRASE, "nothing in common at all with anything in the training set"] * 2
    r = ngram_overlap(TRAIN, evals + [COPY])
    assert (r["examples"], r["contaminated"]) == (7, 3)
    assert r["rate"] == pytest.approx(3 / 7)
    assert ngram_overlap(TRAIN, []) == {
        "n": 8,
        "examples": 0,
        "contaminated": 0,
        "rate": 0.0,
        "max_overlap": 0.0,
    }
    assert ngram_overlap([], [COPY])["contaminated"] == 0
    with pytest.raises(ValueError):
        ngram_overlap(TRAIN, [COPY], n=0)


def test_contamination_table():
    rows = contamination_table(TRAIN, {"test": [COPY, PARAPHRASE], "ood": [PARAPHRASE]}, n=8)
    assert [r["split"] for r in rows] == ["test", "ood"]
    assert rows[0] == {"split": "test", **ngram_overlap(TRAIN, [COPY, PARAPHRASE])}
    assert rows[1]["contaminated"] == 0 and rows[1]["rate"] == 0.0


def test_ten_thousand_train_texts_find_exactly_the_copies():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    train = [" ".join(rng.choices(vocab, k=45)) + "?" for _ in range(10_000)]  # GSM8K-sized
    evals = [" ".join(rng.choices(vocab, k=45)) for _ in range(500)] + train[:5]
    r = ngram_overlap(train, evals)
    assert r["contaminated"] == 5
