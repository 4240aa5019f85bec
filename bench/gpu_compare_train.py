"""Training pairs of bench/gpu_compare.py: the lab's `finetune` vs `transformers.Trainer` vs
TRL's `SFTTrainer`, on the same model, examples, order, batches, LoRA config, optimizer
(fused AdamW), schedule, clipping, seed and precision.

Precision as the lab trains (lab/core/precision.py): bf16 autocast over fp32 master weights
for full fine-tuning; for LoRA a bf16 frozen base with an fp32 adapter. The references get
the same: the model loaded in the same dtype, `bf16=True` (the Trainer's autocast). Loss on
the target tokens only on every side (labels -100 on the prompt and padding; the same
`train.data.collate` batches), so the loss curves are comparable step by step.

Timed: the training loop only (the lab's `loop_s`; the Trainer's `train_runtime`, which
also covers its dataloader and optimizer setup), never the model load or the save.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import torch

SIDES = ("lab", "hf_trainer", "trl_sft")


def trainer_args(kind: str, cfg: Any, seed: int, out: str, bf16: bool) -> Any:
    """The reference trainer's arguments ("hf_trainer": TrainingArguments, "trl_sft":
    SFTConfig) for the lab's training settings `cfg`: the same batches, schedule, optimizer."""
    common = dict(
        output_dir=out,
        per_device_train_batch_size=cfg.batch_size // cfg.grad_accum,
        gradient_accumulation_steps=cfg.grad_accum,
        max_steps=cfg.steps,
        learning_rate=cfg.lr,
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(cfg.warmup_ratio * cfg.steps),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        optim="adamw_torch_fused",
        bf16=bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
    )
    if kind == "hf_trainer":
        from transformers import TrainingArguments

        return TrainingArguments(**common)
    from trl import SFTConfig

    # Pre-tokenised rows with their own labels: TRL's dataset preparation is skipped, the
    # same collator as the other sides builds the batches.
    return SFTConfig(
        **common, packing=False, max_length=None, dataset_kwargs={"skip_prepare_dataset": True}
    )


def reference_run(
    kind: str,
    path: str,
    data: list[dict],
    order: list[int],
    cfg: Any,
    method: str,
    seed: int,
    bf16: bool,
) -> dict[str, Any]:
    """One reference training run ("hf_trainer" or "trl_sft"): loss per step, loop seconds."""
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    from train.data import collate
    from train.optim import lora_model  # the lab's LoRA wrapping: the same adapter config

    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(path)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    load = torch.float32 if method == "full" or not bf16 else torch.bfloat16
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=load).to(device)
    model.config.use_cache = False
    if method == "lora":
        model = lora_model(model, cfg.lora)
    rows = [data[i] for i in order]
    if kind == "trl_sft":
        from datasets import Dataset
        from trl import SFTTrainer

        base: Any = SFTTrainer
        train_dataset: Any = Dataset.from_list(rows)
        extra = {"processing_class": tok}
    else:
        base, train_dataset, extra = Trainer, rows, {}

    class InOrder(base):  # the lab's order (the Trainer would reshuffle)
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return torch.utils.data.SequentialSampler(self.train_dataset)

    with tempfile.TemporaryDirectory(prefix=f"gpu-compare-{kind}-") as out:
        trainer = InOrder(
            model=model,
            args=trainer_args(kind, cfg, seed, out, bf16),
            train_dataset=train_dataset,
            data_collator=lambda b: collate(b, pad_id),
            **extra,
        )
        t0 = time.perf_counter()
        metrics = trainer.train().metrics
        wall = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    del trainer, model
    return {"loop_s": float(metrics.get("train_runtime", wall)), "losses": losses}


def lab_run(
    path: str, examples: list, fmt: str, cfg: Any, method: str, seed: int, precision: str
) -> dict[str, Any]:
    from train.finetune import finetune

    with tempfile.TemporaryDirectory(prefix="gpu-compare-lab-") as out:
        res = finetune(
            path, examples, fmt, method, cfg, seed, out, progress=False, precision=precision
        )
    return {
        "loop_s": res.loop_s,
        "losses": res.losses,
        "tokens": res.train_tokens,
        "flops": res.flops,
    }


def train_pair(
    path: str,
    examples: list,
    fmt: str,
    cfg: Any,
    method: str,
    precision: str,
    sides: tuple[str, ...],
    repeats: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Every side trained `repeats` times, interleaved (lab, hf, trl, lab, ...): per side
    the runs, median tokens/s (the lab's token count: the same batches) and loss curves."""
    from transformers import AutoTokenizer

    from lab.core.prompts import bos_prefix
    from train.data import Encoder, epoch_order

    tok = AutoTokenizer.from_pretrained(path)
    encode = Encoder(fmt, tok, bos_prefix(tok))
    data = [encode(ex) for ex in examples]
    order = epoch_order(len(examples), cfg.steps * cfg.batch_size, seed)
    tokens = sum(len(data[i]["input_ids"]) for i in order)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for side in sides:
            if side in errors:
                continue
            try:
                if side == "lab":
                    r = lab_run(path, examples, fmt, cfg, method, seed, precision)
                    assert r["tokens"] == tokens, (r["tokens"], tokens)
                else:
                    r = reference_run(
                        side, path, data, order, cfg, method, seed, precision == "bf16"
                    )
            except Exception as e:  # noqa: BLE001 - one side's failure is reported, not fatal
                errors[side] = f"{type(e).__name__}: {e}"[:300]
                continue
            finally:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            r["tokens_per_s"] = tokens / max(r["loop_s"], 1e-9)
            runs[side].append(r)
    return {"tokens_per_run": tokens, "runs": runs, "errors": errors}
