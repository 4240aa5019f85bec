"""The format spread of a cell (`eval.formats`, lab/core/formats.py): the comparison's
variant of every cell (a prompted arm's prompt, an FT arm's selected checkpoint) is also
evaluated in each further prompt format; its demos and questions are written in that format.

A fine-tuned arm is trained in the main format only (the lab's template), so its other
formats are also a prompt-format shift. Each format's evaluation is a variant of its own,
`<variant>@<format>` (its predictions folder, metrics key, W&B keys and rows' `variant`),
placed right after the variant it re-prompts (the same checkpoint, loaded once), without
probes. Once the spread is on, every variant carries `prompt_format`, the name of the format
its rows were evaluated in (the main format's: `default`); without it, nothing changes.
"""

from __future__ import annotations

from dataclasses import replace

from lab.core.formats import MAIN, format_variant
from lab.core.recipe import Recipe


def with_formats(recipe: Recipe, variants: list) -> list:
    """`variants` (lab.study.plan.Variant, the comparison's first) with the format spread:
    unchanged without `eval.formats`; else each labelled with its format and the first
    followed by one variant per further format."""
    formats = recipe.prompt_formats()
    if len(formats) < 2:
        return list(variants)
    main, *rest = [replace(v, prompt_format=MAIN) for v in variants]
    spread = [
        replace(
            main,
            name=format_variant(main.name, f.name),
            spec=replace(main.spec, prompt_format=f),
            probes=False,
            prompt_format=f.name,
        )
        for f in formats[1:]
    ]
    return [main, *spread, *rest]
