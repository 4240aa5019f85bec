"""Rendering the comparison a reviewer reads (the numbers come from analysis.py): results with 95% bootstrap CIs (over seeds and
examples), paired FT-vs-ICL tests, the one-sentence answer, contamination, compute, plots.

Written to OUT/report/report.md and OUT/report/index.html (self-contained: plots inlined).
All numbers come from OUT/results.jsonl and the per-example predictions.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from eval.contamination import TEMPLATE_SHARE
from lab.core import fairness
from lab.core.example import SECOND_SCORINGS, Example, ood_mean_splits
from lab.core.formats import MAIN
from lab.core.io import atomic_write_text
from lab.core.recipe import Recipe
from lab.report import forest, format_spread, format_tables, markup, plots, summary_tables, verdict
from lab.report.analysis import (
    Scores,
    answer_arms,
    comparison,
    contamination,
    ft_then_icl_rows,
    headline,
    matched_kshot,
    matched_pairs,
    ood_columns,
    paired_table,
)
from lab.report.breakdown import breakdowns, brier_table, calibration_table
from lab.report.cost import compute_table
from lab.report.probe_tables import probe_table
from lab.report.table import CSS, Summary, Table


def _figures(
    out: Path, recipe: Recipe, agg, scores: Scores, splits: list[str], rows, rdir: Path
) -> dict[str, str]:
    fig_dir = rdir / "plots"
    figs: dict[str, str] = {}
    styles = plots.arm_styles([(a.name, a.method) for a in recipe.arms])
    top = {}  # arm -> its group at the largest budget
    for g in agg:
        top[g[0]] = g
    pts = [
        {"label": a, "method": agg[g]["method"], "id": agg[g]["id"], "ood": agg[g]["ood"]}
        for a, g in top.items()
        if agg[g]["ood"]
    ]
    if pts:
        figs["id_vs_ood"] = str(plots.id_vs_ood(pts, fig_dir / "id_vs_ood.png", styles))
        cost = [
            {
                "label": g[0],
                "method": a["method"],
                "flops": a["flops"],
                "id": a["id"][0],
                "ood": a["ood"][0],
            }
            for g, a in agg.items()
            if a["ood"]
        ]
        figs["cost_matched"] = str(plots.cost_matched(cost, fig_dir / "cost_matched.png", styles))
    bars = {
        a: {"ID": agg[g]["id"][0], **{s: agg[g]["per"][s][0] for s in agg[g]["per"]}}
        for a, g in top.items()
    }
    if bars:
        figs["per_split"] = str(plots.per_split(bars, fig_dir / "per_split.png"))
    if recipe.budgets and len(recipe.budgets) > 1:
        curves: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for (arm, budget), a in agg.items():
            if budget is None:
                continue
            meta = scores.meta[scores.cells[(arm, budget)][0]]
            # knn: the budget it retrieves from (k is per query)
            x = (
                meta.get("n_train")
                if meta["method"] != "icl"
                else meta.get("index_size", meta.get("k"))
            )
            x = meta.get("rationales_written", x)  # cot_self: the budget, not the kept ones
            curves[arm]["ID"].append((x, *a["id"]))
            if a["ood"]:
                curves[arm]["OOD"].append((x, *a["ood"]))
        figs["vs_budget"] = str(plots.vs_budget(curves, fig_dir / "vs_budget.png", styles))
    ft_icl = ft_then_icl_rows(rows, splits)
    if ft_icl:
        formats = {a.name: a.format for a in recipe.arms}
        for p in ft_icl:
            g = matched_kshot(scores, formats[p["arm"]], recipe.eval.ft_then_icl_k)
            p["base_k"] = agg[g]["id"][0] if g is not None else None
        figs["ft_then_icl"] = str(plots.ft_then_icl(ft_icl, fig_dir / "ft_then_icl.png"))
    curves_t = {}
    for g in top.values():
        t = agg[g]["train"]
        if t.get("losses"):
            curves_t[g[0]] = {
                "train": list(enumerate(t["losses"], 1)),
                "dev": [tuple(x) for x in t.get("dev_losses", [])],
            }
    if curves_t:
        figs["training"] = str(plots.training_curves(curves_t, fig_dir / "training.png"))
    return figs


def write_report(
    out: Path,
    recipe: Recipe,
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    splits: dict[str, list[Example]],
    rdir: Path | None = None,
) -> Summary:
    """The report of one base model's study, in `rdir` (default OUT/report)."""
    rdir = rdir or out / "report"
    eval_splits = info["eval_splits"]
    table, agg, scores = comparison(recipe, out, rows, eval_splits)
    pairs = matched_pairs(recipe, scores)
    ptable, presults = paired_table(pairs, scores, eval_splits)
    head = headline(recipe, presults)
    ctable = compute_table(agg, pairs)
    typed = summary_tables.paired_rows(presults, scores)
    verdicts = [verdict.one_line(x) for x in presults]
    figs = {}
    if presults:  # first: the picture of the paired gains
        gains = forest.rows_from_paired(typed.columns, typed.rows)
        figs["forest"] = str(forest.forest(gains, rdir / "plots" / "forest.png"))
    figs |= _figures(out, recipe, agg, scores, eval_splits, rows, rdir)
    pick = verdict.answer_pair(recipe.budgets, presults, answer_arms(recipe))
    spread = format_spread.spread(out, rows, eval_splits, pairs)  # eval.formats
    spread_pick = format_spread.pair_spread(spread, pick)
    if head and spread_pick:
        head += " " + verdict.formats_clause(spread_pick["words"], MAIN)
    spread_md = format_tables.markdown(spread, recipe.prompt_formats()) if spread else []
    spread_sections = (
        [
            (
                "format_spread",
                "Prompt-format spread (eval.formats)",
                format_tables.spread_table(spread),
            ),
            ("format_holds", "Verdict under each prompt format", format_tables.holds_table(spread)),
        ]
        if spread
        else []
    )
    contam = contamination(splits, eval_splits)
    sizes = ", ".join(f"{k}={v}" for k, v in info["split_sizes"].items())
    breakdown = _breakdown_tables(scores, eval_splits)
    arm_names = [a.name for a in recipe.arms]
    probes = Table(*probe_table(rows, arm_names))
    task_probes = Table(*probe_table(rows, arm_names, cross_task=True))
    probe_sections = [
        (
            probes,
            "Generic-reasoning probes",
            "Exact match per subtask and the macro average over subtasks (mean over cells). "
            "BBH: the standard 3-shot CoT prompts, whatever the arm's demos or weights.",
        ),
        (
            task_probes,
            "Cross-task probes",
            "Exact match on eval splits of other tasks of the lab, scored as those tasks score "
            "them, and the macro average over each probed task's splits (mean over cells). One "
            "fixed prompt per probed task (its k demos from its own train pool) for every arm: "
            "does fine-tuning on this task help or hurt the others?",
        ),
    ]
    probe_sections = [(t, title, text) for t, title, text in probe_sections if t.rows]
    in_mean = ood_mean_splits(eval_splits)
    second = [s for s in ood_columns(eval_splits) if s not in in_mean]
    mean_md = (
        [
            "- OOD mean: pooled over the examples of "
            + ", ".join(f"`{s}`" for s in in_mean)
            + "".join(
                f"; `{s}` has its column but is not in the mean (it scores the problems of "
                f"`{SECOND_SCORINGS[s]}` a second way)"
                for s in second
            )
        ]
        if second
        else []
    )
    probe_md = [
        line
        for t, title, text in probe_sections
        for line in (
            f"## {title} (every arm, each probe's own fixed prompt)",
            "",
            text,
            "",
            t.render(),
            "",
        )
    ]
    top = [f"- {v}" for v in verdicts] + (["", "![forest](plots/forest.png)"] if verdicts else [])
    md = [
        f"# {recipe.name}",
        "",
        *(["## Verdict per compared pair", "", *top, ""] if top else []),
        f"**Answer.** {head}" if head else "",
        "",
        recipe.description.strip(),
        "",
        f"- model: `{recipe.model}` (weights fingerprint `{info['model']['fingerprint']}`, the same for every arm)",
        f"- task: `{recipe.task.name}` (seed {recipe.task.seed}; {sizes}; train pool {info.get('pool_size')})",
        f"- data seeds {recipe.seeds}; train seeds {recipe.train_seeds or 'same as data'}; "
        f"budgets {recipe.budgets or '-'}",
        "- metric: exact match; mean [95% bootstrap CI over seeds and examples]; FT arms are "
        "evaluated at k = 0 with the ICL template",
        "- log p(gold): mean log-probability of ' <gold answer>' right after the prompt: the smooth "
        "metric; for CoT and code arms it measures answering directly, without the rationale",
        *mean_md,
        "",
        "## Fairness",
        "",
        *fairness.guarantees(recipe),
        "",
        "## Splits",
        "",
        *[f"- `{k}`: {v}" for k, v in info["task"]["splits"].items()],
        "",
        "## Results",
        "",
        table.render(),
        "",
        *probe_md,
        "## Fine-tuning vs prompting (paired bootstrap on the same examples)",
        "",
        ptable.render() if ptable.rows else "(no FT/ICL pair in this study)",
        "",
        *spread_md,
        "## Compute (means per cell; FLOPs counted as in lab/core/compute.py, LoRA honestly)",
        "",
        ctable.render(),
        "",
        "## Contamination (word 8-grams of eval examples in what the model saw)",
        "",
        "Eval examples (question, answer, rationale, program) against everything the model may "
        "have seen: the train pool, the dev split, fixed demo sets. Words present in at least "
        f"{TEMPLATE_SHARE:.0%} of those texts are the task's template and are dropped first, "
        "so that only 8-grams made at least half of varying content (numbers, names, the words "
        "of a problem) count. `70%+ seen`: examples with at least 70% of their 8-grams in what "
        "the model saw (near-copies).",
        "",
        contam.render(),
        "",
        *[x for _k, title, t in breakdown for x in (f"## {title}", "", t.render(), "")],
        "## Plots",
        "",
        *[f"![{k}](plots/{Path(v).name})" for k, v in figs.items()],
        "",
    ]
    atomic_write_text(rdir / "report.md", "\n".join(md))
    page = _html(
        recipe,
        head,
        verdicts,
        table,
        ptable,
        ctable,
        contam,
        figs,
        md,
        [*spread_sections, *breakdown],
        probe_sections,
    )
    atomic_write_text(rdir / "index.html", page)
    study = {
        "study_id": info.get("study_id"),
        "name": recipe.name,
        "model": str(recipe.model),
        "task": recipe.task.name,
        "budgets": recipe.budgets,
    }
    data = {
        "headline": head,
        "verdicts": verdicts,
        "columns": table.columns,
        "rows": table.rows,
        **study,
        "paired": {"columns": typed.columns, "rows": typed.rows},
    }
    atomic_write_text(rdir / "summary.json", json.dumps(data, default=str, indent=1))
    extra = {
        "results": summary_tables.results_long(scores, list(agg), eval_splits),
        "paired": typed,
        "compute": ctable,
        "contamination": contam,
        "disagreements": summary_tables.disagreements(scores, presults, eval_splits),
    }
    extra |= {key: t for key, _title, t in breakdown}
    extra |= {"probes": probes, "task_probes": task_probes}
    if spread:
        extra |= {
            "formats": format_tables.formats_table(spread["formats"], recipe.prompt_formats()),
            "format_spread": format_tables.spread_table(spread),
            "format_scores": format_tables.scores_table(spread),
            "format_verdicts": format_tables.verdicts_table(spread),
        }
    values = summary_tables.answer_values(pick)
    if spread_pick:
        values |= {
            "answer/holds_under_every_format": bool(spread_pick["holds"]),
            "answer/prompt_formats": len(spread["formats"]),
        }
    return Summary(
        table,
        head,
        figs,
        ptable,
        {k: t for k, t in extra.items() if t.rows},
        values,
        probes=probes if probes.rows else None,
        task_probes=task_probes if task_probes.rows else None,
        cells=list(scores.meta),
        verdicts=verdicts,
        notes={t: [x for x in _section(md, t) if x] for t in ("Fairness", "Splits")},
    )


def _breakdown_tables(scores: Scores, splits: list[str]) -> list[tuple[str, str, Table]]:
    """(W&B key, title, table): Brier scores and ECE of the choice-scored splits and the
    per-heuristic / subcase / label accuracy tables (lab/report/breakdown.py), from the per-example
    predictions."""
    out = []
    brier = brier_table(scores.cells, scores.preds, splits)
    if brier:
        out.append(("brier", "Brier score (choice-scored splits; lower is better)", Table(*brier)))
    calibration = calibration_table(scores.cells, scores.preds, splits)
    if calibration:
        title = (
            "Expected calibration error (choice-scored splits; top-label confidence over the "
            "choices, 15 equal-width / equal-mass bins, mean over seeds; lower is better)"
        )
        out.append(("calibration", title, Table(*calibration)))
    for title, cols, rows in breakdowns(scores.cells, scores.preds, splits):
        key = f"accuracy_by_{cols[0]}_{title.split('`')[1]}"
        out.append((key, title, Table(cols, rows)))
    return out


def _img(name: str, path: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"


def _section(md: list[str], title: str) -> list[str]:
    """The lines of report.md's section `## <title>` (up to the next heading)."""
    if f"## {title}" not in md:
        return []
    start = md.index(f"## {title}") + 1
    end = next((i for i in range(start, len(md)) if md[i].startswith("#")), len(md))
    return md[start:end]


def _html(
    recipe, head, verdicts, table, ptable, ctable, contam, figs, md, extra=(), probes=()
) -> str:
    imgs = "".join(
        f"<h3>{html.escape(k)}</h3>{_img(k, v)}" for k, v in figs.items() if k != "forest"
    )
    notes = [
        x for x in md[: md.index("## Fairness")] if x.startswith("- ") and x[2:] not in verdicts
    ]
    lines = "".join(f"<li>{html.escape(v)}</li>" for v in verdicts)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(recipe.name)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(recipe.name)}</h1>"
        + (
            f"<h2>Verdict per compared pair</h2><ul class='verdicts'>{lines}</ul>"
            if verdicts
            else ""
        )
        + (_img("forest", figs["forest"]) if "forest" in figs else "")
        + (f"<p class='answer'><b>Answer.</b> {html.escape(head)}</p>" if head else "")
        + f"<p>{markup.inline(recipe.description.strip())}</p>{markup.bullets(notes)}"
        + f"<h2>Fairness</h2>{markup.bullets(_section(md, 'Fairness'))}"
        + f"<h2>Splits</h2>{markup.bullets(_section(md, 'Splits'))}"
        + f"<h2>Results</h2>{table.html()}"
        + "".join(f"<h2>{html.escape(title)}</h2>{t.html()}" for t, title, _text in probes)
        + f"<h2>Fine-tuning vs prompting (paired bootstrap)</h2>{ptable.html()}"
        f"<h2>Compute</h2>{ctable.html()}<h2>Contamination</h2>{contam.html()}"
        + "".join(f"<h2>{html.escape(t)}</h2>{tab.html()}" for _k, t, tab in extra)
        + f"<h2>Plots</h2>{imgs}</body></html>"
    )
