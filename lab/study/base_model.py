"""The study's base model in one process: loaded once, shared by the prompted arms, freed
before an FT cell trains its own copy, and what the cells need of it kept (parameter
counts, the FLOP counter, its logits on the adapter-check prompts).

The adapter check: every evaluated FT checkpoint must change the model's outputs. Its
next-token logits after a few ID test prompts are compared with the base model's; a
difference of exactly 0 means the adapter or the trained weights were not applied, and the
study stops rather than report base-model scores as fine-tuned ones.
"""

from __future__ import annotations

import gc
from typing import Any

import torch

from lab.core.compute import flop_counter
from lab.core.example import Example
from lab.core.prompts import prompt
from lab.study.models import ResolvedModel, load_model

ADAPTER_CHECK_PROMPTS = 4  # the first ID test prompts


@torch.no_grad()
def next_token_logits(model: Any, tok: Any, texts: list[str]) -> torch.Tensor:
    """Next-token logits after each text: (texts, vocabulary), fp32 on the CPU."""
    rows = []
    for t in texts:
        ids = tok(t, return_tensors="pt").input_ids.to(model.device)
        rows.append(model(input_ids=ids, logits_to_keep=1).logits[0, -1].float().cpu())
    return torch.stack(rows)


class StudyBase:
    """One resolved base model, loaded lazily on `device` at `precision`."""

    def __init__(
        self, resolved: ResolvedModel, device: Any, precision: str, id_test: list[Example]
    ):
        self.resolved = resolved
        self.device = device
        self.precision = precision
        self.check_texts = [prompt(ex) for ex in id_test[:ADAPTER_CHECK_PROMPTS]]
        self._loaded: tuple[Any, Any] | None = None
        self._check_logits: torch.Tensor | None = None
        self._params: dict[str, int] | None = None
        self._counter: Any = None

    def load(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use."""
        if self._loaded is None:
            self._loaded = load_model(self.resolved.path, self.device, self.precision)
        return self._loaded

    def counter(self) -> Any:
        """The base model's FLOP counter (kept when the base model is freed)."""
        if self._counter is None:
            self._counter = flop_counter(self.load()[0])
        return self._counter

    def release(self) -> None:
        """Free the base model: one base model per process in memory at a time (an FT cell
        trains, then evaluates, its own copies). What the cell needs of it is kept."""
        if self._loaded is None:
            return
        self.params(), self.counter(), self.check_logits()
        self._loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def params(self) -> dict[str, int]:
        """The base model's parameter count (all, and the decoder body without embeddings
        and LM head: the N of the FLOP accounting)."""
        if self._params is None:
            base = self.load()[0]
            self._params = {
                "n_params": sum(p.numel() for p in base.parameters()),
                "n_params_body": self.counter().body,
            }
        return self._params

    def check_logits(self) -> torch.Tensor:
        """The base model's next-token logits on the adapter-check prompts (computed once)."""
        if self._check_logits is None:
            base, tok = self.load()
            self._check_logits = next_token_logits(base, tok, self.check_texts)
        return self._check_logits

    def output_delta(self, model: Any, tok: Any) -> float:
        """The adapter check: max |logit difference| between a fine-tuned model and this
        base on the check prompts. 0 means the adapter or weights were not applied: stop."""
        delta = float(
            (next_token_logits(model, tok, self.check_texts) - self.check_logits()).abs().max()
        )
        if delta == 0.0:
            raise RuntimeError(
                "the fine-tuned model's outputs equal the base model's: the adapter or weights "
                "were not applied"
            )
        return delta
