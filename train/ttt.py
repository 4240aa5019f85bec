"""Test-time training (`method: ttt`; Akyurek et al. 2024): a temporary LoRA adapter trained
on leave-one-out tasks built from the k demos a prompt will hold, then merged into a copy of
the base model that answers with the same k demos in its prompt and is then discarded.

A leave-one-out task holds one demo out as the target and the other k - 1, in a seeded
order, as its context: `bos + demos_prefix(context) + prompt(target)`, loss on the target's
answer (+ EOS) only, the layout of an evaluation prompt. Each demo is the target of
`ttt.permutations` tasks, each with its own order of the others. The loop is small and
dedicated (AdamW over the adapter, fixed steps, no checkpoints or resume: the adapter lives
for one evaluation split, or one query with `ttt.per_query`), and runs on a deep copy of
the base model in fp32: the base model's weights are never touched (`weights_checksum`
before and after says so), and the adapter is merged into the copy in fp32 before the copy
is cast to the evaluation's precision.

What differs from the paper at this scale: no geometric augmentations (ARC's rotations,
flips, colour permutations) and no leave-two-out tasks, no voting over augmented
inferences; loss on the held-out demo's answer only (not on every demo output); a few
steps at a small rank (`ttt:` in the arm).
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Sequence
from typing import Any

import torch

from lab.core.compute import flop_counter
from lab.core.example import Example
from lab.core.prompts import bos_prefix
from lab.core.recipe import TttCfg
from train.data import IGNORE, Encoder, collate, epoch_order
from train.loss import SupervisedLoss
from train.optim import lora_model

Task = tuple[tuple[Example, ...], Example]  # (context demos in order, held-out target)


def loo_tasks(demos: Sequence[Example], permutations: int, seed: int | str) -> list[Task]:
    """Leave-one-out tasks: every demo the target of `permutations` tasks whose context is
    the other demos in a seeded order (deterministic in `seed`); never a demo in its own
    context."""
    rng = random.Random(f"ttt-{seed}")
    tasks: list[Task] = []
    for i, held in enumerate(demos):
        others = [d for j, d in enumerate(demos) if j != i]
        for _ in range(permutations):
            order = others[:]
            rng.shuffle(order)
            tasks.append((tuple(order), held))
    return tasks


def weights_checksum(model: Any) -> str:
    """sha256 over every parameter and buffer (name, dtype, bytes): equal before and after
    test-time training when the base model was left untouched."""
    h = hashlib.sha256()
    for name, t in sorted([*model.named_parameters(), *model.named_buffers()]):
        x = t.detach().cpu().contiguous()
        h.update(name.encode() + str(x.dtype).encode())
        h.update(x.view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.hexdigest()


def train_adapter(
    model: Any,
    tokenizer: Any,
    demos: Sequence[Example],
    fmt: str,
    cfg: TttCfg,
    seed: int | str,
    style: str = "plain",
    turns: str = "single_turn",
) -> tuple[Any, dict[str, Any]]:
    """(a copy of `model` with a freshly trained test-time adapter merged in, its record:
    tasks, steps, tokens, training FLOPs, losses). `model` itself is not modified."""
    if not demos:
        raise ValueError("test-time training needs at least one demo")
    dtype = next(model.parameters()).dtype
    work = copy.deepcopy(model).float()
    work.train()
    seed_int = int(hashlib.sha256(str(seed).encode()).hexdigest()[:8], 16)
    torch.manual_seed(seed_int)  # the adapter's initialisation
    peft_model = lora_model(work, cfg.lora)
    loss_fn = SupervisedLoss(peft_model)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    bos = bos_prefix(tokenizer)
    loo = loo_tasks(demos, cfg.permutations, seed)
    # Each task: bos + its context demos + the target's prompt + its answer + eos, loss on the
    # answer and eos; context and prompt tokenised together, as an evaluation prompt with
    # demos is, in the study's prompt style (train/data.py).
    encode = Encoder(fmt, tokenizer, bos, style, turns or "single_turn")
    tasks = [encode(held, context) for context, held in loo]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = epoch_order(len(tasks), cfg.steps * cfg.batch_size, seed_int)
    tokens = head = 0
    losses: list[float] = []
    for step in range(cfg.steps):
        batch = collate([tasks[i] for i in order[step * cfg.batch_size :][: cfg.batch_size]], pad)
        tokens += int(batch["attention_mask"].sum())
        head += int((batch["labels"][:, 1:] != IGNORE).sum())
        loss = loss_fn(**batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    flops = flop_counter(peft_model, "lora").train(tokens, head)
    merged = peft_model.merge_and_unload().to(dtype)  # merged in fp32, then cast
    merged.eval()
    record = {
        "tasks": len(tasks),
        "steps": cfg.steps,
        "tokens": tokens,
        "flops": flops,
        "losses": losses,
    }
    return merged, record
