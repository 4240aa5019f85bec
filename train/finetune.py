"""The fine-tuning loop: plain accelerate, read top to bottom (after HF run_clm_no_trainer).

Works in one process and under `accelerate launch` (DDP, FSDP, DeepSpeed ZeRO-3; each
process gets its share of every global batch; train/sharded.py). LoRA via peft or full
fine-tuning; AdamW; warmup then decay; gradient accumulation; optional gradient
checkpointing; the loss — and the LM head — only on the supervised target tokens. At
`precision="bf16"` (lab/core/precision.py) the forward and backward run under bf16 autocast over
fp32 master weights and fp32 optimizer states (LoRA: a bf16 frozen base, an fp32 adapter).

With `resume_dir`, the full training state is checkpointed every `train.save_every` steps
(train/resume.py) and a rerun continues from the last checkpoint, ending with the same
weights and losses as an uninterrupted run; `out_dir/train_result.json` is written last
(atomically) and marks the training done, after which the resume state is deleted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

from lab.core.compute import baseline_mode, flop_counter, numel
from lab.core.example import Example
from lab.core.masks import takes_4d_mask
from lab.core.precision import autocast, check_launch, dtype
from lab.core.prompts import bos_prefix
from lab.core.recipe import TrainCfg
from train import zero3
from train.batching import collate_micro
from train.data import IGNORE, Encoder, collate, epoch_order
from train.icft_data import held_out_inputs, training_inputs
from train.loss import SupervisedLoss, held_out_loss
from train.optim import lora_model, param_groups
from train.resume import TrainCheckpointer, clear, write_result
from train.sharded import (
    PREFIX,
    from_main,
    full_state_dict,
    global_norm,
    incomplete,
    save,
    snapshot,
    sum_over_processes,
)


@dataclass
class TrainResult:
    checkpoint: str
    method: str
    steps: int
    examples_seen: int
    train_tokens: int  # all input tokens processed (prompt + target)
    target_tokens: int  # supervised tokens
    trainable_params: int
    total_params: int
    wall_s: float
    flops: float  # training FLOPs (+ dev-loss evaluations), counted as described in _flops
    losses: list[float] = field(default_factory=list)  # per optimizer step
    dev_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, ID-dev loss)
    best_step: int | None = None  # step with the lowest ID-dev loss
    best_checkpoint: str | None = None  # where that model is (== checkpoint when it is the last)
    processes: int = 1  # data-parallel processes that trained it
    loop_s: float = 0.0  # of wall_s, the training loop (no loading, saving): for throughput

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _n_target(example: dict[str, list[int]]) -> int:
    """Supervised tokens of an encoded example (labels shifted by one, as in the loss)."""
    return sum(1 for x in example["labels"][1:] if x != IGNORE)


def finetune(
    model_path: str,
    examples: list[Example],
    fmt: str,
    method: str,
    cfg: TrainCfg,
    seed: int,
    out_dir: str | Path,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    dev_examples: list[Example] | None = None,
    resume_dir: str | Path | None = None,
    log: Any = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
    precision: str = "fp32",
    style: str = "plain",
    turns: str = "single_turn",
    context_k: int = 0,
) -> TrainResult:
    """Train `model_path` on `examples` in format `fmt`; save the adapter or full weights.
    `style` (the recipe's prompt.style): plain text, or the tokenizer's chat template, with
    the end-of-turn token as the target's end (train/data.py; lab/core/chat.py).

    With `dev_examples`, the ID-dev loss is measured every `cfg.eval_every` steps and at the
    end; the lowest-loss model is saved to `out_dir/best` when it is not the last one.
    Nothing is ever selected on an evaluation split. With `resume_dir`, training state is
    checkpointed there every `cfg.save_every` steps and resumed from the latest checkpoint.

    `on_log` (e.g. the W&B run of the cell) is called on the main process after every
    optimizer step with `train/step`, `train/loss`, `train/lr`, `train/grad_norm` (before
    clipping) and `train/tokens_per_s` (input tokens of all processes), and after every
    ID-dev evaluation with `train/step` and `dev/loss`. Pass it on every process or on
    none: it adds one gather per step. `precision` is 'fp32' or 'bf16' (resolved:
    lab/core/precision.py). `context_k` > 0: in-context fine-tuning (train/icft_data.py)."""
    assert method in ("lora", "full"), method
    acc = accelerator or Accelerator(gradient_accumulation_steps=cfg.grad_accum)
    check_launch(acc.mixed_precision, precision)
    acc.free_memory()  # forget the models/optimizers of earlier cells (and reset acc.step)
    acc.gradient_accumulation_steps = cfg.grad_accum
    # The scheduler is stepped once per optimizer step, below; by default accelerate would
    # step it once per process per step (for scripts that scale the schedule by hand).
    acc.step_scheduler_with_optimizer = False
    set_seed(seed)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(model_path)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    # Full FT: fp32 master weights (autocast computes in bf16). LoRA: the frozen base at the
    # study's precision; peft keeps the adapter it adds in fp32.
    load_dtype = torch.float32 if method == "full" else dtype(precision)
    with zero3.training_load(acc):  # whole, unless ZeRO-3 partitions at load (train/zero3.py)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=load_dtype)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if method == "lora":
        model = lora_model(model, cfg.lora)
    trainable = sum(numel(p) for p in model.parameters() if p.requires_grad)
    total = sum(numel(p) for p in model.parameters())
    counter = flop_counter(model, method)

    bos = bos_prefix(tok)
    micro = cfg.micro_batch(acc.num_processes)
    order = epoch_order(len(examples), cfg.steps * cfg.batch_size, seed)
    # one input per draw (in-context FT draws its demos per draw: train/icft_data.py)
    # the prompt as it is evaluated + the target (train/data.py)
    encode = Encoder(fmt, tok, bos, style, turns)
    data = training_inputs(examples, order, encode, context_k, seed)
    # Supervised tokens of each optimizer step (all micro-batches, all processes): the loss
    # is the step's token-weighted mean whatever the process count or grad_accum, so 1 and N
    # processes compute the same gradient (up to float summation order).
    step_tokens = [
        sum(_n_target(d) for d in data[s * cfg.batch_size : (s + 1) * cfg.batch_size])
        for s in range(cfg.steps)
    ]
    pack = takes_4d_mask(model) and not baseline_mode()  # packed where padding > 10%
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=micro,
        shuffle=False,
        collate_fn=lambda b: collate_micro(b, pad_id, pack),
        # Its own generator: starting an iterator then draws no number from the global RNG
        # (which dropout uses), so a resumed run's RNG stream matches an uninterrupted one.
        generator=torch.Generator().manual_seed(seed),
    )

    # No list of the parameters outlives this call: under FSDP `prepare` replaces them with
    # shards, and a kept reference would keep every process's full unsharded copy alive.
    optim = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        fused=not baseline_mode(),  # one kernel over all tensors: ~4x faster steps on CPU
    )
    warmup = math.ceil(cfg.warmup_ratio * cfg.steps)
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
    sched = get_scheduler(
        name[cfg.schedule], optim, num_warmup_steps=warmup, num_training_steps=cfg.steps
    )
    dev = held_out_inputs(dev_examples or [], examples, encode, context_k, seed)
    dev_batches = [collate(dev[i : i + micro], pad_id) for i in range(0, len(dev), micro)]
    dev_tokens = sum(int(b["attention_mask"].sum()) for b in dev_batches)
    dev_head = sum(int((b["labels"] != IGNORE).sum()) for b in dev_batches)
    wrapped = SupervisedLoss(model, reduction="sum")
    # What a best-dev snapshot keeps: every weight (full FT) or the adapter's (LoRA).
    trained = None if method == "full" else {
        n.removeprefix(PREFIX) for n, p in wrapped.named_parameters() if p.requires_grad
    }  # fmt: skip
    zero3.configure(acc, cfg, micro, precision)  # DeepSpeed: this run's config, from the recipe
    wrapped, optim, loader, sched = acc.prepare(wrapped, optim, loader, sched)
    # Under FSDP the prepared module holds new (sharded) parameters: clip those, not `params`.
    prepared_params = list(wrapped.parameters())
    dev_losses: list[tuple[int, float]] = []
    # (loss, step, snapshot): the snapshot is gathered in full on the main process (None
    # on the others): under FSDP a process's own parameters are shards.
    best: tuple[float, int, dict[str, torch.Tensor] | None] | None = None
    flops = dev_flops = 0.0  # this process's training FLOPs; dev-loss FLOPs (every process)

    def check_dev(step: int) -> None:
        nonlocal best, dev_flops
        if not dev_batches:
            return
        with autocast(precision, acc.device.type):
            loss = held_out_loss(wrapped, dev_batches, acc.device)
        dev_flops += counter.forward(dev_tokens, dev_head)
        dev_losses.append((step, loss))
        if on_log is not None and acc.is_main_process:
            on_log({"train/step": step, "dev/loss": loss})
        if best is None or loss < best[0]:
            best = (loss, step, snapshot(acc, wrapped, trained))

    losses: list[float] = []
    tokens = target_tokens = 0
    ckpt = None
    batches: Any = loader
    if resume_dir is not None:
        identity = {
            "method": method, "format": fmt, "seed": seed, "cfg": cfg.model_dump(mode="json", exclude={"save_every"}),
            "processes": acc.num_processes, "data": [e.id for e in examples],
            "model": str(model_path), "precision": precision,
        } | ({"style": style, "turns": turns} if style != "plain" else {}) | (
            {"context_k": context_k} if context_k else {})  # fmt: skip
        ckpt = TrainCheckpointer(acc, Path(resume_dir), wrapped, identity)
        resumed = ckpt.load()
        if resumed is not None:
            step0, st, best_state = resumed
            losses, dev_losses = st["losses"], [tuple(x) for x in st["dev_losses"]]
            flops, dev_flops = st["flops"], st["dev_flops"]
            tokens, target_tokens = st["tokens"], st["target_tokens"]
            if st["best"] is not None:
                best = (st["best"][0], st["best"][1], best_state)
            batches = acc.skip_first_batches(loader, step0 * cfg.grad_accum)
            if log:
                log(f"[lab]   resuming training from step {step0}/{cfg.steps} ({resume_dir})")

    def save_checkpoint(step: int) -> None:
        state = {"losses": losses, "dev_losses": dev_losses, "flops": flops,
                 "dev_flops": dev_flops, "tokens": tokens,
                 "target_tokens": target_tokens, "best": best[:2] if best else None}  # fmt: skip
        assert ckpt is not None
        ckpt.save(step, state, best[2] if best else None)

    wrapped.train()
    running = 0.0
    step_in_tokens, t_step = 0, time.time()  # for on_log's tokens/s
    t_loop = time.time()
    bar = tqdm(
        total=cfg.steps, initial=len(losses), desc=f"train {method}/{fmt}",
        disable=not (progress and acc.is_main_process),
    )  # fmt: skip
    for batch in batches:
        with acc.accumulate(wrapped):
            with autocast(precision, acc.device.type):
                loss_sum = wrapped(**batch)
            # DDP averages gradients over processes and acc.backward divides by grad_accum:
            # scaled back up, the step's gradient is that of (its summed loss / its tokens).
            scale = acc.num_processes * cfg.grad_accum / step_tokens[len(losses)]
            acc.backward(loss_sum * scale)
            if acc.sync_gradients:
                grad_norm = acc.clip_grad_norm_(prepared_params, cfg.max_grad_norm)
                lr = optim.param_groups[0]["lr"]  # this step's (before the scheduler steps)
            optim.step()
            if acc.sync_gradients:
                sched.step()
            optim.zero_grad()
        running += loss_sum.detach().float().item()
        n_tok, n_target = int(batch["attention_mask"].sum()), int((batch["labels"] != IGNORE).sum())
        tokens += n_tok
        step_in_tokens += n_tok
        target_tokens += n_target
        flops += counter.train(n_tok, n_target)
        if acc.sync_gradients:
            # the step's loss and input tokens (for on_log's tokens/s) in one reduction
            loss_sum_all, n_in = sum_over_processes(acc, [running, step_in_tokens])
            step_loss = loss_sum_all / step_tokens[len(losses)]
            step_in_tokens = 0
            losses.append(step_loss)
            running = 0.0
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
            if on_log is not None:
                now = time.time()
                if acc.is_main_process:
                    on_log({"train/step": len(losses), "train/loss": step_loss,
                            "train/lr": float(lr),
                            "train/grad_norm": global_norm(grad_norm),
                            "train/tokens_per_s": n_in / max(now - t_step, 1e-9)})  # fmt: skip
                t_step = now
            if len(losses) % cfg.eval_every == 0 or len(losses) == cfg.steps:
                check_dev(len(losses))
            if ckpt and cfg.save_every and len(losses) % cfg.save_every == 0:
                if len(losses) < cfg.steps:
                    save_checkpoint(len(losses))
    bar.close()
    loop_s = time.time() - t_loop
    if ckpt:
        ckpt.close()
    flops, tokens, target_tokens = sum_over_processes(acc, [flops, tokens, target_tokens])
    flops, tokens, target_tokens = flops + dev_flops, int(tokens), int(target_tokens)

    out = Path(out_dir)
    best_step = best[1] if best else None
    best_dir = out if best_step in (None, len(losses)) else out / "best"
    acc.wait_for_everyone()
    state = full_state_dict(acc, wrapped)  # every process: FSDP gathers the shards
    if acc.is_main_process:
        trained = acc.unwrap_model(wrapped).lm
        save(trained, state, tok, out)  # adapter only for LoRA, full weights otherwise
        if best is not None and best_dir != out:
            save(trained, state, tok, best_dir, overlay=best[2])
    del state
    acc.wait_for_everyone()
    # complete and readable, or no train_result.json (below): decided by the writer, for all
    weights = trainable if method == "lora" else total
    problem = from_main(acc, lambda: incomplete(out, weights) or incomplete(best_dir, weights))
    if problem:
        raise RuntimeError(problem)
    result = TrainResult(
        checkpoint=str(out),
        method=method,
        steps=len(losses),
        examples_seen=len(order),
        train_tokens=tokens,
        target_tokens=target_tokens,
        trainable_params=trainable,
        total_params=total,
        wall_s=time.time() - t0,
        flops=flops,
        losses=losses,
        dev_losses=dev_losses,
        best_step=best_step,
        best_checkpoint=str(best_dir),
        processes=acc.num_processes,
        loop_s=loop_s,
    )
    if acc.is_main_process:
        write_result(out / "train_result.json", result.to_dict())  # last: training is done
        if resume_dir is not None:
            clear(Path(resume_dir))
    acc.wait_for_everyone()
    acc.free_memory()
    return result


def finished(out_dir: str | Path) -> TrainResult | None:
    """The result of a training that completed into `out_dir` (a rerun skips it)."""
    path = Path(out_dir) / "train_result.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    d["dev_losses"] = [tuple(x) for x in d["dev_losses"]]
    return TrainResult(**d)


def load_finetuned(
    base_path: str, checkpoint: str, method: str, precision: str = "fp32", unmerged: bool = False
) -> tuple[Any, Any]:
    """(model, tokenizer) for evaluation, loaded at `precision` (no fp32 copy of a big model
    in CPU memory at bf16). A LoRA adapter is merged into the base weights at fp32; at bf16 it
    stays a separate fp32 adapter over the bf16 base, as in training (merged into the bf16
    weights, an update smaller than bf16's resolution of a weight, ~0.4%, would round away).
    `unmerged`: a LoRA adapter stays separate at any precision (the study then merges it in
    fp32 where that is exact enough: eval/merge.py)."""
    tok = AutoTokenizer.from_pretrained(checkpoint)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    with zero3.whole_weights():  # evaluation: every process holds the whole model
        if method == "lora":
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype(precision))
            model = PeftModel.from_pretrained(base, checkpoint)
            if precision == "fp32" and not unmerged:
                model = model.merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype(precision))
    model.config.use_cache = True
    model.eval()
    return model, tok
