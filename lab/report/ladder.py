"""Model ladders: one study swept over several base models (`model:` a list in the recipe).

The runner gives every model the same cells (same data, seeds, budgets); this module writes
the ladder report from the results:

- each model's own full report (the single-model report, unchanged) in report/models/<tag>/;
- per arm, ID and OOD accuracy vs parameter count (log x) with 95% bootstrap CIs, exact match
  and the smooth metric (mean log-probability of the gold answer) side by side;
- the BIG-bench scaling metrics (eval/scaling.py: linearity, breakthroughness) per arm, split
  and metric;
- the "CoT gain vs size" view: CoT minus direct answer per model, for prompting (ICL CoT vs
  ICL answer with the same k) and for fine-tuning (CoT-trained vs answer-trained, same method),
  with paired-bootstrap CIs on the same examples.

OUT/report/  index.html, report.md, ladder.json, plots/, models/<tag>/ (one report per model)
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from eval.scaling import scaling_metrics
from eval.stats import bootstrap_ci, paired_bootstrap
from lab.core.example import ID_EVAL_SPLIT, Example, is_ood, ood_mean_splits
from lab.core.io import atomic_write_text
from lab.core.layout import model_tag
from lab.core.recipe import ArmCfg, Recipe
from lab.report import plots, study_report
from lab.report.analysis import Scores
from lab.report.table import CSS, Summary, Table, ci

METRICS = {"exact_match": "correct", "gold_logprob": "gold_logprob"}  # metric -> prediction key


def human(n: float) -> str:
    """A parameter count for people: 80.5K, 135M, 1.5B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def _models(out: Path, recipe: Recipe, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ladder's models that have results, smallest first (recipe order breaks ties)."""
    found = []
    for i, m in enumerate(recipe.models):
        rows_m = [r for r in rows if r["model"] == m]
        if rows_m:
            found.append(
                {
                    "index": i,
                    "model": m,
                    "tag": model_tag(i, m),
                    "rows": rows_m,
                    "n_params": rows_m[0]["n_params"],
                    "fingerprint": rows_m[0]["model_fingerprint"],
                    "scores": Scores(out, rows_m),
                }
            )
    return sorted(found, key=lambda m: (m["n_params"], m["index"]))


def _top_group(recipe: Recipe, scores: Scores, arm: str, budget: Any = ...) -> Any:
    """The arm's group at its largest budget (or at `budget`), or None if it has no cells."""
    order = {b: i for i, b in enumerate(recipe.budgets or [])}
    groups = [g for g in scores.cells if g[0] == arm and (budget is ... or g[1] == budget)]
    return max(groups, key=lambda g: order.get(g[1], -1)) if groups else None


def _split_sets(splits: list[str]) -> dict[str, list[str]]:
    ood = [s for s in splits if is_ood(s)]
    sets = {"ID": [ID_EVAL_SPLIT]}
    if ood:
        sets["OOD"] = ood_mean_splits(splits)  # a second scoring of a split counts once
        sets |= {s: [s] for s in ood}
    return sets


def measure(recipe: Recipe, models: list[dict[str, Any]], splits: list[str]) -> dict:
    """points[arm][metric][split set] = [(params, mean, lo, hi, model)], smallest model first."""
    points: dict = {}
    sets = _split_sets(splits)
    for arm in recipe.arms:
        for m in models:
            group = _top_group(recipe, m["scores"], arm.name)
            if group is None:
                continue
            for metric, key in METRICS.items():
                for name, ss in sets.items():
                    try:
                        ci = bootstrap_ci(m["scores"].matrix(group, ss, key))
                    except (KeyError, TypeError):  # no gold log-prob (eval.gold_logprob off)
                        continue
                    points.setdefault(arm.name, {}).setdefault(metric, {}).setdefault(
                        name, []
                    ).append((m["n_params"], *ci, m["model"]))
    return points


def metrics_table(points: dict) -> tuple[Table, dict[str, Any]]:
    """Linearity and breakthroughness per arm, split set and metric (needs >= 2 models)."""
    rows, values = [], {}
    for arm, by_metric in points.items():
        for metric, by_split in by_metric.items():
            for split, pts in by_split.items():
                if len(pts) < 2:
                    continue
                m = scaling_metrics([p[0] for p in pts], [p[1] for p in pts])
                curve = " → ".join(f"{p[1]:.3f}" for p in sorted(pts, key=lambda p: p[0]))
                rows.append(
                    [
                        arm,
                        split,
                        metric,
                        m["linearity"],
                        m["breakthroughness"],
                        m["improvement"],
                        curve,
                    ]
                )
                for k in ("linearity", "breakthroughness"):
                    v = m[k]
                    values[f"ladder/{arm}/{split}/{metric}/{k}"] = v if math.isfinite(v) else str(v)
    cols = [
        "arm",
        "split",
        "metric",
        "linearity L",
        "breakthroughness B",
        "I_y",
        "curve (small → large)",
    ]
    return Table(cols, rows), values


def cot_pairs(recipe: Recipe) -> list[tuple[str, ArmCfg, ArmCfg]]:
    """(kind, CoT arm, direct-answer arm): prompting pairs share k (and both are ICL), fine-
    tuning pairs share the method (lora or full)."""
    pairs = []
    for cot in recipe.arms:
        if cot.format != "cot":
            continue
        if cot.method == "icl":
            kind = "prompting"
            cands = [a for a in recipe.arms if a.method == "icl" and a.k == cot.k]
        else:
            kind = "fine-tuning"
            cands = [a for a in recipe.arms if a.method == cot.method]
        cands = [a for a in cands if a.format == "answer"]
        if cands:
            pairs.append((kind, cot, cands[0]))
    return pairs


def cot_gains(recipe: Recipe, models: list[dict[str, Any]], splits: list[str]):
    """gains[label][ID|OOD] = [(params, diff, lo, hi)] and the table of the same numbers."""
    sets = {k: v for k, v in _split_sets(splits).items() if k in ("ID", "OOD")}
    gains: dict[str, dict[str, list]] = {}
    rows = []
    for kind, cot, ans in cot_pairs(recipe):
        label = f"{kind}: {cot.name} - {ans.name}"
        for m in models:
            sc = m["scores"]
            g_cot = _top_group(recipe, sc, cot.name)
            g_ans = _top_group(recipe, sc, ans.name, g_cot[1]) if g_cot else None
            if g_ans is None:
                continue
            cells = []
            for name, ss in sets.items():
                d = paired_bootstrap(*sc.paired(g_cot, g_ans, ss))  # same example ids
                gains.setdefault(label, {}).setdefault(name, []).append(
                    (m["n_params"], d["diff"], d["lo"], d["hi"])
                )
                cells.append(
                    f"{d['diff']:+.3f} [{d['lo']:+.2f}, {d['hi']:+.2f}] p={d['p_value']:.2g}"
                )
            rows.append([kind, f"{cot.name} - {ans.name}", m["tag"], human(m["n_params"]), *cells])
    cols = ["kind", "CoT - direct", "model", "params", *[f"{k} gain" for k in sets]]
    return gains, Table(cols, rows)


def results_table(recipe: Recipe, points: dict, models: list[dict[str, Any]]) -> Table:
    """One row per arm x model: ID / OOD exact match and log p(gold), 95% CIs."""

    def get(arm: str, metric: str, split: str, model: str) -> str:
        hit = [x for x in points.get(arm, {}).get(metric, {}).get(split, []) if x[4] == model]
        return ci(hit[0][1:4]) if hit else "-"

    rows = []
    for arm in recipe.arms:
        for m in models:
            cis = [
                get(arm.name, metric, split, m["model"])
                for metric in ("exact_match", "gold_logprob")
                for split in ("ID", "OOD")
            ]
            rows.append([arm.name, arm.method, arm.format, m["tag"], human(m["n_params"]), *cis])
    cols = [
        "arm",
        "method",
        "format",
        "model",
        "params",
        "ID exact match",
        "OOD exact match",
        "ID log p(gold)",
        "OOD log p(gold)",
    ]
    return Table(cols, rows)


def headline(recipe: Recipe, points: dict, models: list[dict[str, Any]]) -> str | None:
    if len(models) < 2:
        return None
    parts = []
    for arm in recipe.arms:
        em = points.get(arm.name, {}).get("exact_match", {})
        if len(em.get("ID", [])) < 2:
            continue
        txt = " → ".join(f"{x[1]:.2f}" for x in em["ID"])
        if em.get("OOD"):
            txt += "; OOD " + " → ".join(f"{x[1]:.2f}" for x in em["OOD"])
        parts.append(f"{arm.name} ID {txt}")
    sizes = " → ".join(human(m["n_params"]) for m in models)
    return (
        f"Exact match on {recipe.task.name} from the smallest to the largest model ({sizes} "
        f"parameters): " + "; ".join(parts) + "."
    )


def write_ladder_report(
    out: Path,
    recipe: Recipe,
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    splits: dict[str, list[Example]],
) -> Summary:
    """Per-model reports, then the ladder report in OUT/report/."""
    rdir = out / "report"
    eval_splits = info["eval_splits"]
    models = _models(out, recipe, rows)
    subs = {}
    for m in models:
        rec_m = recipe.model_copy(update={"model": m["model"]})
        info_m = {**info, "model": info["model"][m["index"]]}
        subs[m["model"]] = study_report.write_report(
            out, rec_m, m["rows"], info_m, splits, rdir=rdir / "models" / m["tag"]
        )
    points = measure(recipe, models, eval_splits)
    table = results_table(recipe, points, models)
    mtable, values = metrics_table(points)
    gains, gtable = cot_gains(recipe, models, eval_splits)
    head = headline(recipe, points, models)
    figs: dict[str, str] = {}
    curves: dict = {}
    for arm, by_metric in points.items():
        for metric, by_split in by_metric.items():
            for which in ("ID", "OOD"):
                pts = [p[:4] for p in by_split.get(which, [])]
                curves.setdefault(metric, {}).setdefault(which, {})[arm] = pts
    if curves:
        styles = plots.arm_styles([(a.name, a.method) for a in recipe.arms])
        figs["vs_params"] = str(plots.vs_params(curves, rdir / "plots" / "vs_params.png", styles))
    if gains:
        figs["cot_gain"] = str(plots.cot_gain(gains, rdir / "plots" / "cot_gain.png"))
    few = len(models) < 3
    note = (
        f"With {len(models)} models, L and B are sign(I_y) by construction (one step between "
        "rungs): they give the direction of the change, not its shape; 3+ models are needed "
        "to tell gradual from sudden."
        if few
        else "L is at most N-1 (equal steps); B is large (inf) when most steps are flat and "
        "the change comes in one or two jumps."
    )
    model_lines = [
        f"- `{m['tag']}`: `{m['model']}`, {m['n_params']:,} parameters, weights fingerprint "
        f"`{m['fingerprint']}` — [full report](models/{m['tag']}/report.md)"
        for m in models
    ]
    md = [
        f"# {recipe.name} (model ladder)",
        "",
        recipe.description.strip(),
        "",
        f"**Summary.** {head}" if head else "",
        "",
        "## Models (smallest first; every model runs the same cells: data, seeds, budgets)",
        "",
        *model_lines,
        "",
        f"- task: `{recipe.task.name}`; data seeds {recipe.seeds}; budgets {recipe.budgets or '-'}; "
        "each arm at its largest budget; mean [95% bootstrap CI over seeds and examples]",
        "",
        "## Accuracy and log p(gold) per arm and model",
        "",
        table.render(),
        "",
        "## BIG-bench scaling metrics (Srivastava et al. 2022, App. B; eval/scaling.py)",
        "",
        f"L = I_y / RMS(steps), B = I_y / root-median-square(steps), I_y = signed range. {note}",
        "",
        mtable.render() if mtable.rows else "(needs at least 2 models)",
        "",
        "## CoT gain vs size (CoT - direct answer, exact match, paired bootstrap)",
        "",
        gtable.render() if gtable.rows else "(no CoT / direct-answer arm pair in this study)",
        "",
        "## Per model: the one-sentence answer and the results table",
        "",
    ]
    for m in models:
        s = subs[m["model"]]
        md += [
            f"### {m['tag']} ({m['model']})",
            "",
            f"**Answer.** {s.headline}" if s.headline else "",
            "",
            s.table.render(),
            "",
        ]
    md += ["## Plots", "", *[f"![{k}](plots/{Path(v).name})" for k, v in figs.items()], ""]
    atomic_write_text(rdir / "report.md", "\n".join(md))
    atomic_write_text(
        rdir / "index.html",
        _html(recipe, head, table, mtable, gtable, note, subs, models, figs),
    )
    data = {
        "headline": head,
        "models": [{k: m[k] for k in ("model", "tag", "n_params", "fingerprint")} for m in models],
        "points": points,
        "gains": gains,
        "scaling_metrics": {"columns": mtable.columns, "rows": mtable.rows},
    }
    atomic_write_text(rdir / "ladder.json", json.dumps(data, default=str, indent=1))
    tables = {"scaling_metrics": mtable, "cot_gain": gtable}
    for m in models:
        s = subs[m["model"]]
        tables |= {f"{name}_{m['tag']}": t for name, t in s.extra.items()}  # typed
    tables = {k: t for k, t in tables.items() if t.rows}
    cells = [c for s in subs.values() for c in s.cells]
    first = next(iter(subs.values()))
    return Summary(
        table,
        head,
        figs,
        None,
        tables,
        values,
        cells=cells,
        notes=first.notes,
        verdicts=[f"{m['tag']}: {v}" for m in models for v in subs[m["model"]].verdicts],
    )


def _html(recipe, head, table, mtable, gtable, note, subs, models, figs) -> str:
    esc = html.escape
    imgs = "".join(
        f"<h3>{esc(k)}</h3><img alt='{k}' src='data:image/png;base64,"
        f"{base64.b64encode(Path(v).read_bytes()).decode()}'>"
        for k, v in figs.items()
    )
    lis = "".join(
        f"<li><a href='models/{m['tag']}/index.html'>{esc(m['tag'])}</a>: {esc(m['model'])}, "
        f"{m['n_params']:,} parameters, fingerprint <code>{esc(m['fingerprint'])}</code></li>"
        for m in models
    )
    per = "".join(
        f"<h3>{esc(m['tag'])}</h3>"
        + (
            f"<p class='answer'>{esc(subs[m['model']].headline)}</p>"
            if subs[m["model"]].headline
            else ""
        )
        + subs[m["model"]].table.html()
        for m in models
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(recipe.name)}</title>"
        f"<style>{CSS}</style></head><body><h1>{esc(recipe.name)} (model ladder)</h1>"
        f"<p>{esc(recipe.description)}</p>"
        + (f"<p class='answer'><b>Summary.</b> {esc(head)}</p>" if head else "")
        + f"<h2>Models</h2><ul>{lis}</ul>"
        f"<h2>Accuracy and log p(gold) per arm and model</h2>{table.html()}"
        f"<h2>BIG-bench scaling metrics</h2><p>{esc(note)}</p>{mtable.html()}"
        f"<h2>CoT gain vs size</h2>{gtable.html()}<h2>Per model</h2>{per}"
        f"<h2>Plots</h2>{imgs}</body></html>"
    )
