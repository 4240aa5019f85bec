"""The GPU check (run by bench/gpu_check.sh): one prepared run on a single H100/H200 that
exercises the lab's GPU path and measures it, with no network and no package index.

Phases (each timed, each reported ok / failed with its error line / skipped; one failure
does not stop the others):
  env        torch, CUDA, the device, library versions
  matmul     the bf16 (and fp32, TF32 off) matmul rate of this device, measured now: the
             yardstick the training FLOP/s are compared with
  build      a tiny random model (lab's `tiny-random`) and a randomly initialised ~0.47B
             Llama (24 layers, d=1024; the tiny model's character tokenizer) from configs
  tiny       a smoke study of the tiny model (LoRA + full, bf16), `accelerate launch`, 1 process
  lora       the ~0.5B model: an 8-shot ICL arm and a LoRA arm, bf16, plain `accelerate
             launch --mixed_precision bf16`, 1 process
  full       the ~0.5B model, full fine-tuning, bf16, accelerate_config.yaml (the DDP
             template) with 1 process
  fsdp       the same full fine-tuning under accelerate_config_fsdp.yaml (FSDP2), 1 process
  agree      the `full` phase's selected checkpoint evaluated in fp32 and in bf16: shares of
             equal answers, |log p(gold)| differences, eval examples/s of each
  split      the shared-prefix split attention on the device (bench/gpu_split.py): agreement
             with one plain softmax per row (fp32, bf16), 8-shot CoT generations of the ~0.5B
             model split vs the prefix repeated per row (fp32: identical; examples/s of each)
With `--cpu`: the tiny model only (tiny study with `accelerate launch --cpu`, agreement on
its full-FT checkpoint); the ~0.5B and FSDP phases are skipped (accelerate runs FSDP on
accelerators only). Figures: train tokens/s and achieved FLOP/s over the training loop
(the lab's own FLOP accounting, lab/core/compute.py), eval examples/s over a cell's whole
evaluation, peak memory of the launched process. Summary table on stdout; JSON in
$OUT/gpu_check.json when $OUT is set (and in the work directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 450.0  # the whole check; the shell wrapper kills it at 480 s
SPLITS = ("test", "ood_digits", "ood_steps", "ood_phrasing")
T0 = time.time()


def left() -> float:
    return BUDGET_S - (time.time() - T0)


# -- phases -------------------------------------------------------------------------------
def phase_env(ctx: dict[str, Any]) -> dict[str, Any]:
    import accelerate
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        import peft

        info["peft"] = peft.__version__
    except ImportError as e:
        info["peft"] = f"missing ({e})"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(
            device=p.name,
            gpu_memory_gib=round(p.total_memory / 2**30, 1),
            bf16=torch.cuda.is_bf16_supported(),
            gpus=torch.cuda.device_count(),
        )
    from lab.core import precision

    info["cpu_fast_bf16"] = precision.cpu_has_fast_bf16()
    info["precision_auto"] = precision.resolve("auto", use_cpu=ctx["cpu"])
    return info


def phase_matmul(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    dev = "cpu" if ctx["cpu"] else "cuda"
    n, iters = (1024, 4) if ctx["cpu"] else (8192, 20)
    out: dict[str, Any] = {"n": n}
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        for _ in range(2):
            a @ b
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        sync()
        t = time.perf_counter()
        for _ in range(iters if name == "bf16" else max(2, iters // 4)):
            a @ b
        sync()
        k = iters if name == "bf16" else max(2, iters // 4)
        out[f"{name}_tflops"] = 2 * n**3 * k / (time.perf_counter() - t) / 1e12
        del a, b
    ctx["matmul_bf16"] = out["bf16_tflops"] * 1e12
    return out


def phase_build(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lab.study.models import resolve_model

    tiny = resolve_model("tiny-random", ctx["work"] / "cache").path
    ctx["models"] = {"tiny": tiny}
    out: dict[str, Any] = {"tiny": tiny}
    if ctx["cpu"]:
        return out
    tok = AutoTokenizer.from_pretrained(tiny)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=1024,
        intermediate_size=5504,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    path = ctx["work"] / "random-0.5b"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    out["random_0.5b_params"] = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    ctx["models"]["0.5b"] = str(path)
    return out


def recipe(
    name: str, model: str, arms: list[dict], steps: int, batch: int, n_test: int, eval_batch: int
) -> dict[str, Any]:
    return {
        "name": f"gpu_check_{name}",
        "model": model,
        "precision": "bf16",
        "task": {
            "name": "arithmetic",
            "seed": 0,
            "n_train": 1024,
            "n_dev": 32,
            "n_test": n_test,
            "params": {"ops": "+-"},
        },
        "seeds": [0],
        "arms": arms,
        "train": {
            "steps": steps,
            "batch_size": batch,
            "lr": 2e-3,
            "warmup_ratio": 0.1,
            "eval_every": max(1, steps // 2),
            "save_every": 0,
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        },
        "eval": {"batch_size": eval_batch, "max_new_tokens": {"answer": 8, "cot": 48, "code": 48}},
        "tracking": {"mode": "disabled"},
    }


LORA = {"name": "lora", "method": "lora", "format": "answer"}
FULL = {"name": "full", "method": "full", "format": "answer", "train": {"lr": 1e-4}}
ICL = {"name": "icl8", "method": "icl", "format": "answer", "k": 8}


def launch(
    ctx: dict[str, Any], name: str, rec: dict[str, Any], config: str | None, timeout: float
) -> dict[str, Any]:
    """Run one study under `accelerate launch` (1 process) and collect its figures."""
    work = ctx["work"] / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "recipe.yaml").write_text(json.dumps(rec, indent=1))  # JSON is YAML
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config:
        cmd += ["--config_file", str(ROOT / config)]
    elif ctx["cpu"]:
        cmd += ["--cpu", "--mixed_precision", "no"]
    else:
        cmd += ["--mixed_precision", "bf16"]
    cmd += ["--num_processes", "1", "--num_machines", "1", "--dynamo_backend", "no"]
    cmd += [str(ROOT / "bench" / "gpu_study.py"), str(work / "recipe.yaml"), str(work / "out")]
    run(cmd, work / "log.txt", timeout, ctx)
    return figures(ctx, work / "out")


def run(cmd: list[str], log: Path, timeout: float, ctx: dict[str, Any]) -> None:
    env = {
        **os.environ,
        "FTLAB_CACHE": str(ctx["work"] / "cache"),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    if ctx["cpu"]:
        env.update(ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="")
    with open(log, "w") as f:
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=max(timeout, 5)
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {timeout:.0f} s (log {log})") from None
    if ctx.get("out"):
        shutil.copy(log, Path(ctx["out"]) / f"gpu_check_{log.parent.name}.log")
    if proc.returncode != 0:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
        errs = [x for x in lines if "Error" in x or "error:" in x]
        print(f"--- {log.parent.name}: last lines of {log} ---", flush=True)
        print("\n".join(lines[-15:]), flush=True)
        raise RuntimeError(f"exit {proc.returncode}: {(errs or lines or ['?'])[-1][:300]}")


def figures(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    """Per cell: train tokens/s, achieved FLOP/s (and share of the bf16 matmul rate), eval
    examples/s; the process's peak memory."""
    res: dict[str, Any] = {"cells": {}}
    for path in sorted(out.glob("cells/*/cell.json")):
        c = json.loads(path.read_text())
        cell: dict[str, Any] = {}
        tr = c.get("train") or {}
        if tr.get("loop_s"):
            cell["train_tokens_per_s"] = tr["train_tokens"] / tr["loop_s"]
            cell["train_flops_per_s"] = tr["flops"] / tr["loop_s"]
            if ctx.get("matmul_bf16"):
                cell["train_vs_matmul"] = cell["train_flops_per_s"] / ctx["matmul_bf16"]
            cell["train_loop_s"], cell["steps"] = tr["loop_s"], tr["steps"]
            cell["final_loss"] = tr["losses"][-1]
        n = sum(m["n"] for k, m in c["metrics"].items() if k.split("/")[-1] in SPLITS)
        cell["eval_examples"] = n
        cell["eval_s"] = c["compute"]["eval_s"]
        cell["eval_examples_per_s"] = n / max(c["compute"]["eval_s"], 1e-9)
        # in the lab's accounting (no shared-prefix cache), the rate `lab estimate` divides by
        accounted = sum(
            m["n"] * m.get("flops_per_example", 0.0)
            for m in c["metrics"].values()
            if "flops_per_example" in m
        )
        cell["eval_accounted_flops_per_s"] = accounted / max(c["compute"]["eval_s"], 1e-9)
        cell["exact_match_test"] = next(
            (m["exact_match"] for k, m in c["metrics"].items() if k.endswith("/test")), None
        )
        res["cells"][c["cell"]["arm"]] = cell
    if not res["cells"]:
        raise RuntimeError(f"no finished cell in {out}")
    peak = out / "peak.json"
    if peak.is_file():
        res["peak"] = json.loads(peak.read_text())
    res["checkpoints"] = {p.parent.name: str(p) for p in out.glob("cells/*/checkpoint")}
    return res


def phase_tiny(ctx: dict[str, Any]) -> dict[str, Any]:
    arms = [LORA, FULL] + ([] if ctx["cpu"] else [ICL])
    rec = recipe("tiny", ctx["models"]["tiny"], arms, 4, 8, 8 if ctx["cpu"] else 32, 16)
    res = launch(ctx, "tiny", rec, None, min(150, left()))
    ctx["agree_ckpt"] = (ctx["models"]["tiny"], selected(ctx["work"] / "tiny" / "out", "full"))
    return res


def big(ctx: dict[str, Any], name: str, arms: list[dict], config: str | None) -> dict[str, Any]:
    if ctx["cpu"]:
        raise Skip("--cpu: the ~0.5B model runs on a GPU only")
    if "0.5b" not in ctx.get("models", {}):
        raise Skip("the ~0.5B model was not built")
    rec = recipe(name, ctx["models"]["0.5b"], arms, 30, 32, 256, 64)
    return launch(ctx, name, rec, config, min(170, left()))


def phase_lora(ctx: dict[str, Any]) -> dict[str, Any]:
    return big(ctx, "lora", [ICL, LORA], None)  # plain `accelerate launch --mixed_precision bf16`


def phase_full(ctx: dict[str, Any]) -> dict[str, Any]:
    res = big(ctx, "full", [FULL], "accelerate_config.yaml")
    ctx["agree_ckpt"] = (ctx["models"]["0.5b"], selected(ctx["work"] / "full" / "out", "full"))
    return res


def phase_fsdp(ctx: dict[str, Any]) -> dict[str, Any]:
    if ctx["cpu"]:
        raise Skip("--cpu: accelerate runs FSDP on accelerators only")
    return big(ctx, "fsdp", [FULL], "accelerate_config_fsdp.yaml")


def selected(out: Path, arm: str) -> str:
    """The checkpoint the study evaluated as its choice (best-dev, else the last)."""
    (cell,) = out.glob(f"cells/{arm}*/cell.json")
    tr = json.loads(cell.read_text())["train"]
    return tr.get("best_checkpoint") or tr["checkpoint"]


def phase_agree(ctx: dict[str, Any]) -> dict[str, Any]:
    if "agree_ckpt" not in ctx:
        raise Skip("no fine-tuned checkpoint (its phase failed)")
    base, ckpt = ctx["agree_ckpt"]
    work = ctx["work"] / "agree"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    n, batch = (16, 16) if ctx["cpu"] else (128, 64)
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "gpu_agree.py"),
        base,
        ckpt,
        "full",
        str(work / "agree.json"),
        str(n),
        str(batch),
    ]
    run(cmd, work / "log.txt", min(150, left()), ctx)
    return {"checkpoint": ckpt, **json.loads((work / "agree.json").read_text())}


def phase_split(ctx: dict[str, Any]) -> dict[str, Any]:
    import gpu_split  # bench/ is this script's folder

    if "models" not in ctx:
        raise Skip("no model (the build phase failed)")
    return gpu_split.phase(ctx)


class Skip(Exception):  # noqa: N818 - a phase that does not apply here
    pass


PHASES = [("env", phase_env), ("matmul", phase_matmul), ("build", phase_build),
          ("tiny", phase_tiny), ("lora", phase_lora), ("full", phase_full),
          ("fsdp", phase_fsdp), ("agree", phase_agree), ("split", phase_split)]  # fmt: skip


# -- driver -------------------------------------------------------------------------------
def gib(x: float | None) -> str:
    return f"{x / 2**30:.1f}" if x else "-"


def table(results: dict[str, dict[str, Any]]) -> str:
    """The summary: one line per phase (and per trained/evaluated cell of a study)."""
    lines = [
        "| phase | status | s | cell | train tok/s | train TFLOP/s (of bf16 matmul) | "
        "eval ex/s | peak GiB | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        head = f"| {name} | {r['status']} | {r['seconds']:.0f} |"
        note = r.get("error") or r.get("reason") or ""
        fig = r.get("figures") or {}
        cells = fig.get("cells") or {}
        peak = (fig.get("peak") or {}).get("gpu_max_allocated") or (fig.get("peak") or {}).get(
            "cpu_max_rss"
        )
        if not cells:
            if name == "matmul" and fig:
                note = f"bf16 {fig['bf16_tflops']:.1f} TFLOP/s, fp32 {fig['fp32_tflops']:.1f}"
            if name == "agree" and fig:
                note = (
                    f"same answer {fig['same_pred']:.1%}, same correctness "
                    f"{fig['same_correct']:.1%} of {fig['examples']}; |d log p(gold)| max "
                    f"{fig['gold_logprob_max_abs_diff']:.3g} mean "
                    f"{fig['gold_logprob_mean_abs_diff']:.3g}; eval ex/s fp32 "
                    f"{fig['eval_examples_per_s']['fp32']:.1f}, bf16 "
                    f"{fig['eval_examples_per_s']['bf16']:.1f}"
                )
            if name == "env" and fig:
                note = ", ".join(f"{k}={v}" for k, v in fig.items())
            lines.append(f"{head} | | | | | {note[:400]} |")
            continue
        for arm, c in cells.items():
            tps = f"{c['train_tokens_per_s']:,.0f}" if "train_tokens_per_s" in c else "-"
            fl = (
                f"{c['train_flops_per_s'] / 1e12:.2f} ({c.get('train_vs_matmul', 0):.1%})"
                if "train_flops_per_s" in c
                else "-"
            )
            lines.append(
                f"{head} {arm} | {tps} | {fl} | {c['eval_examples_per_s']:.1f} | {gib(peak)} | "
                f"{c['eval_examples']} eval ex, EM(test) {c['exact_match_test']}"
                + (
                    f", peak/estimate {fig['peak_vs_estimate']:.2f}"
                    if "peak_vs_estimate" in fig
                    else ""
                )
                + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="the tiny model on the CPU (CI)")
    ap.add_argument("--work", default=os.environ.get("GPU_CHECK_DIR", "/tmp/gpu_check"))
    ap.add_argument(
        "--sharded",
        action="store_true",
        help="ZeRO-3, FSDP LoRA, FSDP resume (bench/gpu_sharded.py) instead",
    )
    args = ap.parse_args(argv)
    phases = PHASES
    if args.sharded:
        import gpu_sharded  # bench/ is this script's folder

        phases = PHASES[:3] + gpu_sharded.phases(sys.modules[__name__])
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
    ctx: dict[str, Any] = {"cpu": args.cpu, "work": work, "out": out}
    if not args.cpu:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible; run with --cpu for the CPU check")
            return 2
    results: dict[str, dict[str, Any]] = {}
    for name, fn in phases:
        t = time.time()
        print(f"[gpu_check] {name} ... ({time.time() - T0:.0f} s elapsed)", flush=True)
        try:
            if left() < 20 and name not in ("env",):
                raise Skip(f"no time left in the {BUDGET_S:.0f} s budget")
            r = {"status": "ok", "figures": fn(ctx)}
        except Skip as e:
            r = {"status": "skipped", "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - a phase's failure is reported, not fatal
            traceback.print_exc()
            r = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
        r["seconds"] = time.time() - t
        results[name] = r
        print(
            f"[gpu_check] {name}: {r['status']} ({r['seconds']:.0f} s) "
            f"{r.get('error') or r.get('reason') or ''}",
            flush=True,
        )
    report = {
        "mode": ("cpu" if args.cpu else "gpu") + (" sharded" if args.sharded else ""),
        "total_s": time.time() - T0,
        "phases": results,
    }
    text = json.dumps(report, indent=1, default=str)
    (work / "gpu_check.json").write_text(text)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.json").write_text(text)
    print(f"\n[gpu_check] summary ({report['mode']}, {report['total_s']:.0f} s):")
    print(table(results))
    failed = [n for n, r in results.items() if r["status"] == "failed"]
    print(f"[gpu_check] failed phases: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
