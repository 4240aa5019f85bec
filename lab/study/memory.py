"""Peak GPU memory per process of every arm of a recipe, before any GPU time is spent
(`python -m lab estimate`, lab/study/estimate.py): weights, gradients, optimizer states,
activations at the recipe's micro-batch, and the KV cache of evaluation.

The lab's GPU plan (lab/core/precision.py, train/finetune.py, lab/study/run.py): one model per
process in memory at a time; training and evaluation never overlap.
- Training, LoRA: the frozen base at the study's precision, fp32 adapter, its fp32
  gradients and AdamW states (8 bytes per trainable parameter).
- Training, full: fp32 master weights, fp32 gradients, AdamW states: 16 bytes/parameter;
  under DDP also the gradient buckets (4 bytes/parameter) and, at bf16, autocast's bf16 copy
  of the weights (2); under FSDP/ZeRO-3 the 16 bytes are divided by the GPUs, plus the bf16
  weights of the units being gathered (two decoder layers, the embeddings and LM head).
- FSDP reduces gradients at its reduce dtype: bf16 under `mixed_precision: bf16` (accelerate's
  policy; DDP reduces in fp32). With `train.grad_accum` > 1 it skips the reduction between
  micro-batches and each GPU holds the full unsharded gradients of the trainable parameters
  at that dtype (+2 bytes/parameter at bf16), so under FSDP raising grad_accum from 1 costs
  more than it saves unless the activations are large. The refusal advises raising
  grad_accum only where doubling it saves at least a tenth of the excess.
- Activations: what the backward keeps per token and decoder layer, ~(5 d + 2 d_kv + 3 d_ff)
  values at the compute precision plus the fp32 inputs of the two RMSNorms (8 d bytes), for
  the micro-batch (`train.batch_size / (grad_accum x GPUs)` rows of the longest example);
  with `train.gradient_checkpointing` only each layer's input (d values) plus one layer's
  full set. The LM head's fp32 logits and their gradient on the supervised tokens.
- Evaluation: the whole model per process (evaluation is data-parallel), the KV cache of a
  generation batch (`eval.batch_size` rows of the longest prompt + max_new_tokens, the
  shared demo prefix copied per row), one layer's transient activations of a prefill.
- 1 GiB per process for the CUDA context, cuBLAS workspaces and allocator slack.

An estimate from the shapes (config.json, or the published shapes below): it does not know
the allocator's fragmentation, so keep ~10% headroom (`--gpu-mem-gib` is the usable size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.core.errors import LabError
from lab.study.model_sizes import (
    Shape,
    frame_tokens,
    model_config,
    param_counts,
    shape_of,
    token_counter,
)

GIB = 2**30
OVERHEAD = 1 * GIB

STRATEGIES = ("ddp", "fsdp", "zero3")


@dataclass(frozen=True)
class CellMemory:
    model: str
    arm: str
    method: str
    weights: float  # training (FT arms) or evaluation weights, bytes per GPU
    grads: float
    optim: float
    activations: float  # training, at the recipe's micro-batch
    kv_cache: float  # evaluation, a generation batch
    train_peak: float  # 0 for prompted arms
    eval_peak: float
    accum_saving: float = 0.0  # training bytes doubling train.grad_accum saves (< 0: costs)

    @property
    def peak(self) -> float:
        return max(self.train_peak, self.eval_peak)


@dataclass(frozen=True)
class Lengths:
    train: int  # tokens of the longest training example (prompt + target), the padded width
    target: int  # supervised tokens of the longest target
    prompt: int  # tokens of the longest evaluation prompt (demos + question)
    new: int  # max_new_tokens of that generation


def train_memory(
    sh: Shape,
    total: int,
    lora: int,
    method: str,
    b: int,
    rows: int,
    ln: Lengths,
    gpus: int,
    strategy: str,
    checkpointing: bool,
    accum: int = 1,
) -> tuple[float, float, float, float]:
    """(weights, gradients, optimizer states, activations) in bytes per GPU; `b` is the
    bytes of the compute precision (2: bf16), which is also FSDP's reduce dtype."""
    shard = gpus if strategy in ("fsdp", "zero3") else 1
    if method == "lora":
        weights, grads, optim = total * b / shard + 4 * lora, 4 * lora, 8 * lora
        if strategy == "fsdp" and accum > 1:
            grads += b * lora  # the adapter's unsharded gradients between micro-batches
    else:
        weights, grads, optim = 4 * total / shard, 4 * total / shard, 8 * total / shard
        if shard == 1:
            grads += 4 * total  # DDP's gradient buckets
            weights += 2 * total if b == 2 else 0  # autocast's bf16 copy of the weights
        else:  # gathered bf16 units in flight: two decoder layers, embeddings + LM head
            weights += b * (2 * sh.layer_params + 2 * sh.vocab * sh.d)
            if strategy == "fsdp" and accum > 1:
                grads += b * total  # unsharded, at the reduce dtype, between micro-batches
    d_kv = sh.kv_heads * sh.head_dim
    per_token_layer = b * (5 * sh.d + 2 * d_kv + 3 * sh.d_ff) + 8 * sh.d
    tokens = rows * ln.train
    if checkpointing:
        acts = tokens * (sh.layers * b * sh.d + per_token_layer)
    else:
        acts = tokens * sh.layers * per_token_layer
    acts += rows * ln.target * sh.vocab * 4 * 2  # fp32 logits + their gradient
    return weights, grads, optim, acts


def eval_memory(sh: Shape, total: int, b: int, rows: int, ln: Lengths) -> tuple[float, float]:
    """(KV cache, transient activations) in bytes per GPU of one generation batch."""
    width = ln.prompt + ln.new
    kv = (rows + 1) * width * sh.layers * 2 * sh.kv_heads * sh.head_dim * b
    transient = rows * ln.prompt * (2 * sh.d + 2 * sh.d_ff) * b + rows * sh.vocab * 4
    return kv, transient


def cell_memory(
    model: str,
    arm: Any,
    sh: Shape,
    total: int,
    lora: int,
    b: int,
    train_rows: int,
    eval_rows: int,
    ln: Lengths,
    gpus: int,
    strategy: str,
    checkpointing: bool,
    accum: int = 1,
) -> CellMemory:
    kv, transient = eval_memory(sh, total, b, eval_rows, ln)
    eval_peak = total * b + kv + transient + OVERHEAD
    if arm.method == "icl":
        return CellMemory(model, arm.name, arm.method, total * b, 0, 0, 0, kv, 0, eval_peak)
    method = "lora" if arm.method == "ttt" else arm.method  # ttt: a temporary LoRA
    args = (sh, total, lora, method, b)
    w, g, o, a = train_memory(*args, train_rows, ln, gpus, strategy, checkpointing, accum)
    doubled = train_memory(  # grad_accum x 2: half the rows per micro-batch
        *args, max(1, train_rows // 2), ln, gpus, strategy, checkpointing, 2 * accum
    )
    return CellMemory(
        model,
        arm.name,
        arm.method,
        w,
        g,
        o,
        a,
        kv,
        w + g + o + a + OVERHEAD,
        eval_peak,
        w + g + o + a - sum(doubled),
    )


def render(rows: list[CellMemory], gpus: int, strategy: str, gpu_bytes: float, b: int) -> str:
    lines = [
        f"peak memory per GPU ({gpus} GPU(s), {strategy.upper()} for training, "
        f"{'bf16' if b == 2 else 'fp32'}; usable {gpu_bytes / GIB:.0f} GiB; GiB):",
        "| model | arm | method | weights | grads | optimizer | activations | KV cache (eval) "
        "| train peak | eval peak | fits |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = f"{r.train_peak / GIB:.1f}" if r.train_peak else "-"
        lines.append(
            f"| {r.model} | {r.arm} | {r.method} | {r.weights / GIB:.1f} | {r.grads / GIB:.2f} | "
            f"{r.optim / GIB:.2f} | {r.activations / GIB:.2f} | {r.kv_cache / GIB:.2f} | {t} | "
            f"{r.eval_peak / GIB:.1f} | {'yes' if r.peak <= gpu_bytes else 'NO'} |"
        )
    return "\n".join(lines)


def check_fits(rows: list[CellMemory], gpu_bytes: float, strategy: str) -> None:
    """A plan with a cell that cannot fit is refused, naming the first such cell and fixes."""
    for r in rows:
        if r.peak <= gpu_bytes:
            continue
        if r.train_peak > r.eval_peak:
            helps = r.accum_saving > 0.1 * (r.train_peak - gpu_bytes)  # a tenth of the excess
            accum = " or raise train.grad_accum" if helps else ""
            fix = (
                f"set train.gradient_checkpointing: true, lower train.batch_size{accum}"
                + ("" if strategy != "ddp" else ", or shard it (--strategy fsdp or zero3)")
                + " or use more GPUs"
            )
            what = f"training needs {r.train_peak / GIB:.1f} GiB"
        else:
            fix = "lower eval.batch_size (or max_new_tokens, or the number of demos)"
            what = f"evaluation needs {r.eval_peak / GIB:.1f} GiB"
        raise LabError(
            f"model {r.model}, arm '{r.arm}': {what} per GPU, more than the "
            f"{gpu_bytes / GIB:.0f} GiB usable; {fix}"
        )


def plan_memory(
    recipe: Any,
    gpus: int = 1,
    strategy: str = "ddp",
    cache_dir: str | None = None,
    chars_per_token: float = 3.0,
) -> list[CellMemory]:
    """Peak memory per GPU of every (model, arm) of the recipe: its largest cell (most demos,
    longest prompts); the study's precision, `auto` taken as bf16 (a GPU with bf16)."""
    from eval.probes import probe_prompt, task_probe_max_new_tokens, task_probe_spec
    from lab.core.prompts import prompt, target, written_as
    from lab.study.plan import budget_size, fixed_split, study_data, uses_data

    if strategy not in STRATEGIES:
        raise LabError(f"--strategy {strategy!r}: use one of {list(STRATEGIES)}")
    data = study_data(recipe)
    splits, pool, evals = data.splits, data.pool, data.eval_splits
    b = 4 if recipe.precision == "fp32" else 2
    out: list[CellMemory] = []
    for spec in recipe.models:
        sz = param_counts(spec, cache_dir)
        tok = token_counter(spec, cache_dir, chars_per_token)
        sh = shape_of(spec, model_config(spec, cache_dir))
        probe_widths = []  # (prompt, new) of each probe split's longest request
        for s in data.probe_splits:
            xs, m = splits[s], splits[s][0].meta
            if "demos" in m:
                pre = tok(task_probe_spec(xs).prefix)
                new = task_probe_max_new_tokens(xs, recipe.eval.max_new_tokens)
                probe_widths.append((int(pre + max(tok(prompt(x)) for x in xs)), new))
            else:
                pre = tok(m["prefix"]) + max(tok(probe_prompt(x)) for x in xs)
                probe_widths.append((int(pre), int(m["max_new_tokens"])))
        for arm in recipe.arms:
            fmt = written_as(arm.format)
            if arm.method == "icl" and arm.fixed_demos:
                demos = list(splits.get(fixed_split(arm), []))[: int(arm.k)]
            elif arm.retrieved:  # k demos per query: the k longest are the widest prompt
                demos = sorted(pool, key=lambda e: -len(prompt(e) + target(e, fmt)))
                demos = demos[: int(arm.k)]
            elif arm.method in ("icl", "ttt"):  # ttt: prompted with the budget's demos
                budgets = recipe.budgets or [None]
                k = max(budget_size(x, arm.k, len(pool)) for x in budgets) if uses_data(arm) else 0
                demos = pool[:k]
            else:  # FT-then-ICL's demos, or an in-context FT arm's own
                demos = pool[: max(recipe.eval.ft_then_icl_k, arm.train_k)]
            pre = frame_tokens(tok, recipe.prompt, demos, fmt)  # chat: with the template
            q = max(tok(prompt(e, arm.trigger)) for s in evals for e in splits[s])
            widths = [(int(pre + q) + 1, recipe.eval.max_new_tokens[fmt]), *probe_widths]
            p_len, new = max(widths, key=lambda w: w[0] + w[1])
            lora = train_rows = checkpointing = 0
            accum = 1
            t_len = t_tgt = 0
            if arm.method == "ttt":  # the test-time adapter trains on the demos themselves
                lora, train_rows = arm.ttt.lora.r * sz.linear_io, arm.ttt.batch_size
                t_len = int(pre + max(tok(prompt(e) + target(e, fmt)) for e in demos)) + 2
                t_tgt = int(max(tok(target(e, fmt)) for e in demos)) + 1
            elif arm.method != "icl":
                cfg = recipe.train_for(arm)
                lora = cfg.lora.r * sz.linear_io if arm.method == "lora" else 0
                train_rows = max(1, cfg.batch_size // (cfg.grad_accum * gpus))
                checkpointing = cfg.gradient_checkpointing
                accum = cfg.grad_accum
                alone = frame_tokens(tok, recipe.prompt, [], fmt)  # chat: the template's turns
                t_len = int(alone + max(tok(prompt(e) + target(e, fmt)) for e in pool[:500])) + 2
                if arm.train_k:  # in-context FT: train_k demos (chat: their turns) before each
                    block = max(frame_tokens(tok, recipe.prompt, [e], fmt) for e in pool[:500])
                    t_len += arm.train_k * int(block - alone)
                t_tgt = int(max(tok(target(e, fmt)) for e in pool[:500])) + 1
            ln = Lengths(t_len, t_tgt, p_len, new)
            out.append(
                cell_memory(
                    spec,
                    arm,
                    sh,
                    sz.total,
                    lora,
                    b,
                    train_rows,
                    recipe.eval.batch_size,
                    ln,
                    gpus,
                    strategy,
                    bool(checkpointing),
                    accum,
                )
            )
    return out
