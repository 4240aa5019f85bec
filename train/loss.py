"""The training loss: cross-entropy on the supervised target tokens only, with the LM head
run only where a target is (the prompt's positions never reach the vocabulary projection),
and the held-out loss `train.select: best_dev` selects on."""

from __future__ import annotations

from typing import Any

import torch

from lab.core.compute import baseline_mode
from train.batching import packed_mask
from train.data import IGNORE
from train.sharded import no_split_modules


class SupervisedLoss(torch.nn.Module):
    """Wraps a causal LM: next-token cross-entropy on label != -100 positions only.

    The LM head (vocab-wide) is applied only where there is a label, not at every position.
    Being a Module, it is what DDP wraps, so gradient sync works under accelerate launch.
    `reduction="sum"` returns the summed token losses (the training loop normalises them by
    the optimizer step's token count across all processes and micro-batches).
    """

    def __init__(self, model: torch.nn.Module, reduction: str = "mean"):
        super().__init__()
        # `.lm`: the attribute's name is the key prefix of the resume state (train/sharded.PREFIX)
        self.lm = model
        self.reduction = reduction
        self.baseline = baseline_mode()
        # What FSDP's transformer auto-wrap (and accelerate's device maps) look for on the
        # module they are given, which is this wrapper: the LM's decoder-layer classes.
        self._no_split_modules = no_split_modules(model)

    def forward(self, input_ids, attention_mask, labels, position_ids=None) -> torch.Tensor:
        decoder = self.lm.get_decoder()
        if position_ids is not None:  # a packed batch (train/batching.py)
            attention_mask = packed_mask(attention_mask, position_ids, self.lm)
        hidden = decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        shift_labels = labels[:, 1:]
        keep = shift_labels != IGNORE
        if self.baseline:  # FTLAB_BASELINE=1 (bench/quickstart.py): the head everywhere
            logits = self.lm.get_output_embeddings()(hidden[:, :-1])[keep].float()
        else:
            logits = self.lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
        cap = getattr(self.lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.nn.functional.cross_entropy(
            logits, shift_labels[keep], reduction=self.reduction
        )


@torch.no_grad()
def held_out_loss(wrapped: Any, batches: list[dict[str, torch.Tensor]], device: Any) -> float:
    """Token-weighted mean loss on the held-out examples (teacher forcing; cheap, no generation).
    `wrapped` (the prepared model: autocast, FSDP gathers) returns summed token losses.
    Every process computes it on the whole split (FSDP needs every process in a forward)."""
    wrapped.eval()
    total, count = 0.0, 0
    for b in batches:
        total += float(wrapped(**{k: v.to(device) for k, v in b.items()}))
        count += int((b["labels"][:, 1:] != IGNORE).sum())
    wrapped.train()
    return total / max(count, 1)
