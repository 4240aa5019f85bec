"""The fine-tuning loop: plain accelerate, read top to bottom (after HF run_clm_no_trainer).

Works in one process and under `accelerate launch` (DDP; each process gets its share of
every global batch). LoRA via peft or full fine-tuning; AdamW; warmup then decay; gradient
accumulation; the loss — and the LM head — only on the supervised target tokens.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

from eval.prompts import bos_prefix
from lab.compute import flop_counter
from lab.recipe import TrainCfg
from lab.tasks.base import Example
from train.data import IGNORE, collate, encode_example, epoch_order


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SupervisedLoss(torch.nn.Module):
    """Wraps a causal LM: next-token cross-entropy on label != -100 positions only.

    The LM head (vocab-wide) is applied only where there is a label, not at every position.
    Being a Module, it is what DDP wraps, so gradient sync works under accelerate launch.
    """

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, labels) -> torch.Tensor:  # noqa: ANN001
        decoder = self.lm.get_decoder()
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        shift_labels = labels[:, 1:]
        keep = shift_labels != IGNORE
        h = hidden[:, :-1][keep]
        logits = self.lm.get_output_embeddings()(h).float()
        cap = getattr(self.lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.nn.functional.cross_entropy(logits, shift_labels[keep])


def _lora(model: Any, cfg: TrainCfg) -> Any:
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


@torch.no_grad()
def _dev_loss(wrapped: Any, batches: list[dict[str, torch.Tensor]], device: Any) -> float:
    """Token-weighted mean loss on the ID dev split (teacher forcing; cheap, no generation)."""
    wrapped.eval()
    total, count = 0.0, 0
    for b in batches:
        n = int((b["labels"][:, 1:] != IGNORE).sum())
        total += float(wrapped(**{k: v.to(device) for k, v in b.items()})) * n
        count += n
    wrapped.train()
    return total / max(count, 1)


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
) -> TrainResult:
    """Train `model_path` on `examples` in format `fmt`; save the adapter or full weights.

    With `dev_examples`, the ID-dev loss is measured every `cfg.eval_every` steps and at the
    end; the lowest-loss model is saved to `out_dir/best` when it is not the last one.
    Nothing is ever selected on an evaluation split."""
    assert method in ("lora", "full"), method
    acc = accelerator or Accelerator(gradient_accumulation_steps=cfg.grad_accum)
    acc.gradient_accumulation_steps = cfg.grad_accum
    set_seed(seed)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(model_path)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.config.use_cache = False
    if method == "lora":
        model = _lora(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    counter = flop_counter(model, method)

    bos = bos_prefix(tok)
    data = [encode_example(ex, fmt, tok, bos) for ex in examples]
    per_step = cfg.grad_accum * acc.num_processes
    micro = cfg.batch_size // per_step
    if micro * per_step != cfg.batch_size:
        raise ValueError(
            f"train.batch_size ({cfg.batch_size}) must be a multiple of grad_accum x processes "
            f"({cfg.grad_accum} x {acc.num_processes})"
        )
    order = epoch_order(len(data), cfg.steps * cfg.batch_size, seed)
    loader = torch.utils.data.DataLoader(
        [data[i] for i in order],
        batch_size=micro,
        shuffle=False,
        collate_fn=lambda b: collate(b, pad_id),
    )

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optim = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    warmup = math.ceil(cfg.warmup_ratio * cfg.steps)
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
    sched = get_scheduler(
        name[cfg.schedule], optim, num_warmup_steps=warmup, num_training_steps=cfg.steps
    )
    dev = [encode_example(ex, fmt, tok, bos) for ex in dev_examples or []]
    dev_batches = [collate(dev[i : i + micro], pad_id) for i in range(0, len(dev), micro)]
    dev_tokens = sum(int(b["attention_mask"].sum()) for b in dev_batches)
    dev_head = sum(int((b["labels"] != IGNORE).sum()) for b in dev_batches)
    wrapped = SupervisedLoss(model)
    wrapped, optim, loader, sched = acc.prepare(wrapped, optim, loader, sched)
    dev_losses: list[tuple[int, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    flops = 0.0

    def check_dev(step: int) -> None:
        nonlocal best, flops
        if not dev_batches:
            return
        loss = _dev_loss(wrapped, dev_batches, acc.device)
        flops += counter.forward(dev_tokens, dev_head)
        dev_losses.append((step, loss))
        if best is None or loss < best[0]:
            state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            best = (loss, step, state)

    wrapped.train()
    losses: list[float] = []
    running, n_micro = 0.0, 0
    tokens = target_tokens = 0
    bar = tqdm(total=cfg.steps, desc=f"train {method}/{fmt}", disable=not progress)
    for batch in loader:
        with acc.accumulate(wrapped):
            loss = wrapped(**batch)
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(params, cfg.max_grad_norm)
            optim.step()
            sched.step()
            optim.zero_grad()
        running += loss.detach().float().item()
        n_micro += 1
        n_tok, n_target = int(batch["attention_mask"].sum()), int((batch["labels"] != IGNORE).sum())
        tokens += n_tok
        target_tokens += n_target
        flops += counter.train(n_tok, n_target)
        if acc.sync_gradients:
            step_loss = float(acc.gather(torch.tensor([running / n_micro])).mean())
            losses.append(step_loss)
            running, n_micro = 0.0, 0
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
            if len(losses) % cfg.eval_every == 0 or len(losses) == cfg.steps:
                check_dev(len(losses))
    bar.close()
    flops = float(acc.gather(torch.tensor([flops], dtype=torch.float64)).sum())
    tokens = int(acc.gather(torch.tensor([tokens])).sum())
    target_tokens = int(acc.gather(torch.tensor([target_tokens])).sum())

    out = Path(out_dir)
    best_step = best[1] if best else None
    best_dir = out if best_step in (None, len(losses)) else out / "best"
    acc.wait_for_everyone()
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        lm = acc.unwrap_model(wrapped).lm
        lm.save_pretrained(out)  # adapter only for LoRA, full weights otherwise
        tok.save_pretrained(out)
        if best is not None and best_dir != out:
            with torch.no_grad():
                params = dict(lm.named_parameters())
                for name, value in best[2].items():
                    params[name].copy_(value)
            lm.save_pretrained(best_dir)
            tok.save_pretrained(best_dir)
    acc.wait_for_everyone()
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
    )
    if acc.is_main_process:
        (out / "train_result.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def load_finetuned(base_path: str, checkpoint: str, method: str) -> tuple[Any, Any]:
    """(model, tokenizer) for evaluation; a LoRA adapter is merged into the base weights."""
    tok = AutoTokenizer.from_pretrained(checkpoint)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if method == "lora":
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, checkpoint).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    model.config.use_cache = True
    model.eval()
    return model, tok
