"""Checks that need the model's tokenizer or the file system, run before anything is written:
a mistake found here costs seconds, not the cells that ran before it surfaced mid-study."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from eval.lm import context_length
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.prompts import demos_prefix, prompt
from lab.core.recipe import Recipe

SLACK = 8  # tokens kept free beside prompt + generation (BOS, separators); as Runner._fit_demos


def check_context(
    recipe: Recipe,
    splits: dict[str, list[Example]],
    eval_splits: list[str],
    orders: dict[int, list[Example]],
    model_path: str,
) -> None:
    """Every eval prompt, with its generation budget, fits the context; for each k-shot arm
    at least one demo fits (more are cut to what fits, recorded); the FT-then-ICL variant's
    demos fit in full. `orders`: each data seed's demo order (at least the probe's prefix)."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    limit = context_length(SimpleNamespace(config=AutoConfig.from_pretrained(model_path)))

    def n_tokens(text: str) -> int:
        return len(tok(text, add_special_tokens=False).input_ids)

    longest: dict[Any, int] = {}
    for arm in recipe.arms:
        if arm.trigger not in longest:
            longest[arm.trigger] = max(
                n_tokens(prompt(ex, arm.trigger)) for s in eval_splits for ex in splits[s]
            )
        gen = recipe.eval.max_new_tokens[arm.format]
        room = limit - longest[arm.trigger] - gen - SLACK
        if room < 0:
            raise LabError(
                f"arm '{arm.name}': the longest eval prompt ({longest[arm.trigger]} tokens) plus "
                f"eval.max_new_tokens.{arm.format}={gen} do not fit the model's context "
                f"({limit} tokens); lower eval.max_new_tokens or use a longer-context model"
            )
        if arm.method == "icl" and arm.k > 0:
            for seed, order in orders.items():
                need = len(tok(demos_prefix(order[:1], arm.format)).input_ids)
                if need > room:
                    raise LabError(
                        f"arm '{arm.name}': not even one demo fits the model's context ({limit} "
                        f"tokens; data seed {seed}'s first demo needs {need}, {room} are free); "
                        "lower k to 0, shorten eval.max_new_tokens, or use a longer-context model"
                    )
        probe = recipe.eval.ft_then_icl_k
        if arm.method != "icl" and probe:
            for order in orders.values():
                need = len(tok(demos_prefix(order[:probe], arm.format)).input_ids)
                if need > room:
                    raise LabError(
                        f"eval.ft_then_icl_k={probe}: the probe's demos need {need} tokens but "
                        f"only {room} of the context ({limit}) are free for arm '{arm.name}'; "
                        "lower eval.ft_then_icl_k"
                    )


def check_writable(out: Path) -> None:
    """OUT can be created and written; raises before anything is written if not."""
    out = Path(out)
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise LabError(
            f"output dir '{out}' cannot be created: '{parent}' is a file; choose another --out"
        )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise LabError(
            f"output dir '{out}' is not writable ({e.strerror or type(e).__name__}); choose "
            "another --out or fix its permissions"
        ) from None
