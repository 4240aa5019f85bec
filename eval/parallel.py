"""Data-parallel evaluation under `accelerate launch`: examples sharded across processes,
results gathered back in the original order.

Every process holds the whole model and evaluates every `world`-th example (strided, so the
length-sorted batches of all processes are about equally long). Per-example results do not
depend on what an example is batched with (eval/lm.py), so the gathered predictions are the
ones a single process produces: generations and extracted answers identical, log-probs equal
up to float reassociation (~1e-6). With one process this is `evaluate_split` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eval.evaluate import PromptSpec, evaluate_split, summarize
from eval.lm import LM
from lab.core.example import Example


def _state() -> Any:
    """accelerate's process state (the Accelerator's, once one exists). On CPU processes
    started by torchrun, ACCELERATE_USE_CPU=true makes it MULTI_CPU (gloo), as in Accelerator."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def shard(n: int, rank: int, world: int) -> list[int]:
    """The indices of `range(n)` that process `rank` of `world` evaluates."""
    return list(range(rank, n, world))


def gather_in_order(pairs: list[tuple[int, Any]]) -> list[Any]:
    """Every process's (index, result) pairs -> all results ordered by index, on every process."""
    state = _state()
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        pairs = gather_object(pairs)
    return [r for _, r in sorted(pairs, key=lambda p: p[0])]


def sum_across(x: float) -> float:
    """The sum of `x` over all processes (e.g. tokens each process ran)."""
    state = _state()
    if state.num_processes == 1:
        return x
    from accelerate.utils import gather_object

    return sum(gather_object([x]))


def map_sharded(fn: Callable[[list[Any]], list[Any]], items: Sequence[Any]) -> list[Any]:
    """`fn(items)` with the items sharded across the processes of `accelerate launch`: each
    process runs `fn` on its strided share; every process gets all results in item order.
    `fn` must give one result per item, independent of what else it is given."""
    state = _state()
    if state.num_processes == 1:
        return fn(list(items))
    idx = shard(len(items), state.process_index, state.num_processes)
    mine = fn([items[i] for i in idx]) if idx else []
    return gather_in_order(list(zip(idx, mine, strict=True)))


def evaluate_split_parallel(
    lm: LM,
    examples: Sequence[Example],
    spec: PromptSpec,
    max_new_tokens: int,
    code_timeout_s: float = 5.0,
    desc: str = "eval",
    gold_logprob: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """`evaluate_split`, with the examples sharded across the processes of `accelerate
    launch`; every process gets all predictions (in the original order) and the metrics."""
    state = _state()
    if state.num_processes == 1:
        return evaluate_split(
            lm, examples, spec, max_new_tokens, code_timeout_s, desc, gold_logprob
        )
    idx = shard(len(examples), state.process_index, state.num_processes)
    mine: list[dict[str, Any]] = []
    if idx:
        mine, _ = evaluate_split(
            lm,
            [examples[i] for i in idx],
            spec,
            max_new_tokens,
            code_timeout_s,
            f"{desc} [{state.process_index}]",
            gold_logprob,
        )
    preds = gather_in_order(list(zip(idx, mine, strict=True)))
    return preds, summarize(preds)
