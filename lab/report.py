"""The comparison a reviewer reads: arms x (ID, each OOD split, OOD mean), a markdown
report and plots. Means are over seeds (± standard deviation when there are several)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.io import atomic_write_text
from lab.recipe import Recipe
from lab.tasks.base import ID_EVAL_SPLIT, is_ood


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]

    def render(self) -> str:
        cells = [self.columns] + [[_fmt(v) for v in r] for r in self.rows]
        widths = [max(len(str(r[i])) for r in cells) for i in range(len(self.columns))]

        def line(r: list[Any]) -> str:
            return "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) + " |"

        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(cells[0]), sep, *[line(r) for r in cells[1:]]])


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    m = statistics.fmean(values)
    return f"{m:.3f}" if len(values) < 2 else f"{m:.3f} ± {statistics.stdev(values):.3f}"


def comparison(
    recipe: Recipe, rows: list[dict[str, Any]]
) -> tuple[Table, dict[str, dict[str, float]]]:
    """(table, {arm: {column: mean}}) from results rows (exact match)."""
    splits: list[str] = []
    by: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["metric"] != "exact_match":
            continue
        if r["split"] not in splits:
            splits.append(r["split"])
        by[(r["arm"], r["split"])][r["seed"]] = r["value"]
    ood = [s for s in splits if is_ood(s)]
    id_cols = [s for s in splits if s == ID_EVAL_SPLIT]
    columns = ["arm", "method", "format", "k", *(f"ID ({s})" for s in id_cols), *ood, "OOD mean"]
    table_rows, means = [], {}
    for arm in recipe.arms:
        seeds = sorted({seed for s in splits for seed in by[(arm.name, s)]})
        if not seeds:
            continue
        ood_per_seed = (
            [
                statistics.fmean(by[(arm.name, s)][seed] for s in ood)
                for seed in seeds
                if all(seed in by[(arm.name, s)] for s in ood)
            ]
            if ood
            else []
        )
        vals = {s: list(by[(arm.name, s)].values()) for s in splits}
        means[arm.name] = {s: statistics.fmean(v) for s, v in vals.items() if v}
        if ood_per_seed:
            means[arm.name]["ood_mean"] = statistics.fmean(ood_per_seed)
        table_rows.append(
            [arm.name, arm.method, arm.format, arm.k]
            + [_mean_sd(vals[s]) for s in id_cols]
            + [_mean_sd(vals[s]) for s in ood]
            + [_mean_sd(ood_per_seed)]
        )
    return Table(columns, table_rows), means


def plot(out: Path, means: dict[str, dict[str, float]]) -> Path | None:
    if not means:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(means)
    splits = [s for s in next(iter(means.values())) if s != "ood_mean"]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(arms) + 2), 4))
    width = 0.8 / max(1, len(splits))
    for j, s in enumerate(splits):
        xs = [i + (j - (len(splits) - 1) / 2) * width for i in range(len(arms))]
        ax.bar(
            xs,
            [means[a].get(s, 0.0) for a in arms],
            width,
            label=("ID " if not is_ood(s) else "") + s,
        )
    ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right")
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1)
    ax.set_title("Accuracy per arm: in-distribution vs out-of-distribution")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "plots" / "accuracy.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def figures(out: Path) -> dict[str, str]:
    return {f"plots/{p.stem}": str(p) for p in sorted((out / "plots").glob("*.png"))}


def write_report(
    out: Path, recipe: Recipe, rows: list[dict[str, Any]], info: dict[str, Any]
) -> Table:
    table, means = comparison(recipe, rows)
    plot(out, means)
    sizes = ", ".join(f"{k}={v}" for k, v in info["split_sizes"].items())
    lines = [
        f"# {recipe.name}",
        "",
        recipe.description.strip(),
        "",
        f"- model: `{recipe.model}` (weights fingerprint {info['model']['fingerprint']})",
        f"- task: `{recipe.task.name}` (seed {recipe.task.seed}; {sizes})",
        f"- seeds: {recipe.seeds}; metric: exact match; mean ± sd over seeds",
        "",
        "## Splits",
        "",
        *[f"- `{k}`: {v}" for k, v in info["task"]["splits"].items()],
        "",
        "## Comparison",
        "",
        table.render(),
        "",
        "![accuracy](plots/accuracy.png)",
        "",
    ]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return table
