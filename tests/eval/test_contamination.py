"""The n-gram contamination check (eval/contamination.py) on hand-made cases."""

from __future__ import annotations

import random

import pytest

from eval.contamination import (
    contamination_table,
    example_text,
    grams,
    ngram_overlap,
    seen_texts,
    template_words,
    words,
)
from lab.core.example import Example

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
    assert r == {
        "n": 8,
        "examples": 2,
        "contaminated": 1,
        "rate": 0.5,
        "max_overlap": 1.0,
        "mostly_seen": 1,
    }


def test_case_and_punctuation_do_not_hide_a_copy():
    shouted = COPY.upper().replace(",", " ;").replace("?", "!!")
    assert ngram_overlap(TRAIN, [shouted])["contaminated"] == 1


def test_partial_overlap_fraction():
    # 10 words: 3 8-grams, the first 2 in train.
    text = "natalia sold clips to 48 of her friends in zzz"
    r = ngram_overlap(TRAIN, [text])
    assert r["contaminated"] == 1 and r["mostly_seen"] == 0  # 2 of 3 grams: < 70%
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
        "mostly_seen": 0,
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


# -- the varying content: a task's fixed template is not contamination -----------------------

TEMPLATE = "Start with {a}. Add {b}, then subtract {c}. What is the final number you get?"


def _pool(n: int = 200, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [
        TEMPLATE.format(a=rng.randint(1, 99), b=rng.randint(1, 99), c=rng.randint(1, 99))
        for _ in range(n)
    ]


def test_shared_template_is_not_contamination_but_a_copy_is():
    pool = _pool()
    fresh = TEMPLATE.format(a=123, b=456, c=789)  # new numbers, the same template
    copy = pool[7]
    # the old check: one 8-gram of template text and a number, "then subtract 9 what is the
    # final number", makes a problem never seen "contaminated"
    c = words(pool[0])[7]
    shares = TEMPLATE.format(a=123, b=456, c=c)
    assert ngram_overlap(pool, [shares])["contaminated"] == 1
    assert ngram_overlap(pool, [shares], template_share=0.05)["contaminated"] == 0
    r = ngram_overlap(pool, [fresh, copy], template_share=0.05)
    assert (r["contaminated"], r["max_overlap"]) == (1, 1.0)  # the copy only
    rows = contamination_table(pool, {"test": [fresh, copy]}, template_share=0.05)
    assert rows[0]["template_words"] == len(template_words(pool, 0.05)) > 0
    assert {"start", "add", "subtract", "final", "number"} <= template_words(pool, 0.05)


def test_template_needs_a_share_and_a_minimum_count():
    texts = ["alpha beta", "alpha gamma", "delta epsilon"]
    assert template_words(texts, 0.5) == set()  # 'alpha' in 2 texts: fewer than 3
    assert template_words([*texts, "alpha"], 0.5) == {"alpha"}
    assert template_words(texts * 40, 0.5) == {"alpha"}  # 80 of 120 texts


def _ex(i: str, q: str, a: str = "1", rationale: str = "", program: str = "") -> Example:
    return Example(id=i, question=q, answer=a, rationale=rationale, program=program)


def test_seen_texts_are_everything_a_model_saw():
    splits = {
        "train": [_ex("t0", "train question one", rationale="a b c. The answer is 1.")],
        "dev": [_ex("d0", "dev question")],
        "demos_wei": [_ex("w0", "fixed demo", program="print(42)")],
        "test": [_ex("x0", "held out")],
        "ood_x": [_ex("o0", "held out too")],
    }
    seen = seen_texts(splits)
    assert seen == [example_text(splits[s][0]) for s in ("train", "dev", "demos_wei")]
    assert "a b c. The answer is 1." in seen[0] and "print(42)" in seen[2]
    assert example_text(_ex("e", "q?", "7", "r", "p")) == "q?\n7\nr\np"


def test_a_copied_dev_example_or_demo_program_is_contamination():
    long_program = "def solve(values):\n    total = sum(v * v for v in values)\n    return total"
    splits = {
        "train": [_ex(f"t{i}", f"question number {i} about apples") for i in range(20)],
        "dev": [_ex("d0", "How many pears does Maria keep after giving seven to Ann today?")],
        "demos_x": [_ex("w0", "sum of squares", program=long_program)],
    }
    evals = {
        "copy_of_dev": [example_text(splits["dev"][0])],
        "copy_of_demo_program": [f"write it\n{long_program}"],
    }
    rows = contamination_table(seen_texts(splits), evals, template_share=0.05)
    assert [r["contaminated"] for r in rows] == [1, 1]
    train_only = [example_text(e) for e in splits["train"]]  # the old check's pool
    assert [r["contaminated"] for r in contamination_table(train_only, evals)] == [0, 0]
