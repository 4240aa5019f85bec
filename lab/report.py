"""The comparison a reviewer reads: results with 95% bootstrap CIs (over seeds and
examples), paired FT-vs-ICL tests, the one-sentence answer, contamination, compute, plots.

Written to OUT/report/report.md and OUT/report/index.html (self-contained: plots inlined).
All numbers come from OUT/results.jsonl and the per-example predictions.
"""

from __future__ import annotations

import base64
import html
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.contamination import TEMPLATE_SHARE, contamination_table, example_text, seen_texts
from eval.stats import bootstrap_ci
from lab import fairness, plots, verdict
from lab.breakdown import breakdowns, brier_table
from lab.io import atomic_write_text, read_json, read_jsonl
from lab.probe_report import probe_table
from lab.recipe import Recipe
from lab.tasks.base import ID_EVAL_SPLIT, SECOND_SCORINGS, Example, is_ood, ood_mean_splits

Group = tuple[str, Any]  # (arm, budget)


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

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Summary:
    table: Table
    headline: str | None = None
    figures: dict[str, str] = field(default_factory=dict)
    paired: Table | None = None
    extra: dict[str, Table] = field(default_factory=dict)  # more tables for W&B
    values: dict[str, Any] = field(default_factory=dict)  # W&B summary scalars
    probes: Table | None = None  # BBH
    task_probes: Table | None = None  # cross-task probes


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) >= 1000 or (v and abs(v) < 0.001) else f"{v:.3f}"
    return "-" if v is None else str(v)


def _ci(t: tuple[float, float, float] | None) -> str:
    return "-" if t is None else f"{t[0]:.3f} [{t[1]:.2f}, {t[2]:.2f}]"


class Scores:
    """Per-example scores of the comparison's main variant of every cell."""

    def __init__(self, out: Path, rows: list[dict[str, Any]]):
        self.cells: dict[Group, list[str]] = defaultdict(list)  # group -> cell keys
        self.meta: dict[str, dict[str, Any]] = {}
        for r in rows:
            main = r["variant"] == ("prompted" if r["method"] == "icl" else r.get("selected"))
            if not main or r.get("probe") or r["cell"] in self.meta:
                continue
            self.meta[r["cell"]] = r
            self.cells[(r["arm"], r["budget"])].append(r["cell"])
        self.out = out
        self._cache: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def preds(self, cell: str, split: str) -> list[dict[str, Any]]:
        key = (cell, split)
        if key not in self._cache:
            variant = self.meta[cell]["variant"]
            path = self.out / "cells" / cell / "predictions" / variant / f"{split}.jsonl"
            self._cache[key] = sorted(read_jsonl(path), key=lambda p: p["id"])
        return self._cache[key]

    def ids(self, group: Group, splits: list[str]) -> list[str]:
        """The example ids of the group's columns (every replicate must hold the same)."""
        cells = self.cells[group]
        first = [p["id"] for s in splits for p in self.preds(cells[0], s)]
        for cell in cells[1:]:
            ids = [p["id"] for s in splits for p in self.preds(cell, s)]
            fairness.check_same_ids(first, ids, f"cells {cells[0]} and {cell} on {splits}")
        return first

    def matrix(self, group: Group, splits: list[str], metric: str = "correct") -> np.ndarray:
        """(replicates, examples of all `splits` concatenated); the replicates' columns are
        checked to be the same examples."""
        self.ids(group, splits)
        return np.array(
            [
                [float(p[metric]) for s in splits for p in self.preds(cell, s)]
                for cell in self.cells[group]
            ]
        )

    def paired(
        self, a: Group, b: Group, splits: list[str], metric: str = "correct"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The two groups' matrices on `splits`, after checking their columns are the same
        examples (stops with a LabError naming both if not)."""
        where = f"{a[0]} @ {a[1]} vs {b[0]} @ {b[1]} on {splits}"
        fairness.check_same_ids(self.ids(a, splits), self.ids(b, splits), where)
        return self.matrix(a, splits, metric), self.matrix(b, splits, metric)

    def labelled(self, group: Group) -> int | str:
        """The labelled examples behind the group's main rows: one count, or a note when it
        is not recorded (a study of an older lab) or differs between replicates."""
        counts = {self.meta[c].get("labelled_examples") for c in self.cells[group]}
        if None in counts:
            return "not recorded"
        return counts.pop() if len(counts) == 1 else "/".join(map(str, sorted(counts)))


def _ood(splits: list[str]) -> list[str]:
    """Every OOD split: one column each."""
    return [s for s in splits if is_ood(s)]


def comparison(recipe: Recipe, out: Path, rows: list[dict[str, Any]], splits: list[str]):
    """The results table (one column per OOD split; the OOD mean and log p(gold) OOD pool
    the examples of `ood_mean_splits`: a second scoring of a split is not counted twice)."""
    scores = Scores(out, rows)
    ood = _ood(splits)
    in_mean = ood_mean_splits(splits)
    cells_json = {c: read_json(out / "cells" / c / "cell.json") for c in scores.meta}
    columns = ["arm", "method", "format", "budget", "k / n_train (seen)",
               "labelled (train + held out + demos)", "seeds", "ID (test)", *ood,
               "OOD mean", "log p(gold) ID", "log p(gold) OOD", "train FLOPs", "infer FLOPs/ex"]  # fmt: skip
    table_rows, agg = [], {}
    order = {a.name: i for i, a in enumerate(recipe.arms)}
    budgets = {b: i for i, b in enumerate(recipe.budgets or [])}
    for group in sorted(scores.cells, key=lambda g: (order[g[0]], budgets.get(g[1], -1))):
        arm, budget = group
        meta = scores.meta[scores.cells[group][0]]
        id_ci = bootstrap_ci(scores.matrix(group, [ID_EVAL_SPLIT]))
        per = {s: bootstrap_ci(scores.matrix(group, [s])) for s in ood}
        ood_ci = bootstrap_ci(scores.matrix(group, in_mean)) if in_mean else None
        logp = {}
        for name, ss in (("id", [ID_EVAL_SPLIT]), ("ood", in_mean)):
            try:
                logp[name] = float(scores.matrix(group, ss, "gold_logprob").mean()) if ss else None
            except (TypeError, KeyError):
                logp[name] = None
        cj = [cells_json[c] for c in scores.cells[group]]
        train_flops = statistics.fmean(c["compute"].get("train_flops", 0.0) for c in cj)
        variant = meta["variant"]
        infer = statistics.fmean(
            c["metrics"][f"{variant}/{s}"]["flops_per_example"] for c in cj for s in splits
        )
        n_eval = sum(len(scores.preds(scores.cells[group][0], s)) for s in splits)
        size = meta.get("n_train") if meta["method"] != "icl" else meta.get("k")
        if meta.get("examples_seen") is not None:
            size = f"{size} ({meta['examples_seen']} seen)"
        if meta.get("demos_fixed"):
            size = f"{size} (fixed set '{meta['demos']}', not from the pool)"
        if meta.get("demos_truncated"):
            size = f"{size} (of {meta['k_requested']}: context)"
        agg[group] = {"id": id_ci, "ood": ood_ci, "method": meta["method"], "format": meta["format"],
                      "flops": train_flops + infer * n_eval, "per": per, "logp": logp,
                      "train_flops": train_flops, "infer": infer, "n_eval": n_eval,
                      "train": cj[0]["train"],  # the first replicate's losses, for the plot
                      "train_s": statistics.fmean(c["compute"].get("train_s", 0.0) for c in cj),
                      "eval_s": statistics.fmean(c["compute"].get("eval_s", 0.0) for c in cj)}  # fmt: skip
        table_rows.append(
            [
                arm,
                meta["method"],
                meta["format"],
                "-" if budget is None else budget,
                size,
                fairness.describe({**meta, "labelled_examples": scores.labelled(group)}),
                len(cj),
                _ci(id_ci),
                *[_ci(per[s]) for s in ood],
                _ci(ood_ci),
                logp["id"],
                logp["ood"],
                train_flops or None,
                infer,
            ]  # fmt: skip
        )
    return Table(columns, table_rows), agg, scores


def matched_pairs(recipe: Recipe, scores: Scores) -> list[tuple[Group, Group]]:
    """Each FT arm (per budget) vs a k-shot ICL arm with the same budget: one with as many
    labelled examples first, then the same format (else the answer format), then demos from
    the pool (the FT data) before a fixed demo set. A pair with unequal labelled examples is
    kept, to be reported as such, never tested."""
    pairs = []
    icl = {
        g: scores.meta[c[0]]
        for g, c in scores.cells.items()
        if scores.meta[c[0]]["method"] == "icl"
    }
    for group, cells in scores.cells.items():
        m = scores.meta[cells[0]]
        if m["method"] == "icl":
            continue
        n = scores.labelled(group)
        cands = [
            g for g, im in icl.items()
            if g[1] == group[1] and im.get("k", 0) > 0 and im["format"] in (m["format"], "answer")
        ]  # fmt: skip
        cands.sort(
            key=lambda g: (
                not isinstance(n, int) or scores.labelled(g) != n,
                icl[g]["format"] != m["format"],
                bool(icl[g].get("demos_fixed")),
            )
        )
        if cands:
            pairs.append((group, cands[0]))
    return pairs


def paired_table(pairs, scores: Scores, splits: list[str]) -> tuple[Table, list[dict[str, Any]]]:
    """Per pair: the labelled examples of both arms and, when they are equal, the ID gain,
    the OOD gain and their difference (one joint paired bootstrap on the same examples,
    `verdict.paired_gains`); "unequal budgets" otherwise."""
    ood = ood_mean_splits(splits)  # the OOD gain is on the OOD mean's examples
    rows, results = [], []
    for ft, icl in pairs:
        n_ft, n_icl = scores.labelled(ft), scores.labelled(icl)
        res: dict[str, Any] = {"ft": ft, "icl": icl, "labelled": (n_ft, n_icl),
                               "equal": isinstance(n_ft, int) and n_ft == n_icl,
                               "has_ood": bool(ood)}  # fmt: skip
        recorded = all(isinstance(n, int) for n in (n_ft, n_icl))
        cells = ["unequal budgets" if recorded else "not recorded"] * (3 if ood else 1)
        if res["equal"]:
            id_ft, id_icl = scores.paired(ft, icl, [ID_EVAL_SPLIT])
            per = [scores.paired(ft, icl, [s]) for s in ood]
            res |= verdict.paired_gains(id_ft, id_icl, [a for a, _ in per], [b for _, b in per])
            cells = [
                f"{res[n]['diff']:+.3f} [{res[n]['lo']:+.2f}, {res[n]['hi']:+.2f}] p={res[n]['p_value']:.3g}"
                for n in verdict.QUANTITIES
                if n in res
            ]
        results.append(res)
        fmt = [scores.meta[scores.cells[g][0]]["format"] for g in (ft, icl)]
        labels = f"{n_ft} / {n_icl}" + (
            " ({} vs {} targets)".format(*fmt) if fmt[0] != fmt[1] else ""
        )
        rows.append(
            [f"{ft[0]}" + (f" @ {ft[1]}" if ft[1] is not None else ""), icl[0], labels] + cells
        )
    cols = ["fine-tuned", "vs ICL", "labelled examples (FT / ICL)", "ID gain (FT - ICL)",
            "OOD gain (FT - ICL)", "ID gain - OOD gain"][: 4 if not ood else 6]  # fmt: skip
    return Table(cols, rows), results


def compute_table(agg: dict[Group, dict[str, Any]], pairs: list[tuple[Group, Group]]) -> Table:
    """The cost view: what each arm costs to build and to query, and — for each FT arm vs its
    matched k-shot arm — after how many queries fine-tuning's training FLOPs are paid back by
    its shorter (demo-free) prompts."""
    icl_of = dict(pairs)
    rows = []
    for g, a in agg.items():
        even: Any = "-"
        if g in icl_of:
            saved = agg[icl_of[g]]["infer"] - a["infer"]  # FLOPs saved per query
            even = f"{a['train_flops'] / saved:,.0f}" if saved > 0 else "never"
        rows.append([
            g[0], "-" if g[1] is None else g[1], a["train_flops"] or None, a["infer"],
            a["flops"], f"{a['train_s']:.1f}" if a["train_flops"] else "-", f"{a['eval_s']:.1f}",
            f"{icl_of[g][0]}" if g in icl_of else "-", even,
        ])  # fmt: skip
    cols = ["arm", "budget", "train FLOPs", "infer FLOPs/query", "total FLOPs (train + eval set)",
            "train s", "eval s", "vs ICL", "break-even queries"]  # fmt: skip
    return Table(cols, rows)


def _answer_arms(recipe: Recipe) -> list[str]:
    return [a.name for a in recipe.arms if a.method != "icl" and a.format == "answer"]


def headline(recipe: Recipe, results: list[dict[str, Any]]) -> str | None:
    """The answer in one sentence, decided by tested quantities (lab/verdict.py)."""
    return verdict.headline(
        str(recipe.model), recipe.task.name, recipe.budgets, results, _answer_arms(recipe)
    )


def _figures(
    out: Path, recipe: Recipe, agg, scores: Scores, splits: list[str], rows, rdir: Path
) -> dict[str, str]:
    fig_dir = rdir / "plots"
    figs: dict[str, str] = {}
    styles = plots.arm_styles([(a.name, a.method) for a in recipe.arms])
    top = {}  # arm -> its group at the largest budget
    for g in agg:
        top[g[0]] = g
    pts = [{"label": a, "method": agg[g]["method"], "id": agg[g]["id"], "ood": agg[g]["ood"]}
           for a, g in top.items() if agg[g]["ood"]]  # fmt: skip
    if pts:
        figs["id_vs_ood"] = str(plots.id_vs_ood(pts, fig_dir / "id_vs_ood.png", styles))
        cost = [{"label": g[0], "method": a["method"], "flops": a["flops"], "id": a["id"][0],
                 "ood": a["ood"][0]} for g, a in agg.items() if a["ood"]]  # fmt: skip
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
            x = meta.get("n_train") if meta["method"] != "icl" else meta.get("k")
            curves[arm]["ID"].append((x, *a["id"]))
            if a["ood"]:
                curves[arm]["OOD"].append((x, *a["ood"]))
        figs["vs_budget"] = str(plots.vs_budget(curves, fig_dir / "vs_budget.png", styles))
    probe = _probe_rows(rows, splits)
    if probe:
        formats = {a.name: a.format for a in recipe.arms}
        for p in probe:
            g = matched_kshot(scores, formats[p["arm"]], recipe.eval.ft_icl_probe_k)
            p["base_k"] = agg[g]["id"][0] if g is not None else None
        figs["ft_icl_probe"] = str(plots.ft_icl_probe(probe, fig_dir / "ft_icl_probe.png"))
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


def matched_kshot(scores: Scores, fmt: str, k: int) -> Group | None:
    """The base model's k-shot arm that matches an FT-then-ICL probe: k pool demos (the
    probe's demos are the same prefix of the data order), the FT arm's format (else the
    answer format); None when the study has no such arm."""
    found = [
        (m["format"] != fmt, -i, g)
        for i, (g, cells) in enumerate(scores.cells.items())
        for m in [scores.meta[cells[0]]]
        if m["method"] == "icl" and m.get("k") == k and not m.get("demos_fixed")
        and m["format"] in (fmt, "answer")
    ]  # fmt: skip
    return min(found)[2] if found else None


def _probe_rows(rows: list[dict[str, Any]], splits: list[str]) -> list[dict[str, Any]]:
    """FT models prompted with k demos vs at k = 0, per arm (means over cells and budgets' top)."""
    by: dict[tuple[str, str, bool], list[float]] = defaultdict(list)
    in_mean = set(ood_mean_splits(splits))
    for r in rows:
        if r["method"] == "icl" or r["metric"] != "exact_match" or r.get("probe"):
            continue
        if r["ood"] and r["split"] not in in_mean:  # a second scoring: counted once
            continue
        if r["variant"] == r.get("selected"):
            by[(r["arm"], "0", r["ood"])].append(r["value"])
        elif r.get("probe_k"):
            by[(r["arm"], "k", r["ood"])].append(r["value"])
    arms = sorted({a for a, kind, _ in by if kind == "k"})
    return [
        {
            "arm": a,
            **{
                f"{'ood' if o else 'id'}_{kind}": statistics.fmean(by[(a, kind, o)] or [0.0])
                for kind in ("0", "k")
                for o in (False, True)
            },
        }  # fmt: skip
        for a in arms
    ]


def _contamination(splits: dict[str, list[Example]], eval_splits: list[str]) -> Table:
    """Eval examples vs everything a model of the study saw, over the varying content (the
    task's template words dropped: eval/contamination.py)."""
    rows = contamination_table(
        seen_texts(splits),
        {s: [example_text(e) for e in splits[s]] for s in eval_splits},
        template_share=TEMPLATE_SHARE,
    )
    return Table(
        ["split", "examples", "with a shared 8-gram", "rate", "max overlap", "70%+ seen"],
        [
            [
                r["split"],
                r["examples"],
                r["contaminated"],
                r["rate"],
                r["max_overlap"],
                r["mostly_seen"],
            ]
            for r in rows
        ],  # fmt: skip
    )


def write_report(out: Path, recipe: Recipe, rows: list[dict[str, Any]], info: dict[str, Any],
                 splits: dict[str, list[Example]], rdir: Path | None = None) -> Summary:  # fmt: skip
    """The report of one base model's study, in `rdir` (default OUT/report)."""
    rdir = rdir or out / "report"
    eval_splits = info["eval_splits"]
    table, agg, scores = comparison(recipe, out, rows, eval_splits)
    pairs = matched_pairs(recipe, scores)
    ptable, presults = paired_table(pairs, scores, eval_splits)
    head = headline(recipe, presults)
    ctable = compute_table(agg, pairs)
    figs = _figures(out, recipe, agg, scores, eval_splits, rows, rdir)
    contam = _contamination(splits, eval_splits)
    sizes = ", ".join(f"{k}={v}" for k, v in info["split_sizes"].items())
    breakdown = _breakdown_tables(scores, eval_splits)
    arm_names = [a.name for a in recipe.arms]
    probes = Table(*probe_table(rows, arm_names))
    task_probes = Table(*probe_table(rows, arm_names, cross_task=True))
    probe_sections = [
        (probes, "Generic-reasoning probes",
         "Exact match per subtask and the macro average over subtasks (mean over cells). "
         "BBH: the standard 3-shot CoT prompts, whatever the arm's demos or weights."),
        (task_probes, "Cross-task probes",
         "Exact match on eval splits of other tasks of the lab, scored as those tasks score "
         "them, and the macro average over each probed task's splits (mean over cells). One "
         "fixed prompt per probed task (its k demos from its own train pool) for every arm: "
         "does fine-tuning on this task help or hurt the others?"),
    ]  # fmt: skip
    probe_sections = [(t, title, text) for t, title, text in probe_sections if t.rows]
    in_mean = ood_mean_splits(eval_splits)
    second = [s for s in _ood(eval_splits) if s not in in_mean]
    mean_md = [
        "- OOD mean: pooled over the examples of " + ", ".join(f"`{s}`" for s in in_mean)
        + "".join(f"; `{s}` has its column but is not in the mean (it scores the problems of "
                  f"`{SECOND_SCORINGS[s]}` a second way)" for s in second)
    ] if second else []  # fmt: skip
    probe_md = [
        line
        for t, title, text in probe_sections
        for line in (f"## {title} (every arm, each probe's own fixed prompt)", "", text, "",
                     t.render(), "")
    ]  # fmt: skip
    md = [
        f"# {recipe.name}", "", recipe.description.strip(), "",
        f"**Answer.** {head}" if head else "", "",
        f"- model: `{recipe.model}` (weights fingerprint `{info['model']['fingerprint']}`, the same for every arm)",
        f"- task: `{recipe.task.name}` (seed {recipe.task.seed}; {sizes}; train pool {info.get('pool_size')})",
        f"- data seeds {recipe.seeds}; train seeds {recipe.train_seeds or 'same as data'}; "
        f"budgets {recipe.budgets or '-'}",
        "- metric: exact match; mean [95% bootstrap CI over seeds and examples]; FT arms are "
        "evaluated at k = 0 with the ICL template",
        "- log p(gold): mean log-probability of ' <gold answer>' right after the prompt: the smooth "
        "metric; for CoT and code arms it measures answering directly, without the rationale",
        *mean_md,
        "", "## Fairness", "", *fairness.guarantees(recipe),
        "", "## Splits", "", *[f"- `{k}`: {v}" for k, v in info["task"]["splits"].items()],
        "", "## Results", "", table.render(), "",
        *probe_md,
        "## Fine-tuning vs prompting (paired bootstrap on the same examples)", "",
        ptable.render() if ptable.rows else "(no FT/ICL pair in this study)", "",
        "## Compute (means per cell; FLOPs counted as in lab/compute.py, LoRA honestly)", "",
        ctable.render(), "",
        "## Contamination (word 8-grams of eval examples in what the model saw)", "",
        "Eval examples (question, answer, rationale, program) against everything the model may "
        "have seen: the train pool, the dev split, fixed demo sets. Words present in at least "
        f"{TEMPLATE_SHARE:.0%} of those texts are the task's template and are dropped first, "
        "so that only 8-grams made at least half of varying content (numbers, names, the words "
        "of a problem) count. `70%+ seen`: examples with at least 70% of their 8-grams in what "
        "the model saw (near-copies).", "",
        contam.render(), "",
        *[x for _k, title, t in breakdown for x in (f"## {title}", "", t.render(), "")],
        "## Plots", "", *[f"![{k}](plots/{Path(v).name})" for k, v in figs.items()], "",
    ]  # fmt: skip
    atomic_write_text(rdir / "report.md", "\n".join(md))
    atomic_write_text(
        rdir / "index.html",
        _html(recipe, head, table, ptable, ctable, contam, figs, md, breakdown, probe_sections),
    )
    atomic_write_text(
        rdir / "summary.json",
        json.dumps(
            {"headline": head, "columns": table.columns, "rows": table.rows}, default=str, indent=1
        ),
    )
    extra = {"paired": ptable, "compute": ctable, "contamination": contam}
    extra |= {key: t for key, _title, t in breakdown}
    extra |= {"probes": probes, "task_probes": task_probes}
    return Summary(
        table, head, figs, ptable, {k: t for k, t in extra.items() if t.rows},
        probes=probes if probes.rows else None,
        task_probes=task_probes if task_probes.rows else None,
    )  # fmt: skip


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}.answer{background:#eef6ff;padding:.8em}"""


def _breakdown_tables(scores: Scores, splits: list[str]) -> list[tuple[str, str, Table]]:
    """(W&B key, title, table): Brier scores of the choice-scored splits and the
    per-heuristic / subcase / label accuracy tables (lab/breakdown.py), from the per-example
    predictions."""
    out = []
    brier = brier_table(scores.cells, scores.preds, splits)
    if brier:
        out.append(("brier", "Brier score (choice-scored splits; lower is better)", Table(*brier)))
    for title, cols, rows in breakdowns(scores.cells, scores.preds, splits):
        key = f"accuracy_by_{cols[0]}_{title.split('`')[1]}"
        out.append((key, title, Table(cols, rows)))
    return out


def _html(recipe, head, table, ptable, ctable, contam, figs, md, extra=(), probes=()) -> str:
    imgs = "".join(
        f"<h3>{html.escape(k)}</h3><img alt='{k}' src='data:image/png;base64,"
        f"{base64.b64encode(Path(v).read_bytes()).decode()}'>"
        for k, v in figs.items()
    )
    info = "".join(f"<li>{html.escape(line[2:])}</li>" for line in md if line.startswith("- "))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(recipe.name)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(recipe.name)}</h1>"
        f"<p>{html.escape(recipe.description)}</p>"
        + (f"<p class='answer'><b>Answer.</b> {html.escape(head)}</p>" if head else "")
        + f"<ul>{info}</ul><h2>Results</h2>{table.html()}"
        + "".join(f"<h2>{html.escape(title)}</h2>{t.html()}" for t, title, _text in probes)
        + f"<h2>Fine-tuning vs prompting (paired bootstrap)</h2>{ptable.html()}"
        f"<h2>Compute</h2>{ctable.html()}<h2>Contamination</h2>{contam.html()}"
        + "".join(f"<h2>{html.escape(t)}</h2>{tab.html()}" for _k, t, tab in extra)
        + f"<h2>Plots</h2>{imgs}</body></html>"
    )
