"""Planning a study: its cells and the data each one gets, and every check of the recipe
against the task made before anything is written.

A cell is (arm, budget, data seed, train seed), and in a ladder study (`model:` a list) also
the base model: every model runs the same cells (same data, seeds, budgets). Its `CellPlan`
(built once, by `plan_cell`) is everything the cell will see: its demos (cut to what fits the
context, lab/study/context.py), its training and held-out examples, its resolved training
settings and its variants (name, checkpoint, prompt). Fairness is planned here:
- per data seed, one permutation of the study's train pool: at budget b the k-shot arms'
  demos are its first b examples and the FT arms' training set the same first b examples;
- FT arms are evaluated with the ICL template at k = 0 (only the weights differ), on the
  last checkpoint or (`train.select: best_dev`) the one chosen on examples held out from
  inside the arm's own budget, which then trains on the rest (lab/core/fairness.py);
- nothing is selected on an evaluation split.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from eval.evaluate import PromptSpec
from eval.sandbox import require_sandbox
from lab.core import fairness
from lab.core.errors import LabError
from lab.core.example import ID_EVAL_SPLIT, Example, check_formats, is_ood, usable
from lab.core.formats import check_applies
from lab.core.layout import model_tag
from lab.core.prompts import written_as
from lab.core.recipe import ArmCfg, Recipe, TrainCfg
from lab.study.arms_plan import check_train_k, knn_describe, knn_spec
from lab.study.format_eval import with_formats
from lab.tasks import build_task
from lab.tasks.probes import is_probe

Budget = int | str | None
# Methods whose cells keep the base model and prompt it with the budget's demos (ttt: with a
# temporary test-time adapter, lab/study/ttt_eval.py): no `train` section, no checkpoint.
PROMPTED = ("icl", "ttt")


@dataclass(frozen=True)
class Cell:
    arm: ArmCfg
    budget: Budget  # None: the study has no budget axis, or the arm does not use data
    data_seed: int
    train_seed: int | None  # None for prompted arms
    model: str | None = None  # the base model of a ladder study; None: the study's only model
    model_tag: str | None = None  # m<i>-<name>: the model's place in the ladder, for the key

    @property
    def key(self) -> str:
        parts = [self.model_tag] if self.model_tag else []
        parts.append(self.arm.name)
        if self.budget is not None:
            parts.append(f"b{self.budget}")
        parts.append(f"d{self.data_seed}")
        if self.train_seed is not None and self.train_seed != self.data_seed:
            parts.append(f"t{self.train_seed}")
        return "__".join(parts)


def uses_data(arm: ArmCfg) -> bool:
    """Zero-shot prompted arms and arms with a fixed demo set (`demos: wei`) see no example
    of the budgeted pool: seeds and budgets do not apply to them."""
    return arm.method != "icl" or (arm.k != 0 and not arm.fixed_demos)


def plan_cells(recipe: Recipe) -> list[Cell]:
    """Every cell of the study. A ladder repeats the single-model plan for each model, in
    the recipe's order (one base model in memory at a time)."""
    cells = plan_one_model(recipe)
    if not recipe.is_ladder:
        return cells
    return [
        replace(c, model=m, model_tag=model_tag(i, m))
        for i, m in enumerate(recipe.models)
        for c in cells
    ]


def plan_one_model(recipe: Recipe) -> list[Cell]:
    budgets: list[Budget] = list(recipe.budgets) if recipe.budgets else [None]
    cells = [Cell(a, None, recipe.seeds[0], None) for a in recipe.arms if not uses_data(a)]
    for ds in recipe.seeds:
        for b in budgets:
            for arm in recipe.arms:
                if not uses_data(arm):
                    continue
                if arm.method == "icl":
                    cells.append(Cell(arm, b, ds, None))
                else:
                    for ts in recipe.train_seeds or [ds]:
                        cells.append(Cell(arm, b, ds, ts))
    return cells


def eval_splits(splits: dict[str, list[Example]]) -> list[str]:
    return [s for s in splits if s == ID_EVAL_SPLIT or is_ood(s)]


def study_pool(recipe: Recipe, train: list[Example]) -> list[Example]:
    """The train examples usable in every format the study uses (e.g. GSM8K problems whose
    program could not be verified are dropped for all arms), so that every arm draws its
    demos and training data from the same pool."""
    for fmt in sorted({arm.format for arm in recipe.arms}):
        train = usable(train, fmt)
    return train


def data_order(recipe: Recipe, pool: list[Example], data_seed: int) -> list[Example]:
    """The data seed's permutation of the pool: demos and FT data are prefixes of it.

    With `sampling: balanced` (classification tasks, as Mosbach et al. 2023 sample their
    demos) the labels take turns in the order of their first appearance in the
    permutation, each label's examples keeping their permuted order: every prefix is
    class-balanced to within one example, and prefixes still nest across budgets."""
    order = list(range(len(pool)))
    random.Random(f"data-{recipe.task.seed}-{data_seed}").shuffle(order)
    ordered = [pool[i] for i in order]
    if recipe.sampling == "random":
        return ordered
    if not all(ex.choices for ex in pool):
        raise LabError(
            f"sampling: balanced needs a classification task (examples with labels); task "
            f"'{recipe.task.name}' generates its answers; use sampling: random"
        )
    by_label: dict[str, list[Example]] = {}
    for ex in ordered:
        by_label.setdefault(ex.answer, []).append(ex)
    queues = list(by_label.values())
    out: list[Example] = []
    for i in range(max(len(q) for q in queues)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def budget_size(budget: Budget, default: int | str | None, pool: int) -> int:
    """Examples a cell draws: its budget ('full': the pool), else the arm's own size (k,
    train.n_train; None or 'all': the pool)."""
    if budget is None:
        return min(default, pool) if isinstance(default, int) else pool
    return pool if budget == "full" else int(budget)


def fixed_split(arm: ArmCfg) -> str:
    return f"demos_{arm.demos}"


def cell_data(
    recipe: Recipe,
    pool: list[Example],
    cell: Cell,
    splits: dict[str, list[Example]] | None = None,
) -> tuple[list[Example], list[Example]]:
    """(requested demos, FT training set) of a cell: prefixes of the data seed's permutation,
    so at budget b the k-shot arms' demos and the FT arms' data are the same b examples.
    An arm with a fixed demo set (`demos: wei`) takes the first k of the task's split
    `demos_wei` instead: not from the pool, the same for every seed and budget. A `demos:
    knn` arm's "demos" are its retrieval index: the whole budget (k are retrieved per query)."""
    arm = cell.arm
    if arm.fixed_demos:
        return list((splits or {}).get(fixed_split(arm), []))[: arm.k], []
    ordered = data_order(recipe, pool, cell.data_seed)
    if arm.method in PROMPTED:
        default = None if arm.retrieved else arm.k  # knn: the index is the budget (or pool)
        k = budget_size(cell.budget, default, len(pool)) if uses_data(arm) else 0
        return ordered[:k], []
    n = budget_size(cell.budget, recipe.train_for(arm).n_train, len(pool))
    return [], ordered[:n]


def validate(recipe: Recipe, splits: dict[str, list[Example]]) -> None:
    check_formats(recipe.arms, recipe.task.name, splits["train"])
    check_applies(recipe.prompt_formats(), {s: splits[s] for s in eval_splits(splits)})
    n_pool = len(study_pool(recipe, splits["train"]))
    formats = sorted({arm.format for arm in recipe.arms})
    if n_pool == 0:
        has = [f for f in ("answer", "cot", "code") if usable(splits["train"], f)]
        raise LabError(
            f"no train example of task '{recipe.task.name}' has a target in every format the "
            f"arms use ({formats}); the task has targets for {has}: change the arms' format"
        )
    for arm in recipe.arms:
        if arm.fixed_demos:
            fixed = splits.get(fixed_split(arm), [])
            if arm.k > len(fixed):
                known = sorted(s.removeprefix("demos_") for s in splits if s.startswith("demos_"))
                raise LabError(
                    f"arm '{arm.name}' asks for k={arm.k} demos of the fixed set "
                    f"'{arm.demos}', which has {len(fixed)}; lower k or use one of the task's "
                    f"fixed demo sets {known}"
                )
            continue
        if isinstance(arm.k, int) and arm.k > n_pool:
            raise LabError(
                f"arm '{arm.name}' asks for k={arm.k} demos but the train pool has {n_pool} "
                "usable examples; lower k or raise task.n_train"
            )
        if arm.method == "ttt" and not recipe.budgets and arm.k == 0:
            raise LabError(
                f"arm '{arm.name}' (method: ttt) trains on its demos but has none; set k or budgets"
            )
        if arm.method not in PROMPTED:
            n = recipe.train_for(arm).n_train
            if n is not None and n > n_pool:
                raise LabError(
                    f"arm '{arm.name}' trains on n_train={n} examples but the train pool has "
                    f"{n_pool}; lower train.n_train or raise task.n_train"
                )
            sizes = [budget_size(b, n, n_pool) for b in recipe.budgets or [None]]
            fairness.check_selection(arm.name, recipe.train_for(arm), sizes)
            if arm.train_k:
                check_train_k(arm, recipe.train_for(arm), sizes)
    for b in recipe.budgets or []:
        if b != "full" and int(b) > n_pool:
            raise LabError(
                f"budget {b} is larger than the train pool ({n_pool} usable examples); lower "
                "it, use 'full', or raise task.n_train"
            )
    if recipe.eval.ft_then_icl_k > n_pool:
        raise LabError(
            f"eval.ft_then_icl_k={recipe.eval.ft_then_icl_k} is larger than the train pool "
            f"({n_pool}); lower it"
        )
    check_sandbox(recipe, splits)


def check_sandbox(recipe: Recipe, splits: dict[str, list[Example]] | None = None) -> None:
    """Model-written programs will run (code-format arms; once the task is built, examples
    that carry tests): refuse now if none can be contained. Checked before the task is built
    too (lab/study/run.py), so a host without a sandbox is refused at once."""
    code_arms = any(arm.format == "code" for arm in recipe.arms)
    if code_arms or any("tests" in ex.meta for xs in (splits or {}).values() for ex in xs[:1]):
        require_sandbox()


def check_batch_sizes(recipe: Recipe, processes: int) -> None:
    """Every FT arm's global batch must split evenly over grad_accum x processes."""
    for arm in recipe.arms:
        if arm.method not in PROMPTED:
            recipe.train_for(arm).micro_batch(processes, f"arm '{arm.name}': ")


@dataclass(frozen=True)
class StudyData:
    """The examples of a study: the task's splits, the train pool every arm draws from, the
    eval splits (ID test, OOD) and the probe splits (other tasks: lab/tasks/probes.py)."""

    splits: dict[str, list[Example]]
    pool: list[Example]
    eval_splits: list[str]
    probe_splits: list[str]


def study_data(recipe: Recipe, splits: dict[str, list[Example]] | None = None) -> StudyData:
    splits = build_task(recipe.task) if splits is None else splits
    return StudyData(
        splits,
        study_pool(recipe, splits["train"]),
        eval_splits(splits),
        [s for s in splits if is_probe(s)],
    )


@dataclass(frozen=True)
class Variant:
    """One evaluated model + prompt of a cell: "prompted" (a prompted arm), the FT arm's
    checkpoints ("last", "best") and "<checkpoint>+icl<k>" (FT-then-ICL)."""

    name: str
    checkpoint: str | None  # None: the base model; "last" | "best": the FT checkpoint
    spec: PromptSpec
    probes: bool = True  # the probe splits run on it (not on FT-then-ICL: its demos are the arm's)
    if_distinct: bool = False  # evaluated only when its checkpoint is not the selected one
    in_context: bool = False  # in-context FT (`train_k`): its demos are the arm's own prompt
    prompt_format: str | None = None  # eval.formats: its rows' format (lab/study/format_eval.py)

    @property
    def ft_then_icl_k(self) -> int:
        if self.checkpoint is None or self.in_context:
            return 0
        return len(self.spec.demos)


@dataclass(frozen=True)
class CellPlan:
    """Everything a cell sees, decided before it runs."""

    cell: Cell
    demos: tuple[Example, ...]  # prompted arms: the demos, cut to what fits the context
    k_requested: int  # prompted arms: the demos asked for (k < k_requested: cut)
    train: TrainCfg | None  # FT arms: the resolved training settings; None: prompted
    train_set: tuple[Example, ...]  # FT arms: trained on
    held_out: tuple[Example, ...]  # FT arms, select: best_dev: selects the checkpoint
    variants: tuple[Variant, ...]
    index: tuple[Example, ...] = ()  # `demos: knn`: the retrieval index (the budget)
    train_k: int = 0  # in-context FT: demos in each training input (0: plain FT)
    # labelled examples read but neither shown nor trained on (cot_self: the budget's gold
    # answers, read to keep only the correct self-written rationales; lab/study/rationales.py)
    read: tuple[Example, ...] = ()

    @property
    def used(self) -> list[Example]:
        """The labelled examples training, checkpoint selection and filtering touch."""
        return [*self.train_set, *self.held_out, *self.read]

    @property
    def selected(self) -> str | None:
        """FT arms: the checkpoint the comparison uses ("last", or "best" with best_dev)."""
        return self.variants[0].checkpoint

    def describe(self) -> dict[str, Any]:
        """What the cell's rows say about its data (prompted: demos and their cut; FT: the
        training and selection sizes)."""
        arm = self.cell.arm
        if self.index:
            return knn_describe(self.variants[0].spec, self.k_requested, self.index)
        if self.train is None:
            ttt = {"selected": "ttt", "n_train": len(self.demos)} if arm.method == "ttt" else {}
            return ttt | {
                "k": len(self.demos),
                "k_requested": self.k_requested,
                "demos_truncated": len(self.demos) < self.k_requested,
                # fixed demo sets are not drawn from the budgeted pool: said in every row
                "demos": arm.demos or "pool",
                "demos_fixed": arm.demos is not None,
            }
        icft = {"train_k": self.train_k} if self.train_k else {}
        k = len(self.variants[0].spec.demos) if self.train_k else 0
        return {"k": k, "n_train": len(self.train_set), "n_select": len(self.held_out), **icft}


FitDemos = Callable[[list[Example], ArmCfg], list[Example]]


def plan_cell(
    recipe: Recipe,
    data: StudyData,
    cell: Cell,
    fit_demos: FitDemos | None = None,
    fit_retrieved: Callable[[list[Example], int, ArmCfg], int] | None = None,
) -> CellPlan:
    """A cell's plan. `fit_demos` cuts a prompted arm's demos to what fits the model's
    context (lab/study/context.py ContextFit.fit_demos; None: as requested), `fit_retrieved`
    a `demos: knn` arm's k (ContextFit.fit_retrieved)."""
    arm = cell.arm
    wanted, ft_data = cell_data(recipe, data.pool, cell, data.splits)
    style = {"style": recipe.prompt.style, "turns": recipe.prompt.demos}  # every arm's
    fmt = written_as(arm.format)  # cot_self: prompted and extracted as cot
    if arm.retrieved:
        spec = replace(knn_spec(arm, cell.budget, wanted, fit_retrieved), **style)
        variants = tuple(with_formats(recipe, [Variant("prompted", None, spec)]))
        k = min(int(arm.k), len(wanted))  # asked for, within the budget (cut: the context)
        return CellPlan(cell, (), k, None, (), (), variants, index=tuple(wanted))
    if arm.method in PROMPTED:
        demos = tuple(fit_demos(wanted, arm) if fit_demos is not None else wanted)
        spec = PromptSpec(fmt, demos, arm.trigger, **style)
        name = "ttt" if arm.method == "ttt" else "prompted"
        variants = with_formats(recipe, [Variant(name, None, spec)])
        return CellPlan(cell, demos, len(wanted), None, (), (), tuple(variants))
    cfg = recipe.train_for(arm)
    train_set, held_out = fairness.split_budget(ft_data, cfg)  # both inside the budget
    chosen, other = ("best", "last") if cfg.select == "best_dev" else ("last", "best")
    # k = 0, or in-context FT (`train_k`): the budget's first train_k examples as demos
    own = PromptSpec(fmt, tuple(ft_data[: arm.train_k]), arm.trigger, **style)
    icft = bool(arm.train_k)
    variants = [Variant(chosen, chosen, own, in_context=icft)]
    if k := recipe.eval.ft_then_icl_k:
        demos = tuple(data_order(recipe, data.pool, cell.data_seed)[:k])  # the data's prefix
        spec = PromptSpec(fmt, demos, arm.trigger, **style)
        variants.append(Variant(f"{chosen}+icl{len(demos)}", chosen, spec, probes=False))
    variants.append(Variant(other, other, own, if_distinct=True, in_context=icft))
    variants = with_formats(recipe, variants)
    plan = CellPlan(cell, (), 0, cfg, tuple(train_set), tuple(held_out), tuple(variants))
    return replace(plan, train_k=arm.train_k)
