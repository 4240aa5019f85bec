"""The shared-prefix split attention on the device (bench/gpu_check.py's `split` phase; issue
27): the CPU path's agreement checks, run where the check runs.

1. `agreement(device)`: eval/attention.py `split_sdpa` (the prefix attended once for every
   row, merged with each row's own attention by log-sum-exp through eval/lse_attention.py's
   kernel for the device) against one plain fp32 softmax over each row's whole key sequence,
   for decoding and prefill steps with and without padding and tree masks, in fp32 and bf16:
   the largest |difference| per case, and whether it is within the tolerance the CPU tests
   hold (tests/eval/test_shared_prefix.py: 2e-6 fp32, 2e-2 bf16; 1e-4 fp32 on CUDA, whose
   fp32 matmuls may use TF32 inside the kernel).
2. `generation(model_path, device, n, batch)`: 8-shot CoT prompts of the arithmetic task,
   greedy, through `eval.lm.LM` with the split (`lm.split`) and with the prefix repeated per
   row, in fp32: identical outputs required; each path's examples/s.

    python -m bench.gpu_split [--device cuda]          # both, on the tiny model
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

CASES = ("decode", "decode_padded", "prefill_causal", "tree", "pads")
TOL = {("cpu", "fp32"): 2e-6, ("cpu", "bf16"): 2e-2, ("cuda", "fp32"): 1e-4, ("cuda", "bf16"): 2e-2}


def whole_row(q: Any, pk: Any, pv: Any, ok: Any, ov: Any, mask: Any, scale: float) -> Any:
    """One fp32 softmax over each row's prefix + own keys (kv heads repeated), (n, q, h, d)."""
    import torch

    from eval import lse_attention

    n, h, qn = q.shape[:3]
    g = h // pk.shape[1]
    k = torch.cat([pk.expand(n, -1, -1, -1), ok], dim=2).repeat_interleave(g, dim=1)
    v = torch.cat([pv.expand(n, -1, -1, -1), ov], dim=2).repeat_interleave(g, dim=1)
    if mask is None:  # causal over the own part, aligned at the end
        t = ok.shape[2]
        mask = torch.ones(qn, pk.shape[2] + t, dtype=torch.bool, device=q.device)
        mask = mask.tril(pk.shape[2] + t - qn).expand(n, 1, qn, -1)
    bias = torch.zeros(mask.shape, device=q.device).masked_fill(~mask, float("-inf"))
    out, _ = lse_attention.reference(q, k, v, bias, scale)
    return out.transpose(1, 2)


def case_tensors(case: str, dtype: Any, device: str, seed: int = 1) -> tuple:
    """(q, prefix keys, prefix values, own keys, own values, mask) of one case."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    n, h, kv, d, p = 3, 6, 2, 16, 11
    q_len = 1 if case.startswith("decode") else 5
    t = 7 if case.startswith("decode") else q_len + 2
    shapes = [(n, h, q_len, d), (1, kv, p, d), (1, kv, p, d), (n, kv, t, d), (n, kv, t, d)]
    q, pk, pv, ok, ov = (torch.randn(*s, generator=gen).to(device, dtype) for s in shapes)
    mask = None
    if case not in ("decode", "prefill_causal"):
        mask = torch.rand(n, 1, q_len, p + t, generator=gen) > 0.3
        mask[..., -1] = True
        if case == "decode_padded":
            mask[..., :p] = True
        if case == "pads":  # a query (a pad position) that sees none of its row's own keys
            mask[..., :p] = True
            mask[0, :, 1, p:] = False
        mask = mask.to(device)
    return q, pk, pv, ok, ov, mask


def prefix_layer(pk: Any, pv: Any, ok: Any, ov: Any) -> Any:
    """A SharedPrefixLayer over prefix (1, kv, P, d) holding own keys (n, kv, T, d)."""
    from transformers.cache_utils import DynamicLayer

    from eval.kv_cache import SharedPrefixLayer

    prefix = DynamicLayer()
    prefix.lazy_initialization(pk, pv)
    prefix.keys, prefix.values = pk, pv
    layer = SharedPrefixLayer(prefix, 0)
    layer.update(ok, ov)
    return layer


def agreement(device: str = "cpu") -> dict[str, Any]:
    import torch

    from eval.attention import split_sdpa

    out: dict[str, Any] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for case in CASES:
            q, pk, pv, ok, ov, mask = case_tensors(case, dtype, device)
            got = split_sdpa(q, prefix_layer(pk, pv, ok, ov), mask, 0.25)
            want = whole_row(q, pk, pv, ok, ov, mask, 0.25)
            out[f"{name}_{case}"] = float((got.float() - want).abs().max())
    kind = "cuda" if device.startswith("cuda") else "cpu"
    out["ok"] = all(v <= TOL[(kind, k.split("_")[0])] for k, v in out.items())
    return out


def generation(model_path: str, device: str = "cpu", n: int = 32, batch: int = 16) -> dict:
    from eval.lm import LM, GenRequest
    from lab.core.prompts import demos_prefix, prompt
    from lab.core.recipe import TaskCfg
    from lab.study.models import load_model
    from lab.tasks import build_task

    splits = build_task(TaskCfg(n_train=64, n_dev=8, n_test=n))
    k8 = demos_prefix(splits["train"][:8], "cot")
    reqs = [GenRequest(k8, prompt(ex), (), 24) for ex in splits["test"][:n]]
    model, tok = load_model(model_path, device, "fp32")
    res: dict[str, Any] = {}
    texts = {}
    for split in (True, False, True, False):  # interleaved; the second of each is timed
        lm = LM(model, tok, batch_size=batch, progress=False)
        lm.split = split
        t = time.perf_counter()
        texts[split] = [g.text for g in lm.generate(reqs)]
        res[f"{'split' if split else 'repeated'}_examples_per_s"] = n / (time.perf_counter() - t)
    res["identical_outputs"] = texts[True] == texts[False]
    res["split_vs_repeated"] = res["split_examples_per_s"] / res["repeated_examples_per_s"]
    return res


def phase(ctx: dict[str, Any]) -> dict[str, Any]:
    """bench/gpu_check.py's `split` phase: both checks, on the ~0.5B model where it was built
    (the tiny one with --cpu); a disagreement fails the phase."""
    device = "cpu" if ctx["cpu"] else "cuda"
    model = ctx["models"].get("0.5b", ctx["models"]["tiny"])
    n, batch = (8, 4) if ctx["cpu"] else (64, 32)
    out = {"agreement": agreement(device), "generation": generation(model, device, n, batch)}
    if not out["agreement"]["ok"] or not out["generation"]["identical_outputs"]:
        raise RuntimeError(f"split attention disagrees on {device}: {json.dumps(out)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default=None, help="a model folder; default the tiny model")
    args = ap.parse_args()
    model = args.model
    if model is None:
        from lab.study.models import resolve_model

        model = resolve_model("tiny-random", "/tmp/gpu_split_cache").path
    report = {"agreement": agreement(args.device), "generation": generation(model, args.device)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
