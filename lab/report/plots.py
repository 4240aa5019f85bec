"""The report's plots (matplotlib, Agg). Each function takes plain aggregates and a path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"icl": "tab:blue", "lora": "tab:orange", "full": "tab:red", "ttt": "tab:green"}
MARKERS = {"icl": "o", "lora": "s", "full": "^", "ttt": "v"}
_PALETTE = plt.get_cmap("tab10").colors


Styles = dict[str, dict[str, Any]]


def arm_styles(arms: list[tuple[str, str]]) -> Styles:
    """(arm, method) in recipe order -> the arm's style in every plot: one colour per arm,
    one marker per method (circle ICL, square LoRA, triangle full FT)."""
    return {
        name: {"color": _PALETTE[i % len(_PALETTE)], "marker": MARKERS.get(method, "D")}
        for i, (name, method) in enumerate(arms)
    }


def _log_x(ax: Any) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def id_vs_ood(points: list[dict[str, Any]], path: Path, styles: Styles) -> Path:
    """One point per arm (at its largest budget): ID accuracy vs OOD accuracy, 95% CIs."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for p in points:
        st = styles[p["label"]]
        ax.errorbar(
            p["id"][0],
            p["ood"][0],
            xerr=[[p["id"][0] - p["id"][1]], [p["id"][2] - p["id"][0]]],
            yerr=[[p["ood"][0] - p["ood"][1]], [p["ood"][2] - p["ood"][0]]],
            fmt=st["marker"],
            color=st["color"],
            capsize=3,
            ms=7,
            label=p["label"],
        )
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=0.8, label="OOD = ID")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("ID accuracy (exact match)")
    ax.set_ylabel("OOD accuracy (mean over OOD splits)")
    ax.set_title("ID vs OOD per arm, 95% CIs (o ICL, □ LoRA, △ full FT)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def per_split(bars: dict[str, dict[str, float]], path: Path) -> Path:
    arms = list(bars)
    splits = list(next(iter(bars.values())))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(arms) + 2), 4))
    width = 0.8 / max(1, len(splits))
    for j, s in enumerate(splits):
        xs = [i + (j - (len(splits) - 1) / 2) * width for i in range(len(arms))]
        ax.bar(xs, [bars[a].get(s, 0.0) for a in arms], width, label=s)
    ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right")
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1)
    ax.set_title("Accuracy per arm and split")
    ax.legend(fontsize=8)
    return _save(fig, path)


def vs_budget(
    curves: dict[str, dict[str, list[tuple[float, float, float, float]]]],
    path: Path,
    styles: Styles,
) -> Path:
    """curves[arm][ID|OOD] = [(budget, mean, lo, hi)]: the data-scaling curve."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    budgets = sorted({p[0] for c in curves.values() for pts in c.values() for p in pts})
    for ax, which in zip(axes, ("ID", "OOD"), strict=True):
        for arm, c in curves.items():
            pts = sorted(c.get(which, []))
            if not pts:
                continue
            xs, ms, lo, hi = zip(*pts, strict=True)
            st = styles[arm]
            ax.plot(xs, ms, label=arm, **st)
            ax.fill_between(xs, lo, hi, alpha=0.12, color=st["color"])
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("labelled examples (k demos = FT training set)")
        ax.set_title(f"{which} accuracy vs budget (mean, 95% CI band)")
    axes[0].set_ylabel("exact match")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def cost_matched(points: list[dict[str, Any]], path: Path, styles: Styles) -> Path:
    """Accuracy vs total FLOPs (training + inference on the eval set), log x: one curve per
    arm through its budgets, so arms can be compared at equal compute."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    arms = list(dict.fromkeys(p["label"] for p in points))
    for ax, which in zip(axes, ("id", "ood"), strict=True):
        for arm in arms:
            pts = sorted((p["flops"], p[which]) for p in points if p["label"] == arm)
            ax.plot(*zip(*pts, strict=True), label=arm, **styles[arm])
        _log_x(ax)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("FLOPs: training + inference on the eval set")
        ax.set_title(f"{which.upper()} accuracy vs compute (each point a budget)")
    axes[0].set_ylabel("exact match")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def ft_then_icl(rows: list[dict[str, Any]], path: Path) -> Path:
    """Per FT arm: zero-shot vs k-shot prompted accuracy (ID and OOD) of the FT model."""
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(rows) + 2), 4.2))
    labels = [r["arm"] for r in rows]
    keys = [
        ("id_0", "ID, k=0"),
        ("id_k", "ID, k-shot"),
        ("ood_0", "OOD, k=0"),
        ("ood_k", "OOD, k-shot"),
    ]
    width = 0.2
    for j, (key, name) in enumerate(keys):
        xs = [i + (j - 1.5) * width for i in range(len(rows))]
        ax.bar(xs, [r[key] for r in rows], width, label=name)
    for i, r in enumerate(rows):
        if r.get("base_k") is not None:
            ax.hlines(r["base_k"], i - 0.4, i + 0.4, colors="black", linestyles="dotted")
    ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("exact match")
    ax.set_title(
        "Does fine-tuning keep in-context learning?\n(FT model at k = 0 vs with k demos; "
        "dotted: the base model k-shot, ID)",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def training_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, c in curves.items():
        (line,) = ax.plot(*zip(*c["train"], strict=True), label=f"{arm} train", alpha=0.6)
        if c.get("dev"):
            ax.plot(
                *zip(*c["dev"], strict=True),
                marker="o",
                ls="--",
                color=line.get_color(),
                label=f"{arm} ID dev",
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (answer tokens)")
    ax.set_title("Training and ID-dev loss (checkpoint selection uses ID dev only)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _param_ticks(ax: Any, xs: list[float]) -> None:
    """Tick the x axis (log) at the ladder's models, labelled 135M, 1.5B, ..."""
    from matplotlib.ticker import NullLocator

    xs = sorted(set(xs))
    if not xs:
        return
    labels = []
    for x in xs:
        unit = next(((d, u) for d, u in ((1e9, "B"), (1e6, "M"), (1e3, "K")) if x >= d), (1, ""))
        labels.append(f"{x / unit[0]:.3g}{unit[1]}")
    ax.set_xticks(xs, labels)
    ax.xaxis.set_minor_locator(NullLocator())


def _ci_line(ax: Any, pts: list[tuple[float, float, float, float]], label: str, **kw: Any) -> None:
    xs, ms, lo, hi = zip(*sorted(pts), strict=True)
    kw.setdefault("marker", "o")
    (line,) = ax.plot(xs, ms, label=label, **kw)
    ax.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())


def vs_params(
    curves: dict[str, dict[str, dict[str, list]]], path: Path, styles: Styles | None = None
) -> Path:
    """A model ladder: curves[metric][ID|OOD][arm] = [(params, mean, lo, hi)], log x; exact
    match (top) and mean log p(gold answer) (bottom) side by side with ID and OOD."""
    metrics = [m for m in ("exact_match", "gold_logprob") if curves.get(m)]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.8 * len(metrics)), squeeze=False)
    ylabel = {"exact_match": "exact match", "gold_logprob": "mean log p(gold answer)"}
    for row, metric in zip(axes, metrics, strict=True):
        for ax, which in zip(row, ("ID", "OOD"), strict=True):
            xs = []
            for arm, pts in curves[metric].get(which, {}).items():
                if pts:
                    _ci_line(ax, pts, arm, **(styles or {}).get(arm, {}))
                    xs += [p[0] for p in pts]
            ax.set_xscale("log")
            _param_ticks(ax, xs)
            ax.set_xlabel("parameters (log scale)")
            ax.set_ylabel(ylabel[metric])
            ax.set_title(f"{which}: {ylabel[metric]} vs model size (95% CI)")
            if metric == "exact_match":
                ax.set_ylim(-0.02, 1.02)
        row[1].legend(fontsize=7)
    return _save(fig, path)


def cot_gain(gains: dict[str, dict[str, list]], path: Path) -> Path:
    """gains[label][ID|OOD] = [(params, diff, lo, hi)]: CoT minus direct answer vs size, one
    line per (prompting | fine-tuning) pair, paired-bootstrap 95% CIs."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, which in zip(axes, ("ID", "OOD"), strict=True):
        xs = []
        for label, g in gains.items():
            if g.get(which):
                _ci_line(ax, g[which], label, ls="-" if label.startswith("prompting") else "--")
                xs += [p[0] for p in g[which]]
        ax.axhline(0.0, color="gray", lw=0.8)
        ax.set_xscale("log")
        _param_ticks(ax, xs)
        ax.set_xlabel("parameters (log scale)")
        ax.set_title(f"{which}: CoT gain (CoT - direct answer, exact match)")
    axes[0].set_ylabel("accuracy difference")
    axes[1].legend(fontsize=7)
    return _save(fig, path)
