"""Expected GPU hours of a recipe, from the lab's own FLOP accounting (lab/core/compute.py).

`python -m lab estimate RECIPE.yaml [--profile NAME] [--train-tflops 100] [--infer-tflops 20]`

For every model of the recipe (one, or a ladder) and every cell the runner would run, this
counts what the runner does, with the same `FlopCounter` the runner uses to record compute:

- fine-tuning: `train.steps x train.batch_size` examples of `prompt + target` tokens
  (`FlopCounter.train`: full FT 3x forward, LoRA 2x frozen forward + 6 x LoRA params), plus the
  ID-dev loss every `train.eval_every` steps;
- evaluation: per variant (ICL: the prompt; FT: best and last checkpoints, + the FT-then-ICL
  probe when on) and per eval split, `n_test` generations of `max_new_tokens` (an upper bound:
  generation stops at the first newline) after the k demos and the question
  (`FlopCounter.generate`), plus the gold-answer log-probability pass;
- probes (BBH, cross-task): per variant but the FT-then-ICL one, each probe split's
  examples after its own fixed prompt (generation, or one forward per choice).

Token counts come from the task's real examples: exactly, with the model's tokenizer when it
is available locally, else as characters / `chars_per_token` (3.0 by default; digits are
single tokens in the Qwen2.5, Llama-3 and Gemma tokenizers). Parameter counts come from the
model's config (local directory, alias, or the local Hugging Face cache, instantiated on the
meta device: nothing is downloaded or allocated), else from the published counts in
`PUBLISHED` (lab/study/model_sizes.py).

Hours = FLOPs / achieved FLOP/s, summed over GPUs (GPU-hours; data parallelism divides the
wall time, not the GPU-hours). The achieved rates are ASSUMPTIONS, not measurements: the
defaults (training 100 TFLOP/s, about 10% of an H100's dense bf16 peak, which is typical for
short sequences and small batches; generation 20 TFLOP/s, memory-bound at batch 16-32)
should be replaced by rates measured on your hardware: by default the rates
bench/gpu_check.sh measured are read from the project's bench/gpu_check.json when it holds GPU
figures (the output says which were used). Model loading, checkpoint saving and
Python overhead are not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core.compute import FlopCounter
from lab.core.errors import LabError
from lab.core.recipe import Recipe
from lab.study.model_sizes import frame_tokens, param_counts, token_counter

# what bench/gpu_check.sh measured, at the project's root (lab/study/estimate.py -> ../../)
DEFAULT_RATES = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.json"


@dataclass(frozen=True)
class Estimate:
    model: str
    params: int
    source: str  # where the parameter count came from
    tokens: str  # tokenizer | chars/N
    train_flops: float
    eval_flops: float
    train_hours: float
    eval_hours: float
    eval_parts: dict[str, float] = field(default_factory=dict)  # eval FLOPs by where they go

    @property
    def hours(self) -> float:
        return self.train_hours + self.eval_hours


def probe_flops(infer: FlopCounter, xs: list[Any], mean_tokens: Any, recipe: Recipe) -> float:
    """FLOPs of one variant's pass over a probe split: BBH generates after its fixed 3-shot
    prompt; a cross-task probe generates (or scores its choices) after its fixed demos, in
    its own format."""
    from eval.probes import probe_prompt, task_probe_max_new_tokens, task_probe_spec
    from lab.core.prompts import prompt

    m = xs[0].meta
    if "demos" not in m:  # BBH
        pre = mean_tokens([m["prefix"]]) + mean_tokens([probe_prompt(x) for x in xs])
        return len(xs) * infer.generate(int(pre), int(m["max_new_tokens"]))
    spec = task_probe_spec(xs)
    pre = mean_tokens([spec.prefix]) + mean_tokens([prompt(x) for x in xs])
    if xs[0].choices:
        return len(xs) * len(xs[0].choices) * infer.forward(int(pre + 1), 1)
    new = task_probe_max_new_tokens(xs, recipe.eval.max_new_tokens)
    return len(xs) * infer.generate(int(pre), new)


def estimate(
    recipe: Recipe,
    train_flops_per_s: float = 100e12,
    infer_flops_per_s: float = 20e12,
    chars_per_token: float = 3.0,
    cache_dir: str | None = None,
) -> list[Estimate]:
    """Per model of the recipe: FLOPs and GPU hours of the whole study (all its cells)."""
    from lab.core.fairness import held_out_size
    from lab.core.prompts import prompt, target, written_as
    from lab.study.plan import budget_size, plan_one_model, study_data

    data = study_data(recipe)
    splits, pool, evals, probes = data.splits, data.pool, data.eval_splits, data.probe_splits
    cells = plan_one_model(recipe)

    out = []
    for spec in recipe.models:
        sz = param_counts(spec, cache_dir)
        body, head = sz.body, sz.head
        tok = token_counter(spec, cache_dir, chars_per_token)

        def mean_tokens(texts: list[str], tok=tok) -> float:  # noqa: ANN001
            return statistics.fmean(tok(t) for t in texts) if texts else 0.0

        train = evals_f = 0.0
        parts: dict[str, float] = {}

        def add(part: str, flops: float, parts: dict[str, float] = parts) -> float:
            parts[part] = parts.get(part, 0.0) + flops
            return flops

        for cell in cells:
            arm = cell.arm
            fmt = written_as(arm.format)  # cot_self: generated as cot (its writing: not counted)
            new = recipe.eval.max_new_tokens[fmt]
            variants: list[int] = []  # demos per evaluated variant
            checkpoints = 1  # variants without the arm's demos (probes run on each)
            if arm.method in ("icl", "ttt"):
                k = budget_size(cell.budget, arm.k, len(pool)) if arm.k else 0
                k = min(k, arm.k) if arm.retrieved and isinstance(arm.k, int) else k
                variants.append(k)
                if arm.method == "ttt":  # one adapter per eval split (or per query)
                    t = arm.ttt
                    adapters = sum(len(splits[s]) for s in evals) if t.per_query else len(evals)
                    counter = FlopCounter(body, head, t.lora.r * sz.linear_io, "lora")
                    seq = frame_tokens(
                        tok, recipe.prompt, pool[: max(k - 1, 0)], fmt
                    ) + mean_tokens([prompt(e) + target(e, fmt) for e in pool[:500]])
                    tgt = mean_tokens([target(e, fmt) for e in pool[:500]])
                    n = t.steps * t.batch_size * adapters
                    train += counter.train(int(n * seq), int(n * tgt))
            else:
                cfg = recipe.train_for(arm)
                lora = cfg.lora.r * sz.linear_io if arm.method == "lora" else 0
                counter = FlopCounter(body, head, lora, arm.method)
                ex_tok = mean_tokens([prompt(e) + target(e, fmt) for e in pool[:500]])
                ex_tok *= 1 + arm.train_k  # in-context FT: train_k demos before each target
                ex_tok += frame_tokens(tok, recipe.prompt, [], fmt)  # chat: the template's turns
                tgt_tok = mean_tokens([target(e, fmt) for e in pool[:500]])
                n_ex = cfg.steps * cfg.batch_size
                train += counter.train(int(n_ex * ex_tok), int(n_ex * tgt_tok))
                # select: best_dev holds examples of the budget out (lab/core/fairness.py)
                n_dev = held_out_size(budget_size(cell.budget, cfg.n_train, len(pool)), cfg)
                dev_evals = cfg.steps // cfg.eval_every + 1
                train += dev_evals * FlopCounter(body, head, lora).forward(
                    int(n_dev * ex_tok), int(n_dev * tgt_tok)
                )
                checkpoints = 2 if n_dev else 1  # best_dev: the selected and the last
                variants += [arm.train_k] * checkpoints  # in-context FT: its own demos
                variants += [recipe.eval.ft_then_icl_k] if recipe.eval.ft_then_icl_k else []
            # eval.formats: the comparison's variant once more per further prompt format
            variants[1:1] = [variants[0]] * (len(recipe.prompt_formats()) - 1)
            infer = FlopCounter(body, head)
            for k in variants:
                demos = frame_tokens(tok, recipe.prompt, pool[:k], fmt)  # chat: with the template
                for s in evals:
                    q = mean_tokens([prompt(e, arm.trigger) for e in splits[s]])
                    a = mean_tokens([target(e, "answer") for e in splits[s]])
                    n = len(splits[s])
                    evals_f += add(f"{fmt}: prompts", n * infer.forward(int(demos + q), 1))
                    evals_f += add(f"{fmt}: generated tokens", n * infer.forward(new, new))
                    if recipe.eval.gold_logprob:
                        evals_f += add("log p(gold)", n * infer.forward(int(demos + q + a), int(a)))
            # probes: every variant but the FT-then-ICL one, each with its own fixed prompt
            for s in probes:
                evals_f += add(
                    "probes", checkpoints * probe_flops(infer, splits[s], mean_tokens, recipe)
                )
        out.append(
            Estimate(
                spec,
                sz.total,
                sz.source,
                "tokenizer" if tok.exact else f"chars/{chars_per_token:g}",
                train,
                evals_f,
                train / train_flops_per_s / 3600,
                evals_f / infer_flops_per_s / 3600,
                parts,
            )
        )
    return out


def measured_rates(path: str | Path) -> tuple[float, float, str] | None:
    """(training FLOP/s, generation FLOP/s, where from) measured by bench/gpu_check.sh (its
    gpu_check.json): the median achieved training rate of its ~0.5B LoRA/full cells and the
    median evaluation rate in the lab's accounting (no shared-prefix cache, as counted
    here). None when there is no such file or it holds no GPU figures."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        train, infer = [], []
        for name in ("lora", "full", "fsdp"):
            ph = data["phases"].get(name, {})
            for c in (ph.get("figures") or {}).get("cells", {}).values():
                if c.get("train_flops_per_s"):
                    train.append(c["train_flops_per_s"])
                if c.get("eval_accounted_flops_per_s"):
                    infer.append(c["eval_accounted_flops_per_s"])
        device = data["phases"]["env"]["figures"].get("device", "?")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if data.get("mode") != "gpu" or not train or not infer:
        return None
    return statistics.median(train), statistics.median(infer), f"measured on {device} ({path})"


def render(
    recipe: Recipe, rows: list[Estimate], train_fps: float, infer_fps: float, source: str = ""
) -> str:
    how = source or "assumed, not measured"
    lines = [
        f"recipe '{recipe.name}': expected GPU-hours from the lab's FLOP accounting "
        f"(achieved: training {train_fps / 1e12:.3g} TFLOP/s, generation "
        f"{infer_fps / 1e12:.3g} TFLOP/s per GPU; {how})",
        "| model | params (source) | tokens | train FLOPs | eval FLOPs | train h | eval h | GPU-hours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        lines.append(
            f"| {e.model} | {e.params / 1e6:,.0f}M ({e.source}) | {e.tokens} | {e.train_flops:.3g} | "
            f"{e.eval_flops:.3g} | {e.train_hours:.3g} | {e.eval_hours:.3g} | {e.hours:.3g} |"
        )
    lines.append(f"| total | | | | | | | {sum(e.hours for e in rows):.3g} |")
    parts: dict[str, float] = {}
    for e in rows:
        for k, v in e.eval_parts.items():
            parts[k] = parts.get(k, 0.0) + v
    total = sum(parts.values())
    if total:
        top = sorted(parts.items(), key=lambda kv: -kv[1])
        lines.append(
            "where evaluation time goes (share of eval FLOPs; prompts are counted per example, "
            "without the shared-demo KV cache the lab uses, so prompt shares are upper bounds): "
            + ", ".join(f"{k} {v / total:.0%}" for k, v in top)
        )
    return "\n".join(lines)


def main(args: Any) -> int:
    from lab.core.recipe import load_recipe
    from lab.study import memory

    recipe = load_recipe(args.recipe, profile=args.profile)
    measured = None if args.rates == "none" else measured_rates(args.rates or DEFAULT_RATES)
    if measured is None and args.rates not in (None, "none"):
        raise LabError(
            f"--rates {args.rates}: no GPU rates there (bench/gpu_check.sh writes them); "
            "pass --rates none for the assumed ones"
        )
    train_fps = (args.train_tflops or 0) * 1e12 or (measured[0] if measured else 100e12)
    infer_fps = (args.infer_tflops or 0) * 1e12 or (measured[1] if measured else 20e12)
    explicit = args.train_tflops or args.infer_tflops
    source = "given" if explicit else (measured[2] if measured else "")
    rows = estimate(recipe, train_fps, infer_fps, args.chars_per_token, args.cache_dir)
    print(render(recipe, rows, train_fps, infer_fps, source))
    mem = memory.plan_memory(recipe, args.gpus, args.strategy, args.cache_dir, args.chars_per_token)
    gpu_bytes = args.gpu_mem_gib * memory.GIB
    b = 4 if recipe.precision == "fp32" else 2
    print()
    print(memory.render(mem, args.gpus, args.strategy, gpu_bytes, b))
    memory.check_fits(mem, gpu_bytes, args.strategy)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="expected GPU hours and peak memory per GPU of a recipe")
    p.add_argument("recipe")
    p.add_argument("--profile", help="apply the recipe's named overrides first")
    p.add_argument(
        "--train-tflops",
        type=float,
        help="achieved, per GPU (default: measured "
        "by bench/gpu_check.sh when bench/gpu_check.json exists, else 100)",
    )
    p.add_argument(
        "--infer-tflops", type=float, help="achieved, per GPU (default: measured, else 20)"
    )
    p.add_argument(
        "--rates",
        help="gpu_check.json with measured rates (default: the project's "
        "bench/gpu_check.json when it holds GPU figures; 'none': the assumed ones)",
    )
    p.add_argument("--chars-per-token", type=float, default=3.0)
    p.add_argument("--cache-dir", help="model cache (for aliases)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs (processes) the study runs on")
    p.add_argument(
        "--strategy",
        default="ddp",
        choices=["ddp", "fsdp", "zero3"],
        help="how training is spread over the GPUs (accelerate config)",
    )
    p.add_argument(
        "--gpu-mem-gib",
        type=float,
        default=72.0,
        help="usable memory per GPU (80 GB H100: 72 keeps ~10%% headroom)",
    )
