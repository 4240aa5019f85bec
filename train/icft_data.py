"""In-context fine-tuning inputs (`train_k`, Bornschein et al. 2025 "fine-tuned in-context
learners"; MetaICL's k+1-example instances restricted to the budget): each training input is
shaped like the k-shot prompt the arm is evaluated with,

    bos + demo_1 ... demo_k (solved, the k-shot template) + prompt(target) | target + eos

with loss on the target's tokens (and eos) only. The demos of every draw (one draw = one
position of the seeded epoch order) are drawn anew from the training set minus the target
itself (by index and by content: an example never demonstrates its own answer), in a seeded
random order: deterministic from the training seed and the draw's position, so a resumed or
multi-process run sees the same inputs. The prefix and the prompt are tokenised together, as
the evaluator tokenises `demos + prompt`.

What differs from the papers at this scale: no prequential hyperparameter selection (the
recipe fixes them, or `train.select: best_dev` picks a checkpoint inside the budget); loss
on the last answer only, not on every answer of a packed many-shot context (He et al.'s
ManyICFT); k fixed per arm, not packed to the context limit.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from lab.core.example import Example
from lab.core.fairness import content_key
from lab.core.prompts import demos_prefix, prompt, target
from train.data import IGNORE, encode_example


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


def encode_in_context(
    demos: Sequence[Example], ex: Example, fmt: str, tokenizer: Any, bos: list[int]
) -> dict[str, list[int]]:
    """bos + (demos + prompt) | target + eos; labels mask everything but target + eos."""
    text = demos_prefix(demos, fmt) + prompt(ex)
    p = bos + tokenizer(text, add_special_tokens=False).input_ids
    t = tokenizer(target(ex, fmt), add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return {"input_ids": p + t, "labels": [IGNORE] * len(p) + t}


def training_inputs(
    examples: Sequence[Example],
    order: Sequence[int],
    fmt: str,
    tokenizer: Any,
    bos: list[int],
    k: int = 0,
    seed: int = 0,
) -> list[dict[str, list[int]]]:
    """One encoded input per draw of `order` (indices into `examples`): the example alone
    (k = 0: plain fine-tuning, each example encoded once) or with k demos drawn for this
    draw (`draw_demos`, seeded by the seed and the draw's position)."""
    if k == 0:
        encoded = [encode_example(ex, fmt, tokenizer, bos) for ex in examples]
        return [encoded[i] for i in order]
    keys, out = [content_key(ex) for ex in examples], []
    for j, i in enumerate(order):
        rng = random.Random(f"icft-{seed}-{j}")
        demos = [examples[d] for d in draw_demos(keys, i, k, rng)]
        out.append(encode_in_context(demos, examples[i], fmt, tokenizer, bos))
    return out


def held_out_inputs(
    held_out: Sequence[Example],
    train: Sequence[Example],
    fmt: str,
    tokenizer: Any,
    bos: list[int],
    k: int = 0,
    seed: int = 0,
) -> list[dict[str, list[int]]]:
    """The checkpoint-selection examples encoded as the arm is evaluated: alone (k = 0) or
    after k demos from the training set (seeded per held-out example; never itself)."""
    if k == 0:
        return [encode_example(ex, fmt, tokenizer, bos) for ex in held_out]
    keys, out = [content_key(ex) for ex in train], []
    for j, ex in enumerate(held_out):
        rng = random.Random(f"icft-dev-{seed}-{j}")
        demos = [train[d] for d in draw_demos([*keys, content_key(ex)], len(train), k, rng)]
        out.append(encode_in_context(demos, ex, fmt, tokenizer, bos))
    return out
