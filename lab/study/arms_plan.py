"""Planning the arms between prompting and fine-tuning (issue 25): retrieved demos
(`demos: knn`) and in-context fine-tuning (`train_k`). lab/study/plan.py calls these; the
budget rule is the same as for every arm: at budget b the arm uses the same b examples.

- `demos: knn`: the cell's retrieval index is its whole budget (the data seed's first b
  examples; no budget axis: the pool); each query gets its k nearest (eval/retrieve.py). k is
  cut, as a k-shot arm's demos are, to the largest number for which the k longest examples
  of the index fit the context beside the longest eval prompt (recorded: k vs
  k_requested). Its rows count the index (b), like the b-shot arm's: every example of the
  budget may be shown, and its input was read to rank it.
- `train_k: K`: trained on K-demo inputs (train/icft_data.py), evaluated with the budget's
  first K examples as demos (the same prefix of the data order the k-shot arms draw from;
  inside the training set, so the count stays b). The context checks are lab/study/context.py's
  (`ContextFit.check_in_context`), before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from eval.evaluate import PromptSpec
from eval.retrieve import Retriever
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.fairness import held_out_size
from lab.core.recipe import ArmCfg, TrainCfg

# the largest k (<= requested) whose k longest index examples fit (ContextFit.fit_retrieved)
FitRetrieved = Callable[[list[Example], int, ArmCfg], int]


def knn_spec(
    arm: ArmCfg, budget: object, index: list[Example], fit: FitRetrieved | None = None
) -> PromptSpec:
    """The prompt of a `demos: knn` cell: its retriever over the index (the budget), k cut
    to what fits the context."""
    assert isinstance(arm.k, int)
    k = min(arm.k, len(index))
    if fit is not None and k:
        k = fit(index, k, arm)
    if k == 0:
        raise LabError(
            f"arm '{arm.name}': budget {budget} leaves no example to retrieve; raise the budget"
        )
    return PromptSpec(arm.format, (), arm.trigger, Retriever(index, k))


def knn_describe(
    spec: PromptSpec, k_requested: int, index: tuple[Example, ...]
) -> dict[str, object]:
    """A knn cell's rows: k per query (after the context cut), the index it retrieves from."""
    assert spec.retriever is not None
    return {
        "k": spec.retriever.k,
        "k_requested": k_requested,
        "demos_truncated": spec.retriever.k < k_requested,
        "demos": "knn",
        "demos_fixed": False,
        "retrieval": "bm25",
        "index_size": len(index),
    }


def check_train_k(arm: ArmCfg, cfg: TrainCfg, sizes: Iterable[int]) -> None:
    """In-context FT needs train_k demos besides every target inside each training set."""
    for n in sorted(set(sizes)):
        n_train = n - held_out_size(n, cfg)
        if n_train < arm.train_k + 1:
            raise LabError(
                f"arm '{arm.name}': train_k={arm.train_k} needs at least {arm.train_k + 1} "
                f"training examples (the demos besides each target) but a budget of {n} "
                f"trains on {n_train}; lower train_k or raise the budgets"
            )
