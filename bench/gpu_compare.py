"""The lab against what a user would run instead, on one GPU (issue 27), each pair in one
process on the same random model, data and settings. NOT YET RUN ON A GPU: prepared and
smoke-tested on the CPU only (`--smoke`); its GPU figures are pending a lent GPU.

Models: randomly initialised Qwen2 models with the published Qwen2.5-0.5B and -1.5B shapes
(lab/study/model_sizes.py PUBLISHED_SHAPES: layers, width, heads, KV heads, head size, MLP
width, vocabulary 151,936, tied embeddings), saved once; the tokenizer is the lab's
character-level one padded to the vocabulary with filler characters (prompts are ASCII, one
token a character; a random model's generations decode to filler text on both sides).

Pairs (bf16 unless `--dtypes` adds fp32; medians of `--repeats`, interleaved):
- train: LoRA (r 16, alpha 32, all linear layers) and full fine-tuning at sequence lengths
  512 and 2048 (every example exactly that long: a prompt and a CoT target of half each;
  TOKENS_PER_STEP tokens a step, 16,384 for 0.5B, 8,192 for 1.5B),
  `train.finetune.finetune` vs `transformers.Trainer` vs TRL `SFTTrainer` (bench/
  gpu_compare_train.py): tokens/s, each side's loss curve (same loss on the same batches),
  achieved FLOP/s (the lab's count of the same work) against the bf16 matmul rate;
- eval: 8-shot log-likelihood multiple choice and 8-shot greedy CoT generation on the lab's
  arithmetic task, `eval.lm.LM` vs lm-evaluation-harness's HF backend (`HFLM`, the bench/
  vs_lmeval.py harness: same model object, prompts checked equal), examples/s, same choices
  / identical outputs, achieved FLOP/s of the useful work (every request run whole);
- matmul: the bf16 (and fp32) rate of an n x n matmul on this device, measured first.

Goals (printed beside each result): training >= 1.0x the faster reference and >= 35% of
the bf16 matmul rate at sequence 2048; log-likelihood >= 3x and generation >= 2x lm-eval;
fp32: identical choices and outputs; bf16: same choice on >= 95%, identical generations on
>= 90% of examples (near-ties of a random model flip under bf16 rounding).

    bash bench/gpu_check.sh compare                    # on the GPU (wheels: bench/gpu_wheels.sh)
    python -m bench.gpu_compare --smoke                # the CPU smoke run: tiny model, few steps
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import time
from pathlib import Path
from typing import Any

SHAPES = {"0.5b": "Qwen/Qwen2.5-0.5B", "1.5b": "Qwen/Qwen2.5-1.5B"}
SMOKE_SHAPE = (2, 64, 4, 2, 16, 128, 512, 4096)  # layers, d, heads, kv, head, ff, vocab, ctx
# Tokens per optimizer step (one micro-batch, every side): full FT of the 1.5B shape at 2048
# holds fp32 weights, grads and AdamW states (~25 GB) plus activations and the references'
# logits at every position (~35 GB at 8,192 tokens): within an H100's 80 GB.
TOKENS_PER_STEP = {"0.5b": 16384, "1.5b": 8192, "smoke": 128}
GOALS = {
    "train_vs_reference": 1.0,
    "train_of_matmul_2048": 0.35,
    "ll_vs_lmeval": 3.0,
    "gen_vs_lmeval": 2.0,
    "bf16_same_choice": 0.95,
    "bf16_same_output": 0.90,
}
T0 = time.time()


# -- pure helpers (tested: tests/study/test_gpu_compare.py) ---------------------------------
def shape_row(name: str) -> tuple[int, ...]:
    from lab.study.model_sizes import PUBLISHED_SHAPES

    return SMOKE_SHAPE if name == "smoke" else PUBLISHED_SHAPES[SHAPES[name]]


def qwen2_config(row: tuple[int, ...], ids: dict[str, int]) -> Any:
    from transformers import Qwen2Config

    layers, d, heads, kv, head_dim, ff, vocab, ctx = row
    assert d == heads * head_dim, (d, heads, head_dim)
    return Qwen2Config(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=ff,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=ctx,
        rope_theta=1e6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        **ids,
    )


def filler(n: int) -> list[str]:
    """`n` distinct single characters beyond ASCII (no surrogates): vocabulary filler."""
    out, cp = [], 0x100
    while len(out) < n:
        if not 0xD800 <= cp <= 0xDFFF:
            out.append(chr(cp))
        cp += 1
    return out


def char_tokenizer(vocab: int) -> Any:
    """The lab's tiny-model tokenizer (specials + printable ASCII, one token a character),
    padded with filler characters to `vocab` entries."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    base = specials + chars
    words = base + filler(vocab - len(base))
    tk = Tokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(words)}, merges=[], unk_token="<unk>")
    )
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def long_examples(seq: int, n: int, seed: int = 0) -> list[Any]:
    """`n` examples whose CoT training sequence ("Question: q\\nAnswer:" + " r" + eos; the
    character tokenizer adds no bos) is exactly `seq` characters, i.e. tokens: half prompt,
    half target, the prompt seq // 2 tokens (random words of lower-case letters and digits)."""
    from lab.core.example import Example

    q_len = seq // 2 - len("Question: \nAnswer:")  # the prompt: seq // 2 tokens
    r_len = seq - seq // 2 - 2  # the target: " " + rationale + eos
    assert q_len >= 2 and r_len >= 2, seq
    rnd = random.Random(f"long-{seq}-{seed}")

    def text(k: int) -> str:
        s = "".join(rnd.choice(string.ascii_lowercase + string.digits + "  ") for _ in range(k))
        return "x" + s[1:-1] + "x"  # no leading/trailing blank

    return [
        Example(
            id=f"long{seq}-{i:05d}",
            question=text(q_len),
            answer="0",
            rationale=text(r_len),
            program="print(0)",
            meta={"split": "train"},
        )
        for i in range(n)
    ]


def batch_for(seq: int, tokens_per_step: int) -> int:
    """Examples per optimizer step: `tokens_per_step` tokens, at least 1."""
    return max(1, tokens_per_step // seq)


def plan_jobs(
    shapes: list[str], seqs: list[int], methods: list[str], dtypes: list[str], only: list[str]
) -> list[tuple[str, str, str, tuple]]:
    """(key, shape, "train" | "eval", parameters) in the order they run: what the goals are
    about first (training at the longest sequence, bf16 evaluation) for every shape, then
    the shorter sequences and the fp32 agreement runs, so a spent time budget drops the
    least important."""
    first, then = [], []
    for shape in shapes:
        for seq in sorted(seqs, reverse=True):
            for m in methods:
                if "train" in only:
                    job = (f"{shape}/train/{m}/{seq}", shape, "train", (seq, m))
                    (first if seq == max(seqs) else then).append(job)
        for d in dtypes:
            if "eval" in only:
                (first if d == "bf16" else then).append((f"{shape}/eval/{d}", shape, "eval", (d,)))
    return first + then


def verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} (goal >= {goal:g}: {'met' if value >= goal else 'BELOW'})"


# -- device-side phases ------------------------------------------------------------------
def matmul_rates(device: str, n: int, iters: int) -> dict[str, float]:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    out = {}
    for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = (torch.randn(n, n, device=device, dtype=dt) for _ in range(2))
        a @ b
        sync()
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        sync()
        out[name] = 2 * n**3 * iters / (time.perf_counter() - t)
    torch.backends.cuda.matmul.allow_tf32 = old
    return out


def build_model(name: str, work: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM

    path = work / f"random-{name}"
    if (path / "config.json").is_file():
        return str(path)
    row = shape_row(name)
    tok = char_tokenizer(row[6])
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # fast init on a GPU
        model = AutoModelForCausalLM.from_config(qwen2_config(row, ids), dtype=torch.float32)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def train_phase(
    args: argparse.Namespace, path: str, shape: str, seq: int, method: str, rate: float
) -> dict[str, Any]:
    from bench.common import median
    from bench.gpu_compare_train import SIDES, train_pair
    from lab.core.recipe import LoraCfg, TrainCfg

    batch = batch_for(seq, args.tokens_per_step or TOKENS_PER_STEP[shape])
    lr = 2e-4 if method == "lora" else 1e-5
    cfg = TrainCfg(
        steps=args.steps,
        batch_size=batch,
        lr=lr,
        warmup_ratio=0.1,
        lora=LoraCfg(r=16, alpha=32, dropout=0.0),
    )
    examples = long_examples(seq, batch * args.steps)
    res = train_pair(path, examples, "cot", cfg, method, "bf16", SIDES, args.repeats)
    med = {s: median([r["tokens_per_s"] for r in rs]) for s, rs in res["runs"].items() if rs}
    flops = res["runs"]["lab"][0]["flops"] if res["runs"].get("lab") else None
    best_ref = max((v for s, v in med.items() if s != "lab"), default=None)
    lab_tps = med.get("lab")
    ratio = lab_tps / best_ref if lab_tps and best_ref else None
    of_matmul = (
        {s: flops * v / res["tokens_per_run"] / rate for s, v in med.items()} if flops else {}
    )
    curves = {s: rs[0]["losses"] for s, rs in res["runs"].items() if rs}
    loss_diff = {
        s: max(abs(a - b) for a, b in zip(curves["lab"], c, strict=False))
        for s, c in curves.items()
        if s != "lab" and "lab" in curves and c
    }
    out = {
        "seq": seq,
        "method": method,
        "batch": batch,
        "steps": args.steps,
        "tokens_per_s": med,
        "vs_faster_reference": ratio,
        "of_bf16_matmul": of_matmul,
        "max_abs_loss_diff_vs_lab": loss_diff,
        **res,
    }
    goal = verdict(ratio, GOALS["train_vs_reference"])
    mm = verdict(of_matmul.get("lab"), GOALS["train_of_matmul_2048"]) if seq == 2048 else ""
    print(
        f"[gpu_compare] train {method} seq {seq} batch {batch}: tok/s "
        f"{ {s: round(v) for s, v in med.items()} }; lab vs faster reference {goal}; "
        f"lab of bf16 matmul {mm or of_matmul.get('lab')}; max |loss diff| {loss_diff}; "
        f"errors {res['errors'] or 'none'}",
        flush=True,
    )
    return out


def eval_phase(args: argparse.Namespace, path: str, dtype: str, rate: float) -> dict[str, Any]:
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from bench import vs_lmeval as V
    from bench.common import torch_dtype
    from bench.workloads import mc_requests
    from eval.lm import LM
    from lab.core.compute import flop_counter
    from lab.core.prompts import demos_prefix, prompt
    from lab.core.recipe import TaskCfg
    from lab.study.models import load_model
    from lab.tasks import build_task

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok = load_model(path, device, "fp32")
    model = model.to(torch_dtype(dtype))
    splits = build_task(TaskCfg(n_train=64, n_dev=8, n_test=max(args.n_mc, args.n_cot)))
    train, test = splits["train"][:32], splits["test"]
    V.write_data("arith_mc", train, test)
    lm = LM(model, tok, batch_size=args.eval_batch, progress=False)
    hflm = HFLM(
        pretrained=model, tokenizer=tok, batch_size=args.eval_batch, softmax_dtype=torch.float32
    )
    tm = TaskManager(include_path=str(V.TASKS))
    counter = flop_counter(model)
    n_tok = lambda s: len(tok(s).input_ids)  # noqa: E731

    reqs, _, _ = mc_requests(train, test[: args.n_mc], 8, False)
    mc_flops = sum(counter.forward(n_tok(p + q + c), n_tok(c)) for p, q, c in reqs)
    mc = V.bench_ll(
        lm,
        hflm,
        tm,
        "lab_arith_mc",
        train,
        test,
        8,
        args.n_mc,
        args.repeats,
        goal=GOALS["ll_vs_lmeval"],
    )
    cot = V.bench_cot(lm, hflm, tm, train, test, args.n_cot, args.repeats, args.max_new)
    prefix = demos_prefix(train[:8], "cot")
    cot_flops = sum(
        counter.generate(n_tok(prefix + prompt(ex)), n_tok(o) or 1)
        for ex, o in zip(test[: args.n_cot], cot["lab_outputs"], strict=True)
    )
    for r, flops, n in ((mc, mc_flops, args.n_mc), (cot, cot_flops, args.n_cot)):
        r["useful_flops"] = flops
        r["of_matmul"] = {
            "lab": flops * r["lab_ex_per_s"] / n / rate,
            "lm_eval": flops * r["lmeval_ex_per_s"] / n / rate,
        }
    same = ("same_choice", "identical")
    goals = {"fp32": (1.0, 1.0), "bf16": (GOALS["bf16_same_choice"], GOALS["bf16_same_output"])}
    print(
        f"[gpu_compare] eval {dtype}: MC {verdict(mc['ratio'], GOALS['ll_vs_lmeval'])}, same "
        f"choice {verdict(mc[same[0]], goals[dtype][0])}; CoT "
        f"{verdict(cot['ratio'], GOALS['gen_vs_lmeval'])}, identical "
        f"{verdict(cot[same[1]], goals[dtype][1])}; of {dtype} matmul: MC {mc['of_matmul']}, "
        f"CoT {cot['of_matmul']}",
        flush=True,
    )
    del lm, hflm, model
    return {"dtype": dtype, "mc": mc, "cot": cot}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny model, few steps (CPU)")
    ap.add_argument("--shapes", default="0.5b,1.5b")
    ap.add_argument("--seqs", default="512,2048")
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--dtypes", default="bf16,fp32", help="evaluation pairs")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--tokens-per-step", type=int, help="default: TOKENS_PER_STEP[shape]")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--n-mc", type=int, default=64)
    ap.add_argument("--n-cot", type=int, default=32)
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--budget-s", type=float, default=440.0, help="skip what would start later")
    ap.add_argument("--only", default="train,eval")
    ap.add_argument("--work", default=os.environ.get("GPU_COMPARE_DIR", "/tmp/gpu_compare"))
    args = ap.parse_args(argv)
    if args.smoke:
        args.shapes, args.seqs, args.steps = "smoke", "64", 3
        args.n_mc, args.n_cot, args.max_new, args.eval_batch = 4, 2, 8, 4
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        print("gpu_compare: no CUDA device visible; --smoke runs the tiny model on the CPU")
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n, iters = (8192, 20) if device == "cuda" else (256, 4)
    rates = matmul_rates(device, n, iters)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "matmul_flops": rates,
        "goals": GOALS,
        "versions": versions(),
        "args": vars(args),
        "results": {},
    }
    print(
        f"[gpu_compare] {report['device']}: matmul bf16 {rates['bf16'] / 1e12:.2f} TFLOP/s, "
        f"fp32 {rates['fp32'] / 1e12:.2f}; {report['versions']}",
        flush=True,
    )
    jobs = plan_jobs(
        args.shapes.split(","),
        [int(x) for x in args.seqs.split(",")],
        args.methods.split(","),
        args.dtypes.split(","),
        args.only.split(","),
    )
    for key, shape, kind, params in jobs:
        if time.time() - T0 > args.budget_s:
            report["results"][key] = {"status": "skipped", "reason": "time budget spent"}
            continue
        t = time.time()
        try:
            path = build_model(shape, work)
            if kind == "train":
                r = train_phase(args, path, shape, *params, rates["bf16"])
            else:
                r = eval_phase(args, path, params[0], rates[params[0]])
            report["results"][key] = {"status": "ok", **r}
        except Exception as e:  # noqa: BLE001 - reported, the other pairs still run
            report["results"][key] = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
            print(f"[gpu_compare] {key} failed: {report['results'][key]['error']}", flush=True)
        report["results"][key]["seconds"] = time.time() - t
    report["total_s"] = time.time() - T0
    text = json.dumps(report, indent=1, default=str)
    (work / "gpu_compare.json").write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_compare.json").write_text(text)
    failed = [k for k, r in report["results"].items() if r["status"] == "failed"]
    print(f"[gpu_compare] done in {report['total_s']:.0f} s; failed: {failed or 'none'}")
    return 1 if failed else 0


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "peft", "accelerate", "trl", "lm_eval"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


if __name__ == "__main__":
    raise SystemExit(main())
