"""Analysis that returns data: per-example scores of every cell, the comparison table with
bootstrap CIs, FT-vs-ICL pairs at equal labelled-example counts and their paired tests, the
one-sentence answer, compute, contamination, and the FT-then-ICL rows. Nothing is written
here (study_report.py renders it)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from eval.contamination import TEMPLATE_SHARE, contamination_table, example_text, seen_texts
from eval.stats import bootstrap_ci
from lab.core import fairness
from lab.core.example import ID_EVAL_SPLIT, Example, is_ood, ood_mean_splits
from lab.core.formats import MAIN, format_variant
from lab.core.layout import StudyDir
from lab.core.recipe import Recipe
from lab.report import verdict
from lab.report.table import Table, ci

Group = tuple[str, Any]  # (arm, budget)


class Scores:
    """Per-example scores of the comparison's compared variant of every cell; with
    `prompt_format` (eval.formats), of that variant evaluated in that prompt format."""

    def __init__(self, out: Path, rows: list[dict[str, Any]], prompt_format: str = MAIN):
        self.cells: dict[Group, list[str]] = defaultdict(list)  # group -> cell keys
        self.meta: dict[str, dict[str, Any]] = {}
        for r in rows:
            compared = r["variant"] == ("prompted" if r["method"] == "icl" else r.get("selected"))
            if not compared or r.get("probe") or r["cell"] in self.meta:
                continue
            self.meta[r["cell"]] = r
            self.cells[(r["arm"], r["budget"])].append(r["cell"])
        self.out, self.prompt_format = out, prompt_format
        self._cache: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def preds(self, cell: str, split: str) -> list[dict[str, Any]]:
        key = (cell, split)
        if key not in self._cache:
            variant = format_variant(self.meta[cell]["variant"], self.prompt_format)
            preds = StudyDir(self.out).cell(cell).read_predictions(variant, split)
            self._cache[key] = sorted(preds, key=lambda p: p["id"])
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
        """The labelled examples behind the group's compared rows: one count, or a note when it
        is not recorded (a study of an older lab) or differs between replicates."""
        counts = {self.meta[c].get("labelled_examples") for c in self.cells[group]}
        if None in counts:
            return "not recorded"
        return counts.pop() if len(counts) == 1 else "/".join(map(str, sorted(counts)))


def ood_columns(splits: list[str]) -> list[str]:
    """Every OOD split: one column each."""
    return [s for s in splits if is_ood(s)]


def comparison(recipe: Recipe, out: Path, rows: list[dict[str, Any]], splits: list[str]):
    """The results table (one column per OOD split; the OOD mean and log p(gold) OOD pool
    the examples of `ood_mean_splits`: a second scoring of a split is not counted twice)."""
    scores = Scores(out, rows)
    ood = ood_columns(splits)
    in_mean = ood_mean_splits(splits)
    cells_json = {c: StudyDir(out).cell(c).read() for c in scores.meta}
    columns = [
        "arm",
        "method",
        "format",
        "budget",
        "k / n_train (seen)",
        "labelled (train + held out + demos)",
        "seeds",
        "ID (test)",
        *ood,
        "OOD mean",
        "log p(gold) ID",
        "log p(gold) OOD",
        "train FLOPs",
        "infer FLOPs/ex",
    ]
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
        per_split = [c["metrics"][f"{variant}/{s}"] for c in cj for s in splits]
        cached = statistics.fmean(
            m.get("flops_per_query_cached", m["flops_per_example"]) for m in per_split
        )
        prefix = statistics.fmean(m.get("prefix_flops", 0.0) for m in per_split)
        size = meta.get("n_train") if meta["method"] != "icl" else meta.get("k")
        if meta.get("examples_seen") is not None:
            size = f"{size} ({meta['examples_seen']} seen)"
        if meta.get("rationales_written") is not None:  # format cot_self
            size = (
                f"{size} ({meta['rationales_kept']}/{meta['rationales_written']} rationales kept)"
            )
        if meta.get("train_k"):  # in-context FT: its inputs and prompt hold train_k demos
            size = f"{size}, {meta['k']} demos in context"
        if meta.get("demos") == "knn":
            size = f"{size} per query, retrieved (BM25) from {meta['index_size']}"
        if meta.get("demos_fixed"):
            size = f"{size} (fixed set '{meta['demos']}', not from the pool)"
        if meta.get("demos_truncated"):
            size = f"{size} (of {meta['k_requested']}: context)"
        agg[group] = {
            "id": id_ci,
            "ood": ood_ci,
            "method": meta["method"],
            "format": meta["format"],
            "flops": train_flops + infer * n_eval,
            "per": per,
            "logp": logp,
            "train_flops": train_flops,
            "infer": infer,
            "n_eval": n_eval,
            "infer_cached": cached,
            "prefix_flops": prefix,
            "train": cj[0]["train"],  # the first replicate's losses, for the plot
            "train_s": statistics.fmean(c["compute"].get("train_s", 0.0) for c in cj),
            "eval_s": statistics.fmean(c["compute"].get("eval_s", 0.0) for c in cj),
        }
        table_rows.append(
            [
                arm,
                meta["method"],
                meta["format"],
                "-" if budget is None else budget,
                size,
                fairness.describe({**meta, "labelled_examples": scores.labelled(group)}),
                len(cj),
                ci(id_ci),
                *[ci(per[s]) for s in ood],
                ci(ood_ci),
                logp["id"],
                logp["ood"],
                train_flops or None,
                infer,
            ]
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
            g
            for g, im in icl.items()
            if g[1] == group[1] and im.get("k", 0) > 0 and im["format"] in (m["format"], "answer")
        ]
        cands.sort(
            key=lambda g: (
                not isinstance(n, int) or scores.labelled(g) != n,
                icl[g]["format"] != m["format"],
                bool(icl[g].get("demos_fixed")),
                icl[g].get("demos") == "knn",  # the pool's prefix (the FT data) before retrieval
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
        res: dict[str, Any] = {
            "ft": ft,
            "icl": icl,
            "labelled": (n_ft, n_icl),
            "equal": isinstance(n_ft, int) and n_ft == n_icl,
            "has_ood": bool(ood),
        }
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
    cols = [
        "fine-tuned",
        "vs ICL",
        "labelled examples (FT / ICL)",
        "ID gain (FT - ICL)",
        "OOD gain (FT - ICL)",
        "ID gain - OOD gain",
    ][: 4 if not ood else 6]
    return Table(cols, rows), results


def answer_arms(recipe: Recipe) -> list[str]:
    return [a.name for a in recipe.arms if a.method != "icl" and a.format == "answer"]


def headline(recipe: Recipe, results: list[dict[str, Any]]) -> str | None:
    """The answer in one sentence, decided by tested quantities (lab/report/verdict.py)."""
    return verdict.answer_sentence(
        str(recipe.model), recipe.task.name, recipe.budgets, results, answer_arms(recipe)
    )


def matched_kshot(scores: Scores, fmt: str, k: int) -> Group | None:
    """The base model's k-shot arm that matches an FT-then-ICL variant: k pool demos (the
    variant's demos are the same prefix of the data order), the FT arm's format (else the
    answer format); None when the study has no such arm."""
    found = [
        (m["format"] != fmt, -i, g)
        for i, (g, cells) in enumerate(scores.cells.items())
        for m in [scores.meta[cells[0]]]
        if m["method"] == "icl"
        and m.get("k") == k
        and not m.get("demos_fixed")
        and m.get("demos") != "knn"
        and m["format"] in (fmt, "answer")
    ]
    return min(found)[2] if found else None


def ft_then_icl_rows(rows: list[dict[str, Any]], splits: list[str]) -> list[dict[str, Any]]:
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
        elif r.get("ft_then_icl_k"):
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
        }
        for a in arms
    ]


def contamination(splits: dict[str, list[Example]], eval_splits: list[str]) -> Table:
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
        ],
    )
