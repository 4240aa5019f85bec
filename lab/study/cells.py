"""One cell: train (FT arms), then evaluate every variant on every eval and probe split,
writing predictions as each split finishes (resumable per split) and returning the cell's
results rows, metrics and compute.

Variants: a prompted arm has one ("prompted"); an FT arm its selected checkpoint ("last", or
"best" with `train.select: best_dev`), the other checkpoint when it differs, and with
`eval.ft_then_icl_k` the selected checkpoint prompted with that many pool demos ("last+icl8":
does fine-tuning keep in-context learning?). Every results row counts the labelled examples
behind it (`labelled_examples`); every evaluated FT checkpoint passes the adapter check.
"""

from __future__ import annotations

import gc
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from eval.evaluate import PromptSpec, summarize
from eval.lm import LM, context_length
from eval.parallel import evaluate_split_parallel, sum_across
from lab.core import fairness
from lab.core.errors import LabError
from lab.core.example import Example, is_ood
from lab.core.io import (
    atomic_write_json,
    atomic_write_jsonl,
    read_json,
    read_jsonl,
)
from lab.core.prompts import demos_prefix, prompt
from lab.core.recipe import ArmCfg, Recipe
from lab.report.tracking import Tracker
from lab.study.base_model import BaseModel
from lab.study.plan import Cell, cell_data, data_order
from lab.study.probes import eval_probes
from lab.study.store import metric_rows
from lab.tasks.probes import is_probe
from train.sharded import from_main


class CellRunner:
    """Runs cells of one study in this process: the study's data, the accelerator, the base
    model (lab/study/base_model.py) and the W&B tracker of the cell that runs."""

    def __init__(
        self, recipe: Recipe, splits: dict[str, list[Example]], pool: list[Example],
        eval_splits: list[str], acc: Any, precision: str, base: BaseModel, progress: bool,
        log: Any,
    ):  # fmt: skip
        self.recipe, self.splits, self.acc, self.precision = recipe, splits, acc, precision
        self.pool, self.eval_splits = (
            pool,
            eval_splits,
        )  # lab/study/plan.py: study_pool, eval_splits
        self.base, self.progress, self.log = base, progress, log
        self.probe_splits = [s for s in splits if is_probe(s)]
        self.tracker = Tracker.off()  # the study's, once it runs (lab/study/run.py)

    def run(self, cell: Cell, cell_dir: Path) -> dict[str, Any]:
        r, arm = self.recipe, cell.arm
        wanted_demos, ft_data = cell_data(r, self.pool, cell, self.splits)
        info: dict[str, Any] = {
            "study": r.name, "model": self.base.resolved.spec, "model_fingerprint": self.base.resolved.fingerprint,
            **self.base.params(),
            "arm": arm.name, "method": arm.method, "format": arm.format,
            "budget": cell.budget, "data_seed": cell.data_seed, "train_seed": cell.train_seed,
            "cell": cell.key, "precision": self.precision,
        }  # fmt: skip
        t0 = time.time()
        variants: list[tuple[str, Any, Any, PromptSpec]] = []  # (name, model, tok, spec)
        train_info: dict[str, Any] = {}
        used: list[Example] = []  # the labelled examples training and selection touched
        if arm.method == "icl":
            model, tok = self.base.load()
            k = len(wanted_demos)
            demos = self.fit_demos(tok, wanted_demos, arm, cell)
            info.update(k=len(demos), k_requested=k, demos_truncated=len(demos) < k)
            # fixed demo sets are not drawn from the budgeted pool: said in every row
            info.update(demos=arm.demos or "pool", demos_fixed=arm.demos is not None)
            info["demo_ids"] = [d.id for d in demos]
            variants.append(
                ("prompted", model, tok, PromptSpec(arm.format, tuple(demos), arm.trigger))
            )
        else:
            from train.finetune import finetune, finished, load_finetuned

            cfg = r.train_for(arm)
            train_set, held_out = fairness.split_budget(ft_data, cfg)  # both inside the budget
            used = [*train_set, *held_out]
            n = len(train_set)
            self.base.release()
            # trained before an interruption? (read once, by the main process: from_main)
            res = from_main(self.acc, lambda: finished(cell_dir / "checkpoint"))
            if res is None:
                res = finetune(
                    self.base.resolved.path, train_set, arm.format, arm.method, cfg, cell.train_seed,
                    cell_dir / "checkpoint", accelerator=self.acc, progress=self.progress,
                    dev_examples=held_out or None, precision=self.precision,
                    resume_dir=cell_dir / "resume", log=self.log, on_log=self.tracker.log_train,
                )  # fmt: skip
            else:
                self.log(f"[lab]   {cell.key}: trained before; evaluating {res.checkpoint}")
            train_info = res.to_dict() | {
                "n_train": n,
                "train_ids_head": [e.id for e in train_set[:8]],
                "held_out_ids": [e.id for e in held_out],
            }
            info.update(k=0, n_train=n, n_select=len(held_out), examples_seen=res.examples_seen)
            ckpts = {"last": res.checkpoint, "best": res.best_checkpoint or res.checkpoint}
            chosen = "best" if cfg.select == "best_dev" else "last"
            other = "last" if chosen == "best" else "best"
            info["selected"] = chosen
            model, tok = load_finetuned(
                self.base.resolved.path, ckpts[chosen], arm.method, self.precision
            )
            model.to(self.acc.device)
            # every evaluated checkpoint must differ from the base model (the other one is
            # checked when it is loaded, below)
            deltas = {chosen: self.base.output_delta(model, tok)}
            train_info |= {"output_delta": deltas[chosen], "output_deltas": deltas}
            variants.append((chosen, model, tok, PromptSpec(arm.format, (), arm.trigger)))
            if r.eval.ft_then_icl_k:
                ordered = data_order(r, self.pool, cell.data_seed)  # same prefix as the data
                demos = tuple(ordered[: r.eval.ft_then_icl_k])
                variants.append(
                    (
                        f"{chosen}+icl{len(demos)}",
                        model,
                        tok,
                        PromptSpec(arm.format, demos, arm.trigger),
                    )
                )
            if ckpts[other] != ckpts[chosen]:  # loaded when its turn comes (model None)
                variants.append((other, None, None, PromptSpec(arm.format, (), arm.trigger)))
        # Every process evaluates its shard of each split (eval/parallel.py); the main one writes.
        main = self.acc.is_main_process
        counter = self.base.counter()
        rows, metrics, preds, compute = [], {}, {}, {"train_flops": train_info.get("flops", 0.0)}
        t_eval = time.time()
        lm = model = None
        for v, (name, model, tok, spec) in enumerate(variants):
            variants[v] = (name, None, None, spec)  # the list keeps no model alive
            if model is None:  # the other checkpoint, once the chosen one is freed
                lm = None
                gc.collect()
                torch.cuda.empty_cache() if torch.cuda.is_available() else None
                model, tok = load_finetuned(
                    self.base.resolved.path, ckpts[name], arm.method, self.precision
                )
                model.to(self.acc.device)
                train_info["output_deltas"][name] = self.base.output_delta(model, tok)
            lm = LM(model, tok, batch_size=r.eval.batch_size, progress=self.progress)
            ran = {"tokens": 0, "head": 0}  # forward tokens of this variant, over all splits
            for split in self.eval_splits:
                path = cell_dir / "predictions" / name / f"{split}.jsonl"
                counts_path = path.with_suffix(".counts.json")
                # evaluated before an interruption? (read once, by the main process)
                stored = from_main(self.acc, partial(self.stored, path, counts_path, name, split))
                if stored is not None:
                    p, counts = stored
                    m = summarize(p)
                    if main:
                        self.log(
                            f"[lab]   {name} {split}: predictions of an interrupted run reused"
                        )
                else:
                    before = dict(lm.counts)
                    p, m = evaluate_split_parallel(
                        lm, self.splits[split], spec, r.eval.max_new_tokens[arm.format],
                        r.eval.code_timeout_s, desc=f"eval {arm.name}/{name}/{split}",
                        gold_logprob=r.eval.gold_logprob,
                    )  # fmt: skip
                    counts = {k: sum_across(lm.counts[k] - before[k]) for k in ran}
                    if main:
                        atomic_write_json(counts_path, counts)
                        atomic_write_jsonl(path, p)  # last: the split's done marker
                ran = {k: ran[k] + counts[k] for k in ran}
                m["flops_per_example"] = sum(
                    counter.generate(x["prompt_tokens"], x["new_tokens"]) for x in p
                ) / len(p)
                if main:
                    self.log(
                        f"[lab]   {name:>10} {split:>13}: exact match {m['exact_match']:.3f} "
                        f"(n={m['n']}, no answer {m['no_answer']:.2f})"
                    )
                metrics[f"{name}/{split}"], preds[f"{name}/{split}"] = m, p
                prompts = {ex.id: prompt(ex, spec.trigger) for ex in self.splits[split]}
                self.tracker.log_split(name, split, m, p, prompts, spec.prefix)
                ft_then_icl_k = len(spec.demos) if arm.method != "icl" else 0
                base_row = {**{k: v for k, v in info.items() if k != "demo_ids"},
                            "variant": name, "ft_then_icl_k": ft_then_icl_k, "split": split,
                            "ood": is_ood(split), "n": m["n"],
                            "labelled_examples": fairness.count_labelled(used, spec.demos)}  # fmt: skip
                rows += metric_rows(base_row, m)
            if not (arm.method != "icl" and spec.demos):  # probes ignore the arm's demos
                probe_info = {**info, "labelled_examples": fairness.count_labelled(used)}
                rows += eval_probes(self, lm, name, probe_info, cell_dir, metrics, preds, counter)
            compute[f"{name}/eval_flops_as_run"] = counter.forward(ran["tokens"], ran["head"])
        if not main:
            return {}
        compute["eval_s"] = time.time() - t_eval
        compute["train_s"] = train_info.get("wall_s", 0.0)
        return {
            "cell": info,
            "rows": rows,
            "metrics": metrics,
            "train": train_info,
            "compute": compute,
            "wall_s": time.time() - t0,
            "_predictions": preds,
        }

    def stored(
        self, path: Path, counts_path: Path, name: str, split: str
    ) -> tuple[list[dict[str, Any]], dict[str, int]] | None:
        """(predictions, forward-token counts) a run stored for this variant and split, or
        None: none, or stored for other examples (the split changed: recomputed)."""
        if not (path.is_file() and counts_path.is_file()):
            return None
        p = read_jsonl(path)
        if not fairness.same_ids(p, self.splits[split]):
            self.log(f"[lab]   {name} {split}: stored predictions are of other examples")
            return None
        return p, read_json(counts_path)

    def fit_demos(self, tok: Any, demos: list[Example], arm: ArmCfg, cell: Cell) -> list[Example]:
        """The longest prefix of `demos` whose prompt fits the context with every eval
        example and the generation budget. Fewer demos than asked are recorded (k vs
        k_requested, demos_truncated) and reported; nothing is cut silently."""
        if not demos:
            return demos
        limit = context_length(self.base.load()[0])
        longest = max(
            len(tok(prompt(ex, arm.trigger), add_special_tokens=False).input_ids)
            for s in self.eval_splits
            for ex in self.splits[s]
        )
        room = limit - longest - self.recipe.eval.max_new_tokens[arm.format] - 8

        def fits(k: int) -> bool:
            return len(tok(demos_prefix(demos[:k], arm.format)).input_ids) <= room

        if fits(len(demos)):
            return demos
        lo, hi = 0, len(demos)  # fits(lo) holds, fits(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        if lo == 0:
            raise LabError(
                f"arm '{arm.name}': not even one demo fits the model's context ({limit} tokens); "
                "use shorter examples or a model with a longer context"
            )
        self.log(f"[lab]   {cell.key}: only {lo} of {len(demos)} demos fit the context; using {lo}")
        return demos[:lo]
