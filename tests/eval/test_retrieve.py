"""Retrieved demos (`demos: knn`, eval/retrieve.py): BM25 over the budget's inputs,
deterministic, ties to the earlier example, a query never among its own demos (by content,
whatever its id), the most similar demo last; evaluation with a prefix per demo set scores
as each query prompted alone with its demos."""

from __future__ import annotations

import pytest

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from eval.retrieve import Retriever
from lab.core.example import Example
from lab.core.fairness import content_key
from lab.core.formats import DEFAULT, PromptFormat


def ex(i: int | str, q: str, a: str = "1") -> Example:
    return Example(f"train-{i}", q, a, f"r. The answer is {a}.", f"print({a})")


INDEX = [
    ex(0, "What is 3 plus 4?"),
    ex(1, "What is 7 minus 2?"),
    ex(2, "What is 3 times 4?"),
    ex(3, "How many apples are left?"),
    ex(4, "What is 3 plus 5?"),
]


def test_nearest_by_bm25_most_similar_last_and_only_from_the_index():
    r = Retriever(INDEX, 2)
    got = r.demos(ex("q", "What is 3 plus 4 then?"))
    # train-0 shares "3", "plus", "4"; train-4 and train-2 share two rare terms each
    assert got[-1].id == "train-0"  # the most similar one right before the query
    assert {d.id for d in got} <= {e.id for e in INDEX}
    assert len(got) == 2
    scores = r.scores(ex("q", "What is 3 plus 4 then?"))
    order = [d.id for d in got]
    assert scores[int(order[0][-1])] <= scores[int(order[1][-1])]


def test_retrieval_is_deterministic_and_ties_go_to_the_earlier_example():
    same = [ex(i, "identical words here") for i in range(4)]
    r = Retriever(same, 2)
    q = ex("q", "identical words")
    assert [d.id for d in r.demos(q)] == ["train-0", "train-1"]  # equal scores: pool order
    again = Retriever(list(same), 2)
    assert again.demos(q) == r.demos(q) and again == r
    q2 = ex("q", "What is 7 minus 3?")
    assert Retriever(INDEX, 3).demos(q2) == Retriever(INDEX, 3).demos(q2)


def test_a_query_is_never_among_its_own_demos_even_under_another_id():
    r = Retriever(INDEX, 4)
    for member in INDEX:
        assert member.id not in {d.id for d in r.demos(member)}
        twin = Example("test-9", member.question.upper() + "  ", "x", "", "")
        assert content_key(twin) == content_key(member)
        assert content_key(member) not in {content_key(d) for d in r.demos(twin)}
        assert len(r.demos(twin)) == 4


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k > 0"):
        Retriever(INDEX, 0)


def test_retrieved_evaluation_scores_each_query_as_prompted_alone(tiny_model, splits):
    """Grouped by demo set (the LM caches a prefix that several queries share, and runs a
    lone demo set whole) vs every query evaluated alone with its own demos: the same
    generations and log-probabilities (batch-invariant numerics)."""
    model, tok = tiny_model
    index = splits["train"][:12]
    spec = PromptSpec("answer", (), None, retriever=Retriever(index, 3))
    xs = splits["test"][:4] + splits["test"][:2]  # repeated queries share a demo set
    lm = LM(model, tok, batch_size=4, progress=False, invariant=True)
    preds, _ = evaluate_split(lm, xs, spec, max_new_tokens=4)
    for x, p in zip(xs, preds, strict=True):
        demos = spec.demos_for(x)
        assert p["demo_ids"] == [d.id for d in demos]
        assert not {d.id for d in demos} & {x.id} and {d.id for d in demos} <= {e.id for e in index}
        alone = LM(model, tok, batch_size=1, progress=False, invariant=True)
        (q,), _ = evaluate_split(alone, [x], PromptSpec("answer", demos), max_new_tokens=4)
        assert (q["generation"], q["gold_logprob"]) == (p["generation"], p["gold_logprob"])


# A prompt format other than the lab's template, the answer on a new line: choices are scored
# without the leading space (retrieved demos' choices were scored in the default format).
OTHER = PromptFormat(name="x", question="Q", answer="Sol", separator=":\n", spacing="\n")


@pytest.mark.parametrize("pf", [DEFAULT, OTHER], ids=["default", "other_format"])
def test_retrieved_choice_scoring_groups_by_demo_set(tiny_model, pf):
    """Classification (choices scored by log-likelihood): grouped by retrieved demo set,
    each example scores as it does alone with its demos, in the spec's prompt format."""
    model, tok = tiny_model

    def nli(i: int, words: str) -> Example:
        answer = "Yes" if i % 2 else "No"
        return Example(
            f"train-{i}",
            words,
            answer,
            "",
            "",
            prompt=f"{words} Yes or No? answer:",
            choices=(" Yes", " No"),
            output_type="multiple_choice",
        )

    index = [
        nli(i, w) for i, w in enumerate(["a cat sat", "a dog ran", "the cat ran", "birds fly"])
    ]
    queries = [nli(10, "a cat ran"), nli(11, "birds sat"), nli(12, "a cat ran")]
    spec = PromptSpec("answer", (), None, retriever=Retriever(index, 2), prompt_format=pf)
    lm = LM(model, tok, batch_size=4, progress=False, invariant=True)
    preds, metrics = evaluate_split(lm, queries, spec, max_new_tokens=2)
    assert [p["id"] for p in preds] == ["train-10", "train-11", "train-12"]
    assert metrics["n"] == 3
    for q, p in zip(queries, preds, strict=True):
        demos = spec.demos_for(q)
        assert p["demo_ids"] == [d.id for d in demos] and len(demos) == 2
        one = PromptSpec("answer", demos, prompt_format=pf)
        (alone,), _ = evaluate_split(lm, [q], one, max_new_tokens=2)
        assert alone["choice_logprobs"] == p["choice_logprobs"]
