"""A LoRA checkpoint evaluated on merged weights, where the merge is exact enough.

An unmerged adapter costs every adapted linear layer two more small matmuls, a cast to fp32
and back (the adapter stays fp32 over a bf16 base) and blocks the packed bf16 weights of
eval/packed.py: in bf16 a LoRA arm evaluated about 2.3x slower than the same model merged.
`for_evaluation` takes the unmerged model as `train.finetune.load_finetuned(...,
unmerged=True)` builds it (the frozen base at the evaluation precision, the fp32 adapter,
on its device) and returns the model the cell evaluates:

1. Merge in fp32: the base weights are reloaded in fp32 on the CPU and the same adapter is
   merged into them by peft (`merge_and_unload`, `safe_merge`: no NaN): the exact
   fine-tuned model, up to fp32 rounding. At bf16 its weights are then copied (each W + dW
   rounded once) into the base as loaded at bf16, on the model's device.
2. Measure the rounding against the unmerged model on a fixed probe batch (the study's
   adapter-check prompts, lab/study/base_model.py): the max |logit difference| at every
   position, the max |difference| of the log-probability of each probe token (what scoring
   sums) and of each probe text's summed log-likelihood. Also each model's distance from
   the exact fp32 model (`vs_exact_max_abs_logprob_diff`), for the reviewer.
3. Keep the merged model when its max per-token log-probability difference from the
   unmerged model is within the tolerance, else the unmerged one (the fallback).

What was done is returned as a dict for the cell's results (`path` "merged" or "adapter",
the differences, the tolerance, the seconds the merge took): cell.json's `train.eval_merge`.

The stated tolerance (max |d log p| per probe token, nats; a caller may pass its own):
- fp32: 1e-3. A merge in fp32 changes outputs by float rounding only (~1e-5 here).
- bf16: 0.5, or the unmerged bf16 model's own distance from the exact fp32 model where that
  is larger: the merge may move outputs as far as bf16 evaluation of the unmerged adapter
  already does, no further. Measured on the demo's lora_answer checkpoint (SmolLM2-135M,
  bench/RESULTS.md "Merged LoRA evaluation"): the merge moved 0.36; the unmerged bf16 model
  is 0.47 from the exact model, the merged one 0.28 (closer), the bf16 base 0.36 from the
  fp32 base; the adapter itself moves outputs by ~11. Beyond the tolerance (e.g. an update
  below the bf16 resolution of its weights, systematically) the adapter is kept unmerged.

Memory and time: the fp32 copy lives on the CPU while it is merged and probed (4 bytes a
parameter; the probe is a few short prompts); on an accelerator the unmerged model waits on
the CPU while the merged one is probed, so the device holds one model at a time. Works on
any device (CPU, CUDA).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import torch

TOLERANCE = {"fp32": 1e-3, "bf16": 0.5}  # max |d log p| per probe token, nats (floor at bf16)


@torch.no_grad()
def probe(model: Any, tok: Any, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each text: (logits at every position, log-probability of each next token), fp32
    on the CPU."""
    device = next(model.parameters()).device
    out = []
    for text in texts:
        ids = tok(text, return_tensors="pt").input_ids.to(device)
        logits = model(input_ids=ids).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None])[:, 0]
        out.append((logits.cpu(), logp.cpu()))
    return out


def differences(
    a: list[tuple[torch.Tensor, torch.Tensor]], b: list[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, float]:
    """Max |difference| of two probes: logits, per-token log-probabilities, and each text's
    summed log-likelihood."""
    pairs = list(zip(a, b, strict=True))
    return {
        "max_abs_logit_diff": max(float((x[0] - y[0]).abs().max()) for x, y in pairs),
        "max_abs_logprob_diff": max(
            (float((x[1] - y[1]).abs().max()) for x, y in pairs if x[1].numel()), default=0.0
        ),
        "max_abs_loglik_diff": max(float((x[1].sum() - y[1].sum()).abs()) for x, y in pairs),
        "probe_texts": len(pairs),
        "probe_tokens": sum(int(x[1].numel()) for x, _ in pairs),
    }


def merge_fp32(base_path: str, checkpoint: str) -> Any:
    """The base reloaded in fp32 on the CPU with the adapter at `checkpoint` merged into it
    by peft, in fp32: the exact fine-tuned model (up to fp32 rounding). Reads the checkpoint
    only."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, checkpoint).merge_and_unload(safe_merge=True)
    merged.eval()
    return merged


def at_precision(merged32: Any, precision: str, device: Any) -> Any:
    """The fp32-merged model for evaluation at `precision` on `device`, in place: at bf16 its
    parameters are cast (each W + dW rounded once), its buffers not: a model loaded at bf16
    keeps fp32 buffers (the rotary inverse frequencies), which `model.to(bf16)` would cast."""
    from lab.core.precision import dtype

    if precision != "fp32":
        for p in merged32.parameters():
            p.data = p.data.to(dtype(precision))
    model = merged32.to(device)
    model.config.use_cache = True
    model.eval()
    return model


def is_adapter(model: Any) -> bool:
    """Whether `model` is a peft model whose adapter is applied unmerged."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def for_evaluation(
    model: Any,
    tok: Any,
    base_path: str,
    checkpoint: str,
    precision: str,
    probe_texts: list[str],
    tolerance: float | None = None,
    reload: Callable[[], Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """(the model to evaluate, what was done): the fp32-merged copy of the unmerged LoRA
    `model` when its probe log-probabilities are within the tolerance of `model`'s, else
    `model` itself. The tolerance: `tolerance` when given, else the stated rule (module
    docstring). A model that is not an unmerged adapter comes back unchanged ("as loaded").
    With `reload` (which loads the unmerged model again) the unmerged model is freed before
    the merge, so one model is in memory at a time, and reloaded only for the fallback."""
    if not is_adapter(model):
        return model, {"path": "as loaded"}
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    unmerged = probe(model, tok, probe_texts)
    if reload is not None:
        model = None  # one model in memory at a time: reloaded for the fallback
    elif device.type != "cpu":
        model.to("cpu")  # one model on the device at a time
    _free(device)
    merged32 = merge_fp32(base_path, checkpoint)
    exact = probe(merged32, tok, probe_texts)  # fp32, on the CPU
    merged = at_precision(merged32, precision, device)
    del merged32
    got = probe(merged, tok, probe_texts)
    diff = differences(unmerged, got)
    noise = differences(exact, unmerged)["max_abs_logprob_diff"]
    if tolerance is None:
        tolerance = (
            TOLERANCE[precision] if precision == "fp32" else max(TOLERANCE[precision], noise)
        )
    keep = diff["max_abs_logprob_diff"] <= tolerance
    if keep:
        del model
    else:
        del merged
        _free(device)
        merged = (reload() if model is None else model).to(device)
    _free(device)
    info = {
        "path": "merged" if keep else "adapter",
        "tolerance": tolerance,
        **diff,
        # each model's distance from the exact (fp32-merged) fine-tuned model
        "vs_exact_max_abs_logprob_diff": {
            "merged": differences(exact, got)["max_abs_logprob_diff"],
            "unmerged": noise,
        },
        "merge_s": time.perf_counter() - t0,
    }
    return merged, info


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
