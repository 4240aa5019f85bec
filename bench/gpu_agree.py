"""bf16 vs fp32 evaluation of one model (bench/gpu_check.py's agreement phase):
`python bench/gpu_agree.py BASE CHECKPOINT METHOD OUT.json [N] [BATCH]`.

Evaluates the checkpoint (a fine-tuned model; METHOD lora | full | base) on the arithmetic
task's ID test split and its three OOD splits, first in fp32, then in bf16, with the lab's
own evaluator (eval/evaluate.py), and writes: the share of examples whose extracted answer
is the same, the share whose correctness is the same, the largest and mean |difference| of
log p(gold answer), and the examples/s of each precision.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    base, ckpt, method, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 128
    batch = int(sys.argv[6]) if len(sys.argv) > 6 else 64
    import torch

    from eval.evaluate import PromptSpec, evaluate_split
    from eval.lm import LM
    from lab.core.recipe import TaskCfg
    from lab.study.models import load_model
    from lab.tasks import build_task
    from train.finetune import load_finetuned

    device = "cuda" if torch.cuda.is_available() else "cpu"
    splits = build_task(TaskCfg(n_train=64, n_dev=8, n_test=n, params={"ops": "+-"}))
    names = ["test", "ood_digits", "ood_steps", "ood_phrasing"]
    preds: dict[str, list[dict]] = {}
    rates: dict[str, float] = {}
    for precision in ("fp32", "bf16"):
        if method == "base":
            model, tok = load_model(ckpt, device, precision)
        else:
            model, tok = load_finetuned(base, ckpt, method, precision)
            model.to(device)
        lm = LM(model, tok, batch_size=batch, progress=False)
        got: list[dict] = []
        t0 = time.time()
        for s in names:
            p, _ = evaluate_split(lm, splits[s], PromptSpec("answer"), 8, gold_logprob=True)
            got += p
        rates[precision] = len(got) / (time.time() - t0)
        preds[precision] = got
        del model, lm
        if device == "cuda":
            torch.cuda.empty_cache()
    a, b = preds["fp32"], preds["bf16"]
    dlp = [
        abs(x["gold_logprob"] - y["gold_logprob"])
        for x, y in zip(a, b, strict=True)
        if x.get("gold_logprob") is not None and y.get("gold_logprob") is not None
    ]
    result = {
        "examples": len(a),
        "same_pred": sum(x["pred"] == y["pred"] for x, y in zip(a, b, strict=True)) / len(a),
        "same_correct": sum(x["correct"] == y["correct"] for x, y in zip(a, b, strict=True))
        / len(a),
        "exact_match_fp32": sum(x["correct"] for x in a) / len(a),
        "exact_match_bf16": sum(x["correct"] for x in b) / len(b),
        "gold_logprob_max_abs_diff": max(dlp) if dlp else None,
        "gold_logprob_mean_abs_diff": statistics.fmean(dlp) if dlp else None,
        "gold_logprob_mean_fp32": statistics.fmean(x["gold_logprob"] for x in a),
        "eval_examples_per_s": rates,
    }
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
