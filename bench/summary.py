"""Print the markdown tables of bench/RESULTS.md from the raw figures in runs/bench/*.json.

.venv/bin/python -m bench.summary
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.common import OUT


def fmt_times(xs: list[float]) -> str:
    return ", ".join(f"{x:.1f}" for x in xs)


def print_cells(runs: dict[str, list[dict]]) -> None:
    """Per cell of the quickstart: median train and eval seconds, before vs after (from
    each run's cells/*/cell.json, when the run directories are still there)."""
    per: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for mode, rs in runs.items():
        for r in rs:
            for p in sorted(Path(r["out"]).glob("cells/*/cell.json")):
                c = json.loads(p.read_text())["compute"]
                per.setdefault(p.parent.name, {}).setdefault(mode, []).append(
                    (c.get("train_s", 0.0), c.get("eval_s", 0.0))
                )
    if not per:
        return
    print("| cell | train s before / after | eval s before / after | eval speed-up |")
    print("|---|---|---|---|")
    for cell, m in per.items():
        tb, eb = (statistics.median(x) for x in zip(*m["before"], strict=True))
        ta, ea = (statistics.median(x) for x in zip(*m["after"], strict=True))
        print(f"| {cell} | {tb:.0f} / {ta:.0f} | {eb:.0f} / {ea:.0f} | {eb / ea:.1f}x |")


def print_phases(d: dict) -> None:
    """bench/phases.py: achieved FLOP/s per workload and phase vs the dtype's matmul rate."""
    print(
        f"{d['dtype']} matmul rate at {d['threads']} threads: "
        f"{d['matmul_rate'] / 1e9:.1f} GFLOP/s\n"
    )
    print("| workload | phase | calls | tokens | s | GFLOP/s | of matmul rate |")
    print("|---|---|---|---|---|---|---|")
    for w, r in d["workloads"].items():
        for ph, p in r["phases"].items():
            print(
                f"| {w} | {ph} | {int(p['calls'])} | {int(p['tokens'])} | {p['s']:.2f} | "
                f"{p['flops_per_s'] / 1e9:.1f} | {p['fraction']:.0%} |"
            )


def main() -> None:
    names = ["vs_lmeval_*", "finetune*", "phases_*", "quickstart"]
    for path in [p for n in names for p in sorted(OUT.glob(f"{n}.json"))]:
        name = path.stem
        d = json.loads(path.read_text())
        print(f"### {name}: commit {d['commit']}, {d['finished_utc']} UTC")
        print(f"machine: {d['machine']}; load avg start {d['load_start']}, end {d['load_end']}\n")
        mc = ("ll_k8", "ll_k32", "short_k8", "short_k8_per_example", "short_k32", "cot")
        if any(k in d for k in mc):
            print(
                "| bench | n | lab s (repeats) | lm-eval s (repeats) | lm-eval model-call s | "
                "lab ex/s | lm-eval ex/s | ratio (model calls only) | goal | agreement |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
        for key in mc:
            if key not in d:
                continue
            r = d[key]
            t = r["times_s"]
            if key == "cot":
                agree = f"identical outputs {r['identical']:.0%}"
            else:
                agree = (
                    f"acc {r['acc_lab']:.3f} vs {r['acc_lmeval']:.3f}; same choice "
                    f"{r['same_choice']:.0%}; max abs loglik diff {r['max_abs_loglik_diff']:.1e}"
                )
            print(
                f"| {key} (k={r['k']}) | {r['n']} | {fmt_times(t['lab'])} | "
                f"{fmt_times(t['lm_eval'])} | {fmt_times(t['lm_eval_model'])} | "
                f"{r['lab_ex_per_s']:.3f} | {r['lmeval_ex_per_s']:.3f} | "
                f"**{r['ratio']:.1f}x** ({r['ratio_model_calls_only']:.1f}x) | "
                f">= {r['goal']:.0f}x | {agree} |"
            )
        if "workloads" in d:
            print_phases(d)
        if "lora" in d:
            lo, fu = d["lora"], d["full"]
            print(
                "| bench | lab s (repeats) | HF Trainer s (repeats) | lab tok/s | HF tok/s | "
                "ratio | goal | loss curves |"
            )
            print("|---|---|---|---|---|---|---|---|")
            lab = [r["wall_s"] for r in lo["runs"]["lab"]]
            hf = [r["wall_s"] for r in lo["runs"]["hf_trainer"]]
            print(
                f"| LoRA, {lo['steps']} steps x batch {lo['batch_size']} ({lo['format']}, "
                f"{lo['tokens_per_run']} tokens) | {fmt_times(lab)} | {fmt_times(hf)} | "
                f"{lo['lab_tokens_per_s']:.2f} | {lo['hf_tokens_per_s']:.2f} | "
                f"**{lo['ratio']:.2f}x** | >= 1.0x | max abs diff "
                f"{lo['max_abs_loss_diff']:.1e} |"
            )
            print(
                f"\nlab losses {lo['runs']['lab'][0]['losses']}\n"
                f"HF losses  {lo['runs']['hf_trainer'][0]['losses']}\n"
            )
            print(
                f"Full FT: {fu['steps']} steps, {fu['flops'] / 1e9:.0f} GFLOP in "
                f"{fu['wall_s']:.1f} s = {fu['achieved_flops_per_s'] / 1e9:.2f} GFLOP/s; fp32 "
                f"matmul rate {fu['matmul_peak_flops'] / 1e9:.2f} GFLOP/s -> "
                f"**{fu['fraction_of_peak']:.0%} of peak**"
            )
        if "speedup" in d:
            print("| mode | wall s (repeats) | train s | eval s | median wall s |")
            print("|---|---|---|---|---|")
            for m in ("before", "after"):
                rs = d["runs"][m]
                print(
                    f"| {m} | {fmt_times([r['wall_s'] for r in rs])} | "
                    f"{fmt_times([r['train_s'] for r in rs])} | "
                    f"{fmt_times([r['eval_s'] for r in rs])} | {d['median'][m]['wall_s']:.1f} |"
                )
            print(
                f"\nspeed-up (median before / median after) **{d['speedup']:.2f}x**; "
                f"exact-match rows equal {d['exact_match_rows_equal']}; max abs log p(gold) "
                f"diff {d['max_gold_logprob_diff']:.1e}\n"
            )
            print_cells(d["runs"])
        print()


if __name__ == "__main__":
    main()
