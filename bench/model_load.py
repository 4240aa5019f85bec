"""Model cache figures: first GGUF conversion vs cached reload, per alias.

    .venv/bin/python bench/model_load.py [alias ...] [--cache-dir DIR]

Prints, per model: resolve time (conversion when the cache is cold), load_model time of the
cached HF directory (weights + tokenizer, in a process that has already imported torch and
transformers), and the same split into weights and tokenizer. Target: cached reload < 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lab.study.models import resolve_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("aliases", nargs="*", default=["smollm2-135m-instruct"])
    ap.add_argument("--cache-dir")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for alias in args.aliases:
        t = time.perf_counter()
        r = resolve_model(alias, args.cache_dir)
        resolve_s = time.perf_counter() - t
        weights, tokenizer = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            AutoModelForCausalLM.from_pretrained(r.path, dtype=torch.float32)
            weights.append(time.perf_counter() - t)
            t = time.perf_counter()
            AutoTokenizer.from_pretrained(r.path)
            tokenizer.append(time.perf_counter() - t)
        w, k = statistics.median(weights), statistics.median(tokenizer)
        print(
            f"{alias}: resolve {resolve_s:.2f}s | cached reload (median of {args.repeats}) "
            f"{w + k:.2f}s = weights {w:.2f}s + tokenizer {k:.2f}s | {r.path}"
        )


if __name__ == "__main__":
    main()
