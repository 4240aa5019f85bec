"""In-context fine-tuning inputs (`train_k`, Bornschein et al. 2025 "fine-tuned in-context
learners"; MetaICL's k+1-example instances restricted to the budget): each training input is
shaped like the k-shot prompt the arm is evaluated with,

    bos + demo_1 ... demo_k (solved, the k-shot template) + prompt(target) | target + eos

with loss on the target's tokens (and eos) only. The demos of every draw (one draw = one
position of the seeded epoch order) are drawn anew from the training set minus the target
itself (by index and by content: an example never demonstrates its own answer), in a seeded
random order: deterministic from the training seed and the draw's position, so a resumed or
multi-process run sees the same inputs. The prefix and the prompt are tokenised together, as
the evaluator tokenises `demos + prompt`
(train/data.py `Encoder`, in the study's prompt style).

What differs from the papers at this scale: no prequential hyperparameter selection (the
recipe fixes them, or `train.select: best_dev` picks a checkpoint inside the budget); loss
on the last answer only, not on every answer of a packed many-shot context (He et al.'s
ManyICFT); k fixed per arm, not packed to the context limit.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lab.core.example import Example
from lab.core.fairness import content_key
from train.data import Encoder


def draw_demos(keys: Sequence[str], target_index: int, k: int, rng: random.Random) -> list[int]:
    """Indices of k demos for the target `target_index` of examples with content keys
    `keys`: a seeded sample of the others (neither the target nor one with the target's
    input), in sampled order."""
    own = keys[target_index]
    others = [i for i, key in enumerate(keys) if i != target_index and key != own]
    if len(others) < k:
        raise ValueError(
            f"in-context fine-tuning needs {k} demos besides each target but the training set "
            f"has {len(others)} other examples; lower train_k or raise the budget"
        )
    return rng.sample(others, k)


def training_inputs(
    examples: Sequence[Example],
    order: Sequence[int],
    encode: Encoder,
    k: int = 0,
    seed: int = 0,
) -> list[dict[str, list[int]]]:
    """One encoded input per draw of `order` (indices into `examples`): the example alone
    (k = 0: plain fine-tuning, each example encoded once) or with k demos drawn for this
    draw (`draw_demos`, seeded by the seed and the draw's position)."""
    if k == 0:
        encoded = [encode(ex) for ex in examples]
        return [encoded[i] for i in order]
    keys = [content_key(ex) for ex in examples]
    return [
        encode(examples[i], _demos(examples, keys, i, k, f"icft-{seed}-{j}"))
        for j, i in enumerate(order)
    ]


def held_out_inputs(
    held_out: Sequence[Example],
    train: Sequence[Example],
    encode: Encoder,
    k: int = 0,
    seed: int = 0,
) -> list[dict[str, list[int]]]:
    """The checkpoint-selection examples encoded as the arm is evaluated: alone (k = 0) or
    after k demos from the training set (seeded per held-out example; never itself)."""
    if k == 0:
        return [encode(ex) for ex in held_out]
    keys = [content_key(ex) for ex in train]
    return [
        encode(
            ex,
            _demos([*train, ex], [*keys, content_key(ex)], len(train), k, f"icft-dev-{seed}-{j}"),
        )
        for j, ex in enumerate(held_out)
    ]


def _demos(
    pool: Sequence[Example], keys: Sequence[str], target: int, k: int, draw: str
) -> list[Example]:
    """The k demos of `pool[target]` for the draw named `draw` (its seed)."""
    return [pool[d] for d in draw_demos(keys, target, k, random.Random(draw))]
