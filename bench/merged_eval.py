"""LoRA cells' evaluation: the adapter unmerged ("before") vs merged in fp32 ("after").

`make demo`'s LoRA cells (lora_answer, lora_cot, lora_code of `recipes/quickstart.yaml
--profile demo`) are trained once by the lab itself (`run_study` on the demo recipe with
only those arms, into `runs/bench/merged_eval/study`, reused by later runs); their
cell.json records which path the study took (`train.eval_merge`). Then each cell's
evaluation (its four eval splits, 64 examples each, the cell's prompt spec and generation
budget, exact match as the demo runs it) is timed in this one process, interleaved per
cell and repeat (the order alternates):

- **unmerged**: `load_finetuned(..., unmerged=True)`: the bf16 base with the fp32 adapter
  beside it (what the lab evaluated before eval/merge.py);
- **merged**: the same, then `eval.merge.for_evaluation` (merge in fp32, cast, probe,
  keep or fall back): what a study does now.

Each repeat times the load (+ merge and probe) and the evaluation separately; figures are
medians of `--repeats`, with `uptime` load beside each repeat. Both sides' predictions are
compared (same generation, same correctness).

    python -m bench.merged_eval --cache-dir /tmp/ftcache [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from typing import Any

import yaml

from bench.common import OUT, ROOT, Timer, header, load_avg, median, save

ARMS = ("lora_answer", "lora_cot", "lora_code")


def demo_recipe(arms: tuple[str, ...], precision: str) -> Any:
    from lab.core.recipe import parse_recipe

    data = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    data["arms"] = [a for a in data["arms"] if a["name"] in arms]
    data["tracking"] = {"mode": "disabled"}
    data["precision"] = precision
    return parse_recipe(data, profile="demo")


def evaluate_cell(
    mode: str, cell: dict[str, Any], recipe: Any, splits: dict, base: str, probe_texts: list[str]
) -> dict[str, Any]:
    import torch

    from eval.evaluate import PromptSpec, evaluate_split
    from eval.lm import LM
    from eval.merge import for_evaluation
    from train.finetune import load_finetuned

    arm = next(a for a in recipe.arms if a.name == cell["cell"]["arm"])
    ckpt = cell["train"]["checkpoint"]
    with Timer() as t_load:
        model, tok = load_finetuned(base, ckpt, "lora", recipe.precision, unmerged=True)
        merge: dict[str, Any] = {"path": "adapter (not merged)"}
        if mode == "merged":
            model, merge = for_evaluation(model, tok, base, ckpt, recipe.precision, probe_texts)
    lm = LM(model, tok, batch_size=recipe.eval.batch_size, progress=False)
    spec = PromptSpec(arm.format, (), arm.trigger)
    preds: dict[str, list[dict]] = {}
    load = load_avg()
    with Timer() as t_eval, torch.inference_mode():
        for name in ("test", "ood_digits", "ood_steps", "ood_phrasing"):
            preds[name], _ = evaluate_split(
                lm,
                splits[name],
                spec,
                recipe.eval.max_new_tokens[arm.format],
                recipe.eval.code_timeout_s,
                gold_logprob=False,
            )
    del lm, model
    gc.collect()
    return {
        "load_s": t_load.s,
        "eval_s": t_eval.s,
        "merge": merge,
        "load_avg": load,
        "preds": preds,
    }


def agreement(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> dict[str, Any]:
    pairs = [(x, y) for s in a for x, y in zip(a[s], b[s], strict=True)]
    return {
        "examples": len(pairs),
        "same_generation": sum(x["generation"] == y["generation"] for x, y in pairs),
        "same_correct": sum(x["correct"] == y["correct"] for x, y in pairs),
        "exact_match": {
            "unmerged": sum(bool(x["correct"]) for x, _ in pairs) / len(pairs),
            "merged": sum(bool(y["correct"]) for _, y in pairs) / len(pairs),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--cache-dir")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    from lab.core.prompts import prompt
    from lab.study.models import resolve_model
    from lab.study.run import run_study
    from lab.tasks import build_task

    info = header("merged_eval")
    recipe = demo_recipe(ARMS, args.precision)  # all three trained once; --arms are timed
    study = OUT / "merged_eval" / f"study-{args.precision}"
    with Timer() as t_study:
        run_study(recipe, study, progress=False, cache_dir=args.cache_dir)
    timed = args.arms.split(",")
    cells = [json.loads(p.read_text()) for p in sorted(study.glob("cells/*/cell.json"))]
    cells = [c for c in cells if c["cell"]["arm"] in timed]
    print(
        f"[merged_eval] study (train + evaluate, merged path) {t_study.s:.0f} s; paths: "
        + ", ".join(f"{c['cell']['arm']}: {c['train']['eval_merge']}" for c in cells)
    )
    base = resolve_model(recipe.model, args.cache_dir).path
    splits = build_task(recipe.task)
    probe_texts = [prompt(ex) for ex in splits["test"][:4]]  # the adapter-check prompts
    runs: dict[str, dict[str, list[dict]]] = {
        c["cell"]["arm"]: {"unmerged": [], "merged": []} for c in cells
    }
    for rep in range(args.repeats):
        for c in cells:
            arm = c["cell"]["arm"]
            order = ("unmerged", "merged") if rep % 2 == 0 else ("merged", "unmerged")
            for mode in order:
                r = evaluate_cell(mode, c, recipe, splits, base, probe_texts)
                runs[arm][mode].append(r)
                print(
                    f"[merged_eval] {arm:>11} {mode:>8} #{rep}: eval {r['eval_s']:6.1f} s, "
                    f"load{'+merge' if mode == 'merged' else ''} {r['load_s']:4.1f} s "
                    f"(load avg {r['load_avg']})",
                    flush=True,
                )
    summary: dict[str, Any] = {}
    for arm, modes in runs.items():
        med = {
            m: {k: median([r[k] for r in rs]) for k in ("eval_s", "load_s")}
            for m, rs in modes.items()
        }
        summary[arm] = {
            "median": med,
            "eval_speedup": med["unmerged"]["eval_s"] / med["merged"]["eval_s"],
            "total_speedup": (med["unmerged"]["eval_s"] + med["unmerged"]["load_s"])
            / (med["merged"]["eval_s"] + med["merged"]["load_s"]),
            "merge": modes["merged"][0]["merge"],
            "agreement": agreement(modes["unmerged"][0]["preds"], modes["merged"][0]["preds"]),
        }
        s = summary[arm]
        print(
            f"[merged_eval] {arm}: eval median unmerged {med['unmerged']['eval_s']:.1f} s, "
            f"merged {med['merged']['eval_s']:.1f} s -> {s['eval_speedup']:.2f}x "
            f"(with load/merge {s['total_speedup']:.2f}x); path {s['merge']['path']}, max "
            f"|d log p| {s['merge'].get('max_abs_logprob_diff', 0):.3g}; same generation "
            f"{s['agreement']['same_generation']}/{s['agreement']['examples']}, EM "
            f"{s['agreement']['exact_match']}"
        )
    for modes in runs.values():
        for rs in modes.values():
            for r in rs:
                r["preds"] = {k: [x["generation"] for x in v] for k, v in r["preds"].items()}
    info.update(
        precision=args.precision,
        threads=args.threads,
        repeats=args.repeats,
        study_s=t_study.s,
        study_eval_merge={c["cell"]["arm"]: c["train"]["eval_merge"] for c in cells},
        study_eval_s={c["cell"]["arm"]: c["compute"]["eval_s"] for c in cells},
        runs=runs,
        summary=summary,
    )
    save(
        f"merged_eval_{args.precision}"
        + ("" if set(timed) == set(ARMS) else "_" + "_".join(timed)),
        info,
    )


if __name__ == "__main__":
    main()
