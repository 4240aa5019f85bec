"""Achieved FLOP/s per phase of evaluation and training, against the matmul rate of the dtype.

    nice -n 5 .venv/bin/python -m bench.phases [--dtype fp32|bf16] [--threads 2] [--cache-dir DIR]

One process, SmolLM2-135M-Instruct through lab.study.models, cast here to `--dtype` (independent
of the lab's precision setting; training runs fp32 weights under bf16 autocast). First the
median 2048-square matmul rate of that dtype at `--threads` (bench.common.matmul_rate), then
per workload the phases of eval/lm.py (`LM.clock`, eval/phases.py) and training steps:

- prefix: shared-prefix forwards; scored: log-likelihood batches; prefill / decode:
  generation's prompt forward and its steps; train: full-FT steps (forward, backward, AdamW).
- FLOPs = 2 x body parameters x tokens + 2 x LM head x head positions + 4 x layers x
  attention width x attended (query, key) pairs (the useful work: padding, masked keys and
  the head at unscored positions are not counted); training x 3 (forward + backward).

Goals at 2 threads: >= 50% of the matmul rate for scored batches and generation at batch
>= 8, >= 40% for training. Workloads (defaults small for a shared machine: raise --n):
mc_short_k8 (shared demos), mc_short_k8_pe (a demo set per example), mc_short_k32,
mc_arith_k8, cot_k8 (greedy, <= 48 new tokens; cot_k8_b32: the same in batches of 32),
train_answer and train_cot (full FT). Each decode phase also prints two ceilings measured in
the process: streaming the weights once per step at the measured read bandwidth, and the
model's own linear layers run alone at the phase's mean batch (`linear_rate`).
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import torch

from bench.common import (
    DTYPES,
    Timer,
    header,
    load_lab_model,
    matmul_rate,
    median,
    read_bandwidth,
    save,
    torch_dtype,
)
from bench.workloads import mc_requests, short_examples
from eval.lm import LM, GenRequest
from lab.core.compute import flop_counter
from lab.core.prompts import demos_prefix, prompt
from lab.core.recipe import TaskCfg
from lab.tasks import build_task

GOALS = {"scored": 0.5, "prefill": 0.5, "decode": 0.5, "train": 0.4}


def attn_width(model: Any) -> tuple[int, int]:
    """(layers, query width: heads x head dim) of the decoder."""
    cfg = getattr(model.config, "text_config", model.config)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_hidden_layers, cfg.num_attention_heads * head_dim


def phase_flops(model: Any, tokens: int, head: int, pairs: int) -> float:
    counter = flop_counter(model)
    layers, width = attn_width(model)
    return counter.forward(tokens, head) + 4.0 * layers * width * pairs


def decode_ceiling(model: Any, steps: float, flops: float, rate: float, bandwidth: float) -> float:
    """The fraction of the matmul rate a decode phase (`steps` steps, `flops` in all) can
    reach when every step streams the weights once (roofline: FLOPs per step / (weight
    bytes / bandwidth), over the rate); the KV cache reads, ignored here, only lower it."""
    weight_bytes = sum(t.numel() * t.element_size() for t in model.parameters())
    return min(1.0, flops / max(steps, 1) / (weight_bytes / bandwidth) / rate)


def linear_rate(model: Any, rows: int, repeats: int = 3) -> float:
    """FLOP/s of the model's own linear layers (as evaluation runs them: eval/packed.py's
    packed bf16 weights where they apply) on `rows` input rows, one layer after another as
    a decoding step reads them: the rate a decode step at that batch could reach if nothing
    but its matmuls ran (attention, norms, the step's Python excluded). The first pass
    warms up; the median of the next `repeats`."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    dtype = next(model.parameters()).dtype
    xs = {n: torch.randn(rows, n).to(dtype) for n in {m.in_features for m in layers}}
    flops = sum(2.0 * rows * m.in_features * m.out_features for m in layers)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            with Timer() as t:
                for m in layers:
                    m(xs[m.in_features])
            times.append(t.s)
    return flops / median(times[1:])


def report(
    name: str,
    phases: dict[str, dict[str, float]],
    model: Any,
    rate: float,
    bandwidth: float | None = None,
) -> dict:
    out = {}
    for ph, p in phases.items():
        flops = phase_flops(model, int(p["tokens"]), int(p["head"]), int(p["attn_pairs"]))
        flops *= 3.0 if ph == "train" else 1.0
        frac = flops / p["s"] / rate
        out[ph] = {**p, "flops": flops, "flops_per_s": flops / p["s"], "fraction": frac}
        goal = GOALS.get(ph)
        mark = (
            ""
            if goal is None
            else (" (goal >= {:.0%}: {})".format(goal, "met" if frac >= goal else "NOT met"))
        )
        if ph == "decode" and bandwidth:
            ceil = decode_ceiling(model, p["calls"], flops, rate, bandwidth)
            mean_batch = p["tokens"] / max(p["calls"], 1)
            lin = linear_rate(model, max(1, round(mean_batch))) / rate
            out[ph]["weight_streaming_ceiling"] = ceil
            out[ph]["linear_layers_alone"] = lin
            mark += (
                f"; mean batch {mean_batch:.1f}, weight-streaming ceiling {ceil:.0%}, "
                f"its linear layers alone at that batch {lin:.0%}"
            )
        print(
            f"[phases] {name:>14} {ph:>7}: {int(p['calls']):4d} calls {int(p['tokens']):7d} tok "
            f"{p['s']:7.2f} s {flops / 1e9:8.1f} GFLOP {flops / p['s'] / 1e9:7.1f} GFLOP/s "
            f"= {frac:5.1%} of the matmul rate{mark}"
        )
    return out


def run_eval(lm: LM, what: str, fn: Any, model: Any, rate: float, bandwidth: float) -> dict:
    lm.clock.reset()
    with Timer() as t:
        fn()
    res = report(what, dict(lm.clock.phases), model, rate, bandwidth)
    print(f"[phases] {what:>14}   total: {t.s:.2f} s wall")
    return {"wall_s": t.s, "phases": res}


def run_train(path: str, data: list, steps: int, batch: int, dtype: str, pad: int) -> tuple:
    """Full-FT steps as train/finetune.py runs them (packed micro-batches, supervised head)."""
    from transformers import AutoModelForCausalLM

    from train.batching import collate_micro
    from train.loss import SupervisedLoss

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False
    model.train()
    loss_fn = SupervisedLoss(model, reduction="sum")
    optim = torch.optim.AdamW(model.parameters(), lr=1e-5)
    cast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    )
    tot = {"calls": 0, "s": 0.0, "tokens": 0, "head": 0, "attn_pairs": 0}
    for step in range(steps + 1):  # the first step warms up and is not counted
        chunk = data[step * batch : (step + 1) * batch]
        b = collate_micro(chunk, pad, pack=True)
        with Timer() as t:
            with cast:
                loss = loss_fn(**b)
            loss.backward()
            optim.step()
            optim.zero_grad()
        if step:
            lengths = [len(x["input_ids"]) for x in chunk]
            tot["calls"] += 1
            tot["s"] += t.s
            tot["tokens"] += sum(lengths)
            tot["head"] += int((b["labels"][:, 1:] != -100).sum())
            tot["attn_pairs"] += sum(n * (n + 1) // 2 for n in lengths)
    return {"train": tot}, model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="fp32", choices=DTYPES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n", type=int, default=16, help="examples per evaluation workload")
    ap.add_argument("--train-steps", type=int, default=2)
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--only", nargs="*", help="workload names to run (default: all)")
    ap.add_argument("--cache-dir")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = header("phases")
    info.update(vars(args))
    rate = matmul_rate(args.dtype)
    info["matmul_rate"] = rate
    bandwidth = info["read_bandwidth"] = read_bandwidth()
    print(
        f"[phases] {args.dtype} 2048-square matmul at {args.threads} threads: "
        f"{rate / 1e9:.1f} GFLOP/s; memory read bandwidth {bandwidth / 1e9:.1f} GB/s"
    )
    resolved, model, tok = load_lab_model(args.cache_dir)
    model = model.to(torch_dtype(args.dtype))
    lm = LM(model, tok, batch_size=args.batch_size, progress=False)
    arith = build_task(TaskCfg(n_train=64, n_dev=8, n_test=args.n))
    s_train, s_test = short_examples(64, "train"), short_examples(args.n, "test")
    n = args.n

    def mc(train: list, test: list, k: int, pe: bool) -> Any:
        reqs = mc_requests(train, test[:n], k, pe)[0]
        return lambda: lm.loglikelihood(reqs)

    cot_prefix = demos_prefix(arith["train"][:8], "cot")
    cot = [GenRequest(cot_prefix, prompt(ex), ("\n",), args.max_new) for ex in arith["test"][:n]]
    lm32 = LM(model, tok, batch_size=32, progress=False)
    lm32.clock = lm.clock  # one clock: run_eval resets and reads it
    work = {
        "mc_short_k8": mc(s_train, s_test, 8, False),
        "mc_short_k8_pe": mc(s_train, s_test, 8, True),
        "mc_short_k32": mc(s_train, s_test, 32, False),
        "mc_arith_k8": mc(arith["train"], arith["test"], 8, False),
        "cot_k8": lambda: lm.generate(cot),
        "cot_k8_b32": lambda: lm32.generate(cot),  # the same requests, batches of 32
    }
    results: dict[str, Any] = {}
    for name, fn in work.items():
        if not args.only or name in args.only:
            results[name] = run_eval(lm, name, fn, model, rate, bandwidth)
    from train.data import Encoder

    for fmt in ("answer", "cot"):
        name = f"train_{fmt}"
        if args.only and name not in args.only:
            continue
        encode = Encoder(fmt, tok, lm.bos)
        data = [encode(ex) for ex in arith["train"]]
        need = (args.train_steps + 1) * args.batch_size
        data = (data * (need // len(data) + 1))[:need]
        phases, tmodel = run_train(
            resolved.path, data, args.train_steps, args.batch_size, args.dtype, tok.pad_token_id
        )
        results[name] = {"phases": report(name, phases, tmodel, rate)}
    info["workloads"] = results
    save(f"phases_{args.dtype}", info)


if __name__ == "__main__":
    main()
