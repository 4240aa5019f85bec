"""Run a tiny gsm8k study with the given `task.params.probes` through the CLI (for the
probe tests whose prompts must not fit the tiny model's 4096-character context)."""

from __future__ import annotations

from pathlib import Path


def run_probe_study(tmp_path: Path, probes: str) -> tuple[int, Path]:
    """(exit code, --out) of `python -m lab run` on a one-arm gsm8k study with `probes`."""
    from lab.study.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nmodel: tiny-random\n"
        f"task: {{name: gsm8k, n_train: 20, n_dev: 2, n_test: 2, params: {{probes: {probes}}}}}\n"
        "seeds: [0]\narms: [{name: z, method: icl, format: answer, k: 0}]\n"
        "tracking: {mode: disabled}\n"
    )
    out = tmp_path / "out"
    return main(["run", str(recipe), "--out", str(out), "--cache-dir", str(tmp_path / "c")]), out
