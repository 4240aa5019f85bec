"""What fine-tuning trains and how: the LoRA adapter of a recipe and AdamW's parameter
groups (train/finetune.py; the benches wrap their references the same way)."""

from __future__ import annotations

from typing import Any

from lab.core.recipe import LoraCfg


def lora_model(model: Any, lora: LoraCfg) -> Any:
    """`model` with the recipe's LoRA adapter on it (peft; the base weights frozen): an
    arm's (`train.lora`) or a test-time adapter's (`ttt.lora`)."""
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's groups: weight decay on the trainable matrices, none on vectors; an empty
    group is left out (DeepSpeed drops it, and the LR scheduler then counts one group too
    many)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    matrix = [len(getattr(p, "ds_shape", p.shape)) >= 2 for p in trainable]  # ZeRO-3: ds_shape
    groups = [
        {"params": [p for p, m in zip(trainable, matrix, strict=True) if m], "weight_decay": weight_decay},
        {"params": [p for p, m in zip(trainable, matrix, strict=True) if not m], "weight_decay": 0.0},
    ]  # fmt: skip
    return [g for g in groups if g["params"]]
