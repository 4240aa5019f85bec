"""A LoRA checkpoint evaluated on merged weights, where the merge is exact enough.

An unmerged adapter costs every adapted linear layer two more small matmuls, a cast to fp32
and back (the adapter stays fp32 over a bf16 base) and blocks the packed bf16 weights of
eval/packed.py: in bf16 a LoRA arm evaluated about 2.3x slower than the same model merged.
`for_evaluation` takes the unmerged model as `train.finetune.load_finetuned(...,
unmerged=True)` builds it (the frozen base at the evaluation precision, the fp32 adapter,
on its device) and returns the model the cell evaluates:

1. Merge in fp32: the base weights are reloaded in fp32 on the CPU, the same adapter is
   merged into them by peft (`merge_and_unload`, `safe_merge`: no NaN), and the merged
   weights are cast to the evaluation dtype and moved to the model's device. So bf16 rounds
   each W + dW once, where a merge into the bf16 weights would round dW against a rounded W.
2. Measure the rounding against the unmerged model on a fixed probe batch (the study's
   adapter-check prompts, lab/study/base_model.py): the max |logit difference| at every
   position, the max |difference| of the log-probability of each probe token (what scoring
   sums) and of each probe text's summed log-likelihood.
3. Keep the merged model when the max per-token log-probability difference is within
   TOLERANCE[precision] (or the caller's tolerance), else the unmerged one (the fallback).

What was done is returned as a dict for the cell's results (`path` "merged" or "adapter",
the differences, the tolerance, the seconds the merge took): cell.json's `train.eval_merge`.

Tolerances (nats per probe token): fp32 1e-3 (a merge in fp32 changes outputs by float
rounding only, ~1e-5 here); bf16 0.1, the size of bf16 evaluation's own rounding: bf16
against fp32 evaluation of the same fine-tuned SmolLM2-135M differs by up to ~0.1-0.2 per
token on these prompts (bench/RESULTS.md "Merged LoRA evaluation"), so a merge within 0.1
adds no more than bf16 evaluation already does; beyond it, an update the bf16 weights
cannot hold (dW below a weight's bf16 resolution, systematically) shows, and the adapter
is kept unmerged.

Memory: the fp32 copy lives on the CPU while it is merged (4 bytes a parameter); on an
accelerator the unmerged model waits on the CPU while the merged one is probed, so the
device holds one model at a time. Works on any device (CPU, CUDA).
"""

from __future__ import annotations

import gc
import time
from typing import Any

import torch

TOLERANCE = {"fp32": 1e-3, "bf16": 0.1}  # max |d log p| per probe token, nats


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


def merged_copy(base_path: str, checkpoint: str, precision: str, device: Any) -> Any:
    """The base reloaded in fp32 on the CPU with the adapter at `checkpoint` merged in (fp32),
    its weights then copied (cast) into the base as loaded at `precision`, on `device`.
    Reads the checkpoint only. (Not `model.to(bf16)`: that would also cast the non-persistent
    fp32 buffers a model loaded at bf16 keeps, e.g. the rotary inverse frequencies.)"""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lab.core.precision import dtype

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, checkpoint).merge_and_unload(safe_merge=True)
    if precision != "fp32":
        weights = merged.state_dict()
        merged = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype(precision))
        merged.load_state_dict(weights)  # round to nearest, once per merged weight
        del weights
    merged = merged.to(device)
    merged.config.use_cache = True
    merged.eval()
    return merged


def is_adapter(model: Any) -> bool:
    """Whether `model` is a peft model whose adapter is applied unmerged."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def for_evaluation(
    model: Any, tok: Any, base_path: str, checkpoint: str, precision: str,
    probe_texts: list[str], tolerance: float | None = None,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """(the model to evaluate, what was done): the fp32-merged copy of the unmerged LoRA
    `model` when its probe log-probabilities are within `tolerance` (default
    TOLERANCE[precision]) of `model`'s, else `model` itself. A model that is not an unmerged
    adapter comes back unchanged (`path` "as loaded")."""
    if not is_adapter(model):
        return model, {"path": "as loaded"}
    tol = TOLERANCE[precision] if tolerance is None else tolerance
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    reference = probe(model, tok, probe_texts)
    if device.type != "cpu":
        model.to("cpu")  # one model on the device at a time
        _free(device)
    merged = merged_copy(base_path, checkpoint, precision, device)
    diff = differences(reference, probe(merged, tok, probe_texts))
    keep = diff["max_abs_logprob_diff"] <= tol
    if keep:
        del model
    else:
        del merged
        merged = model.to(device)
    _free(device)
    info = {"path": "merged" if keep else "adapter", "tolerance": tol, **diff,
            "merge_s": time.perf_counter() - t0}  # fmt: skip
    return merged, info


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
