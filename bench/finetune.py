"""LoRA fine-tuning: this lab's loop vs the HF Trainer; full-FT FLOP/s vs a matmul peak.

    nice -n 5 .venv/bin/python -m bench.finetune [--steps 6] [--repeats 3] [--dtype fp32|bf16]
        [--cache-dir DIR]

Both sides train SmolLM2-135M-Instruct (loaded from the lab's cache) on the same arithmetic
examples in the same order (`train.data.epoch_order`), tokenised and padded by the same code
(`train.data.Encoder`, `collate`), with the same LoRA config (lab.core.recipe defaults,
dropout 0 so that the two loss curves are comparable), AdamW, lr, linear warmup/decay,
grad clipping and seed. The only difference is the training loop: `train.finetune.finetune`
(LM head and loss on the supervised tokens only) vs `transformers.Trainer` (the model's own
loss: LM head at every position). Each run is timed end to end as a user calls it: load the
model, wrap it with LoRA, train, save the adapter. Runs alternate lab, HF, lab, HF, ...

Full FT: `finetune(method="full")` FLOPs (lab.core.compute's count) per second of its training
time, against the median matmul rate of the dtype measured here with the same thread count.
`--dtype bf16`: both sides (and full FT) run under `torch.autocast("cpu", torch.bfloat16)`
(fp32 weights), set here, independent of the lab's precision setting.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile

import torch

from bench.common import DTYPES, Timer, header, matmul_rate, median, save
from lab.core.recipe import LoraCfg, TaskCfg, TrainCfg
from lab.tasks import build_task


def hf_trainer_run(path: str, data: list, order: list[int], cfg: TrainCfg, seed: int, out: str):
    """The reference: transformers.Trainer on the same data, order, batches and LoRA."""
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    from bench.gpu_compare_train import trainer_args
    from train.data import collate
    from train.optim import lora_model

    class InOrderTrainer(Trainer):  # the lab's order (Trainer would reshuffle)
        def _get_train_sampler(self, *args, **kwargs):  # noqa: ANN002, ANN003
            return torch.utils.data.SequentialSampler(self.train_dataset)

    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(path)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False
    model = lora_model(model, cfg.lora)
    args = trainer_args("hf_trainer", cfg, seed, out, bf16=False)  # as gpu_compare_train
    trainer = InOrderTrainer(
        model=model,
        args=args,
        train_dataset=[data[i] for i in order],
        data_collator=lambda b: collate(b, pad_id),
    )
    trainer.train()
    model.save_pretrained(out)
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--format", default="answer", choices=["answer", "cot"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full-steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (shared machine: 1)")
    ap.add_argument("--dtype", default="fp32", choices=DTYPES, help="autocast dtype, both sides")
    ap.add_argument("--cache-dir")
    args = ap.parse_args()

    def cast() -> contextlib.AbstractContextManager:
        if args.dtype == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    torch.set_num_threads(args.threads)

    from lab.study.models import resolve_model
    from train.data import Encoder, epoch_order
    from train.finetune import finetune

    info = header("finetune")
    resolved = resolve_model("smollm2-135m-instruct", args.cache_dir)
    train = build_task(TaskCfg(n_train=512, n_dev=8, n_test=8))["train"]
    cfg = TrainCfg(steps=args.steps, batch_size=args.batch_size, lr=2e-3, lora=LoraCfg(dropout=0.0))
    seed = 0
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolved.path)
    order = epoch_order(len(train), cfg.steps * cfg.batch_size, seed)
    # finetune() draws this same epoch_order over the pool it is given; the HF side gets it.
    encode = Encoder(args.format, tok, [])
    data = [encode(ex) for ex in train]
    tokens = sum(len(data[i]["input_ids"]) for i in order)
    print(
        f"[finetune] {cfg.steps} steps x batch {cfg.batch_size}, format {args.format}: "
        f"{tokens} tokens per run ({len(order)} examples)"
    )

    runs: dict[str, list[dict]] = {"lab": [], "hf_trainer": []}
    for rep in range(args.repeats):
        for side in ("lab", "hf_trainer"):
            with tempfile.TemporaryDirectory(prefix=f"bench-ft-{side}-") as d, cast(), Timer() as t:
                if side == "lab":
                    res = finetune(
                        resolved.path, train, args.format, "lora", cfg, seed, d, progress=False
                    )
                    losses = res.losses
                    assert res.train_tokens == tokens, (res.train_tokens, tokens)
                else:
                    losses = hf_trainer_run(resolved.path, data, order, cfg, seed, d)
            runs[side].append({"wall_s": t.s, "tokens_per_s": tokens / t.s, "losses": losses})
            print(
                f"[finetune] repeat {rep} {side:>10}: {t.s:7.2f} s, {tokens / t.s:7.1f} tok/s, "
                f"losses {[round(x, 4) for x in losses]}"
            )
    lab_tps = median([r["tokens_per_s"] for r in runs["lab"]])
    hf_tps = median([r["tokens_per_s"] for r in runs["hf_trainer"]])
    diffs = [
        abs(a - b)
        for a, b in zip(runs["lab"][0]["losses"], runs["hf_trainer"][0]["losses"], strict=True)
    ]
    info["lora"] = {
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "format": args.format,
        "tokens_per_run": tokens,
        "runs": runs,
        "lab_tokens_per_s": lab_tps,
        "hf_tokens_per_s": hf_tps,
        "ratio": lab_tps / hf_tps,
        "goal": 1.0,
        "max_abs_loss_diff": max(diffs),
    }
    print(
        f"[finetune] LoRA tokens/s: lab {lab_tps:.1f} vs HF Trainer {hf_tps:.1f} = "
        f"{lab_tps / hf_tps:.2f}x (goal >= 1.0x); max |loss diff| {max(diffs):.2e}"
    )

    # Full FT: achieved FLOP/s of the training loop vs a measured matmul peak.
    peak = matmul_rate(args.dtype)
    full_cfg = TrainCfg(steps=args.full_steps, batch_size=args.batch_size, lr=3e-5)
    from transformers import AutoModelForCausalLM

    loads = []
    for _ in range(2):
        with Timer() as t:
            AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32)
        loads.append(t.s)
    with tempfile.TemporaryDirectory(prefix="bench-ft-full-") as d, cast(), Timer() as t:
        res = finetune(resolved.path, train, args.format, "full", full_cfg, seed, d, progress=False)
    save_and_load = median(loads)
    achieved = res.flops / res.wall_s
    achieved_loop = res.flops / max(res.wall_s - save_and_load, 1e-9)
    info["full"] = {
        "steps": full_cfg.steps,
        "flops": res.flops,
        "wall_s": res.wall_s,
        "model_load_s": save_and_load,
        "matmul_peak_flops": peak,
        "achieved_flops_per_s": achieved,
        "fraction_of_peak": achieved / peak,
        "achieved_excluding_load": achieved_loop,
        "fraction_of_peak_excluding_load": achieved_loop / peak,
    }
    print(
        f"[finetune] {args.dtype} matmul peak {peak / 1e9:.1f} GFLOP/s; full FT {res.flops / 1e9:.0f} "
        f"GFLOP in {res.wall_s:.1f} s = {achieved / 1e9:.1f} GFLOP/s ({achieved / peak:.0%} of "
        f"peak; {achieved_loop / peak:.0%} without the {save_and_load:.1f} s model load)"
    )
    info["dtype"] = args.dtype
    save(f"finetune_{args.dtype}" if args.dtype != "fp32" else "finetune", info)


if __name__ == "__main__":
    main()
