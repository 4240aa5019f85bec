"""One cell, from its plan (lab/study/plan.py) to its result: train (FT arms), then evaluate
every variant on every eval split and probe split, writing predictions as each split
finishes (resumable per split), and return the cell's results rows, metrics and compute.

Variants: a prompted arm has one ("prompted"); an FT arm its selected checkpoint ("last", or
"best" with `train.select: best_dev`), the other checkpoint when it differs, and with
`eval.ft_then_icl_k` the selected checkpoint prompted with that many pool demos ("last+icl8":
does fine-tuning keep in-context learning?), and with `eval.formats` the comparison's variant
once more per prompt format ("last@s1", lab/study/format_eval.py). Every results row counts
the labelled examples behind it (`labelled_examples`); every evaluated FT checkpoint passes
the adapter check.
Probe splits (other tasks, each with its own fixed prompt) run on every variant but the
FT-then-ICL one; one macro-average row per probe family.
"""

from __future__ import annotations

import gc
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from eval.evaluate import summarize
from eval.lm import LM
from eval.parallel import evaluate_split_parallel, sum_across
from eval.probes import evaluate_probe, evaluate_task_probe, macro_average, probe_prompt
from lab.core import fairness
from lab.core.compute import cached_query_flops
from lab.core.example import is_ood
from lab.core.io import atomic_write_json, read_json
from lab.core.layout import CellDir
from lab.core.prompts import prompt, written_as
from lab.core.recipe import Recipe
from lab.report.tracking import Tracker
from lab.study.base_model import StudyBase
from lab.study.context import probe_max_new
from lab.study.plan import CellPlan, FitDemos, StudyData, Variant
from lab.study.rationales import as_generated, with_rationales
from lab.study.store import CellResult, metric_rows
from lab.study.ttt_eval import evaluate_split_ttt
from lab.tasks.task_probes import is_task_probe
from train.sharded import from_main


class CellRunner:
    """Runs cells of one study in this process: the study's data, the accelerator, the base
    model (lab/study/base_model.py) and the study's W&B tracker."""

    def __init__(
        self,
        recipe: Recipe,
        data: StudyData,
        acc: Any,
        precision: str,
        base: StudyBase,
        tracker: Tracker,
        progress: bool,
        log: Any,
        fit_demos: FitDemos | None = None,
    ):
        self.recipe, self.data, self.acc, self.precision = recipe, data, acc, precision
        self.base, self.tracker, self.progress, self.log = base, tracker, progress, log
        self.fit_demos = fit_demos  # cuts demos to the context (cot_self: its kept ones)

    def run(self, plan: CellPlan, cell_dir: CellDir) -> CellResult | None:
        """The cell's result (None on processes other than the main one)."""
        t0 = time.time()
        plan, written = with_rationales(self, plan, cell_dir)  # format cot_self (else as is)
        cell, arm, base = plan.cell, plan.cell.arm, self.base
        info: dict[str, Any] = {
            "study": self.recipe.name,
            "model": base.resolved.spec,
            "model_fingerprint": base.resolved.fingerprint,
            **base.params(),
            "arm": arm.name,
            "method": arm.method,
            "format": arm.format,
            "budget": cell.budget,
            "data_seed": cell.data_seed,
            "train_seed": cell.train_seed,
            "cell": cell.key,
            "precision": self.precision,
            **plan.describe(),
            **written,
        }
        result = CellResult(info, [], {}, {}, {}, 0.0)
        if plan.train is None:
            k = info["k"]  # knn: per query, after the context cut (plan.describe)
            if info["demos_truncated"]:
                self.log(
                    f"[lab]   {cell.key}: only {k} of {plan.k_requested} demos fit the "
                    f"context; using {k}"
                )
            info["demo_ids"] = [d.id for d in plan.demos or plan.index]  # knn: its index
            t_eval = time.time()
            self.prompted_variants(plan, cell_dir, result)
        else:
            result.train = self.train(plan, cell_dir)
            info.update(examples_seen=result.train["examples_seen"], selected=plan.selected)
            if plan.train_k:  # in-context FT: the demos of its evaluation prompt
                info["demo_ids"] = [d.id for d in plan.variants[0].spec.demos]
            t_eval = time.time()
            self.finetuned_variants(plan, cell_dir, result)
        if not self.acc.is_main_process:
            return None
        result.compute |= {
            "eval_s": time.time() - t_eval,
            "train_s": result.train.get("wall_s", 0.0),
        }
        result.wall_s = time.time() - t0
        return result

    # -- the variants ---------------------------------------------------------------------------
    def prompted_variants(self, plan: CellPlan, cell_dir: CellDir, result: CellResult) -> None:
        """A prompted arm's variant: the base model, shared by every prompted cell."""
        result.compute["train_flops"] = 0.0
        model, tok = self.base.load()
        for v in plan.variants:
            self.evaluate_variant(plan, v, model, tok, cell_dir, result)

    def train(self, plan: CellPlan, cell_dir: CellDir) -> dict[str, Any]:
        """Train the FT arm (or find it trained before an interruption): its training record."""
        from train.finetune import finetune, finished

        cell, arm = plan.cell, plan.cell.arm
        self.base.release()
        on_log = self.tracker.train_logger(len(plan.train_set), plan.train.batch_size)
        # trained before an interruption? (read once, by the main process: from_main)
        res = from_main(self.acc, lambda: finished(cell_dir.checkpoint))
        if res is None:
            res = finetune(
                self.base.resolved.path,
                list(plan.train_set),
                written_as(arm.format),
                arm.method,
                plan.train,
                cell.train_seed,
                cell_dir.checkpoint,
                accelerator=self.acc,
                progress=self.progress,
                dev_examples=list(plan.held_out) or None,
                precision=self.precision,
                style=self.recipe.prompt.style,
                turns=self.recipe.prompt.demos,
                resume_dir=cell_dir.resume,
                log=self.log,
                on_log=on_log,  # W&B: with train/epoch
                context_k=plan.train_k,  # in-context FT (train/icft_data.py)
            )
        else:
            self.log(f"[lab]   {cell.key}: trained before; evaluating {res.checkpoint}")
        self.tracker.checkpoint_steps(res.steps, res.best_step)  # evaluations' x
        return res.to_dict() | {
            "n_train": len(plan.train_set),
            "train_ids_head": [e.id for e in plan.train_set[:8]],
            "held_out_ids": [e.id for e in plan.held_out],
        }

    def finetuned_variants(self, plan: CellPlan, cell_dir: CellDir, result: CellResult) -> None:
        """An FT arm's variants, one checkpoint in memory at a time; each evaluated
        checkpoint must differ from the base model (the adapter check)."""
        train = result.train
        result.compute["train_flops"] = train.get("flops", 0.0)
        paths = {
            "last": train["checkpoint"],
            "best": train.get("best_checkpoint") or train["checkpoint"],
        }
        deltas: dict[str, float] = {}
        merges: dict[str, dict[str, Any]] = {}  # how each checkpoint was evaluated
        model = tok = None
        for v in plan.variants:
            if v.if_distinct and paths[v.checkpoint] == paths[plan.selected]:
                continue
            if v.checkpoint not in deltas:
                model = tok = None  # the previous checkpoint is freed before the next loads
                gc.collect()
                torch.cuda.empty_cache() if torch.cuda.is_available() else None
                model, tok, merges[v.checkpoint] = self.load_ft(
                    paths[v.checkpoint], plan.cell.arm.method
                )
                deltas[v.checkpoint] = self.base.output_delta(model, tok)
                if v.checkpoint == plan.selected:
                    train |= {
                        "output_delta": deltas[v.checkpoint],
                        "output_deltas": deltas,
                        "eval_merge": merges,
                    }
            self.evaluate_variant(plan, v, model, tok, cell_dir, result)

    def load_ft(self, checkpoint: str, method: str) -> tuple[Any, Any, dict[str, Any]]:
        """(model, tokenizer, merge record) of a fine-tuned checkpoint on the device: a LoRA
        adapter merged in fp32 where that is exact enough (eval/merge.py)."""
        from eval.merge import for_evaluation
        from train.finetune import load_finetuned
        from train.zero3 import whole_weights

        path, at = self.base.resolved.path, self.base.precision  # evaluation's precision

        def load() -> Any:  # load_finetuned loads whole weights, even under ZeRO-3
            return load_finetuned(path, checkpoint, method, at, unmerged=True)

        model, tok = load()
        model.to(self.acc.device)
        if method != "lora":
            return model, tok, {"path": "full weights"}
        held = [model]  # handed over (pop) so that for_evaluation can free it before merging
        del model
        with whole_weights():  # the merge reloads the base weights in fp32
            model, merge = for_evaluation(
                held.pop(),
                tok,
                path,
                checkpoint,
                at,
                self.base.check_texts,
                reload=lambda: load()[0],
            )
        if self.acc.is_main_process:
            self.log(
                f"[lab]   {Path(checkpoint).name}: evaluating the adapter "
                f"{'merged' if merge['path'] == 'merged' else 'unmerged'} (max |d log p| "
                f"{merge.get('max_abs_logprob_diff', 0):.2g}, tolerance {merge.get('tolerance')})"
            )
        return model, tok, merge

    def evaluate_variant(
        self,
        plan: CellPlan,
        v: Variant,
        model: Any,
        tok: Any,
        cell_dir: CellDir,
        result: CellResult,
    ) -> None:
        """One variant on every eval split (then the probe splits): its rows, metrics and
        the forward FLOPs it ran. Every process evaluates its shard of each split
        (eval/parallel.py); the main one writes."""
        counter = self.base.counter()
        row_cell = {k: x for k, x in result.cell.items() if k != "demo_ids"}
        ev = self.recipe.eval
        lm = LM(model, tok, ev.batch_size, progress=self.progress, invariant=ev.invariant)
        ran = {"tokens": 0, "head": 0}  # forward tokens of this variant, over all splits
        for split in self.data.eval_splits:
            p, m, counts = self._split(lm, plan, v, split, cell_dir)
            ran = {k: ran[k] + counts[k] for k in ran}
            m["flops_per_example"] = sum(  # + a test-time adapter's share (method ttt)
                counter.generate(x["prompt_tokens"], x["new_tokens"]) + x.get("ttt_flops", 0.0)
                for x in p
            ) / len(p)
            # a shared demo prefix runs once (eval/lm.py): its one-off cost, then per query
            pre = len(lm.bos) + len(lm.encode(v.spec.prefix)) if v.spec.demos else 0
            m["prefix_tokens"], m["prefix_flops"] = pre, counter.forward(pre, 0)
            m["flops_per_query_cached"] = sum(
                cached_query_flops(counter, x["prompt_tokens"], x["new_tokens"], pre)
                + x.get("ttt_flops", 0.0)  # method ttt: its adapter's share, never cached
                for x in p
            ) / len(p)
            if self.acc.is_main_process:
                self.log(
                    f"[lab]   {v.name:>10} {split:>13}: exact match {m['exact_match']:.3f} "
                    f"(n={m['n']}, no answer {m['no_answer']:.2f})"
                )
            result.metrics[f"{v.name}/{split}"] = m
            fr = v.spec.frame(tok)
            prompts = {ex.id: fr.wrap(v.spec.prompt(ex)) for ex in self.data.splits[split]}
            self.tracker.log_split(v.name, split, m, p, prompts, fr.prefix)
            result.rows += metric_rows(
                row_cell,
                m,
                variant=v.name,
                ft_then_icl_k=v.ft_then_icl_k,
                split=split,
                ood=is_ood(split),
                labelled_examples=fairness.count_labelled(plan.used, v.spec.demos, plan.index),
                prompt_format=v.prompt_format,
            )
        if v.probes:
            labelled = fairness.count_labelled(plan.used)
            self.evaluate_probes(lm, v, row_cell, labelled, cell_dir, result)
        result.compute[f"{v.name}/eval_flops_as_run"] = counter.forward(ran["tokens"], ran["head"])

    def _split(
        self, lm: LM, plan: CellPlan, v: Variant, split: str, cell_dir: CellDir
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, int]]:
        """(predictions, metrics, forward tokens) of one eval split: read back when an
        interrupted run finished it, else evaluated and written (predictions last: the
        split's done marker)."""
        r, arm, xs = self.recipe, plan.cell.arm, self.data.splits[split]
        xs = as_generated(xs) if arm.format == "cot_self" else xs  # NLI: CoT, read as text
        counts_path = cell_dir.counts(v.name, split)
        # evaluated before an interruption? (read once, by the main process: from_main)
        stored = from_main(self.acc, partial(self.stored, v, split, cell_dir))
        if stored is not None:
            if self.acc.is_main_process:
                self.log(f"[lab]   {v.name} {split}: predictions of an interrupted run reused")
            return stored[0], summarize(stored[0]), stored[1]
        before = dict(lm.counts)
        args = (r.eval.max_new_tokens[written_as(arm.format)], r.eval.code_timeout_s)
        desc = f"eval {arm.name}/{v.name}/{split}"
        if arm.method == "ttt":  # a temporary adapter per split (or query), then discarded
            seed = plan.cell.train_seed or 0
            p, m = evaluate_split_ttt(
                lm, xs, v.spec, arm.ttt, seed, *args, desc, r.eval.gold_logprob
            )
        else:
            p, m = evaluate_split_parallel(lm, xs, v.spec, *args, desc, r.eval.gold_logprob)
        counts = {k: sum_across(lm.counts[k] - before[k]) for k in ("tokens", "head")}
        if self.acc.is_main_process:
            atomic_write_json(counts_path, counts)
            cell_dir.write_predictions(v.name, split, p)  # last: the split's done marker
        return p, m, counts

    def stored(
        self, v: Variant, split: str, cell_dir: CellDir
    ) -> tuple[list[dict[str, Any]], dict[str, int]] | None:
        """(predictions, forward-token counts) a run stored for this variant and split, or
        None: none, or stored for other examples (the split changed: recomputed)."""
        path, counts_path = cell_dir.predictions(v.name, split), cell_dir.counts(v.name, split)
        if not (path.is_file() and counts_path.is_file()):
            return None
        p = cell_dir.read_predictions(v.name, split)
        if not fairness.same_ids(p, self.data.splits[split]):
            self.log(f"[lab]   {v.name} {split}: stored predictions are of other examples")
            return None
        return p, read_json(counts_path)

    # -- probe splits ---------------------------------------------------------------------------
    def evaluate_probes(
        self,
        lm: LM,
        v: Variant,
        row_cell: dict[str, Any],
        labelled: int,
        cell_dir: CellDir,
        result: CellResult,
    ) -> None:
        """Probe splits, each with its own fixed prompt (BBH: CoT answer extraction;
        cross-task probes: the probed task's own scoring): one row per split and metric,
        and one macro-average exact-match row per probe family (split `probe_<family>`:
        `probe_bbh`, `probe_gsm8k`...)."""
        r, counter = self.recipe, self.base.counter()
        families: dict[str, dict[str, dict[str, float]]] = {}
        row = {"variant": v.name, "labelled_examples": labelled}
        for split in self.data.probe_splits:
            xs, desc = self.data.splits[split], f"probe {row_cell['arm']}/{v.name}/{split}"
            task = is_task_probe(xs[0])
            if task:
                p, m = evaluate_task_probe(
                    lm,
                    xs,
                    probe_max_new(r, xs),
                    r.eval.code_timeout_s,
                    desc=desc,
                    gold_logprob=r.eval.gold_logprob,
                )
            else:  # BBH (sharded across processes, like the rest)
                p, m = evaluate_probe(lm, xs, desc=desc)
            m["flops_per_example"] = sum(
                counter.generate(x["prompt_tokens"], x["new_tokens"]) for x in p
            ) / len(p)
            if self.acc.is_main_process:
                cell_dir.write_predictions(v.name, split, p)
            result.metrics[f"{v.name}/{split}"] = m
            self.tracker.log_split(
                v.name, split, m, p, {x.id: prompt(x) if task else probe_prompt(x) for x in xs}
            )
            family = xs[0].meta["probe"]
            families.setdefault(family, {})[split] = m
            result.rows += metric_rows(
                row_cell,
                m,
                **row,
                split=split,
                probe=family,
                probe_demos=fairness.fixed_demo_count(xs),
            )
        for family, per in families.items():
            macro = macro_average(per)
            result.metrics[f"{v.name}/probe_{family}"] = macro
            self.log(
                f"[lab]   {v.name:>10} {'probe_' + family:>13}: macro exact match "
                f"{macro['exact_match']:.3f} ({macro['subtasks']} splits, n={macro['n']})"
            )
            result.rows += metric_rows(
                row_cell,
                {"exact_match": macro["exact_match"], "n": macro["n"]},
                **row,
                split=f"probe_{family}",
                probe=family,
                aggregate="macro",
            )
