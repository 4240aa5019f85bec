"""The W&B key scheme of every run of a study, and the labels of a cell's run.

Keys, the same for every arm:
- `eval/<split>/<metric>`: the variant the comparison uses (ICL: the prompt; FT: the selected
  checkpoint), so a prompted and a fine-tuned cell share every panel;
- `eval/variants/<variant>/<split>/<metric>`: the other variants (the other checkpoint, the
  fine-tuned model prompted with demos);
- `predictions/<split>` and `predictions/variants/<variant>/<split>`: the typed tables, with a
  `variant` column;
- `eval/ood_mean/exact_match`: the mean over the OOD splits that enter the OOD mean;
- with `eval.formats` (lab/core/formats.py), the comparison's variant in each further prompt
  format is the variant `<variant>@<format>` (`eval/variants/prompted@s1/test/exact_match`,
  on its checkpoint's `train/step`), and the summary run holds the tables `formats`,
  `format_spread`, `format_scores` and `format_verdicts` (lab/report/format_tables.py) and
  the scalars `answer/holds_under_every_format` and `answer/prompt_formats`.
Evaluation rows carry `train/step` (the evaluated checkpoint's optimizer step; 0 for a
prompted arm) and `train/epoch`, as HF's Trainer callback does, so evaluation sits on the
training curves' axis.

A cell run's config holds at top level the settings that cell used (its arm, budget,
seeds, training, evaluation, precision) and the study's recipe under `study`; tags name
its method, format, budget, profile, model and task; its notes describe the arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core.example import ood_mean_splits
from lab.core.recipe import Recipe

VARIANTS = "variants"


def compared_variant(config: dict[str, Any]) -> str:
    """The variant the comparison uses for a cell of this (top-level) config: `prompted`
    for an ICL arm; for an FT arm the selected checkpoint (`best` under `select: best_dev`)."""
    if config.get("method") == "icl":
        return "prompted"
    if config.get("method") == "ttt":  # the base model with its test-time adapters
        return "ttt"
    if config.get("selected"):
        return str(config["selected"])
    return "best" if (config.get("train") or {}).get("select") == "best_dev" else "last"


def eval_prefix(variant: str, compared: str) -> str:
    """`eval` for the comparison's variant, `eval/variants/<variant>` for the others."""
    return "eval" if variant == compared else f"eval/{VARIANTS}/{variant}"


def table_key(variant: str, split: str, compared: str) -> str:
    return (
        f"predictions/{split}"
        if variant == compared
        else f"predictions/{VARIANTS}/{variant}/{split}"
    )


def split_metrics(
    variant: str, split: str, metrics: dict[str, Any], compared: str
) -> dict[str, Any]:
    """A split's numeric metrics under their keys (bools and text left out)."""
    pre = eval_prefix(variant, compared)
    return {
        f"{pre}/{split}/{k}": v
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def summary_metrics(metrics: dict[str, dict[str, Any]], compared: str) -> dict[str, Any]:
    """A finished cell's metrics (`<variant>/<split>` -> metrics) under the same keys as the
    live rows, once each, plus `eval/ood_mean/exact_match`."""
    flat: dict[str, Any] = {}
    for key, m in metrics.items():
        variant, split = key.split("/", 1)
        flat |= split_metrics(variant, split, m, compared)
    mean = ood_mean(flat)
    if mean is not None:
        flat["eval/ood_mean/exact_match"] = mean
    return flat


def ood_mean(flat: dict[str, Any]) -> float | None:
    """The mean over OOD splits of `eval/<split>/exact_match` (the comparison's variant), a
    split that scores another's problems a second way not counted
    (lab.core.example.ood_mean_splits); None without OOD splits."""
    splits = [
        k.split("/")[1]
        for k in flat
        if k.startswith("eval/") and k.count("/") == 2 and k.endswith("/exact_match")
    ]
    ood = [flat[f"eval/{s}/exact_match"] for s in ood_mean_splits(splits)]
    return sum(ood) / len(ood) if ood else None


def out_dir(out: Path) -> str:
    """The study's output folder as the runs record it: the Report's filter, with the study
    id, so a rerun of the same recipe into another folder is another study."""
    return str(Path(out).resolve())


def _tag(key: str, value: Any) -> str:
    text = f"{key}:{value}"
    return text if len(text) <= 64 else text[:61] + "..."  # W&B: at most 64 characters


def tags(config: dict[str, Any], profile: str | None) -> list[str]:
    """method, format, budget, profile, model and task of a cell (or, for the keys it has,
    the summary run)."""
    specs = config.get("model") or ""
    specs = specs if isinstance(specs, list) else [specs]  # a ladder: every model
    model = ",".join(str(m).rstrip("/").split("/")[-1] for m in specs)
    task = (config.get("task") or {}).get("name")
    out = [_tag(k, config[k]) for k in ("method", "format") if config.get(k)]
    if "budget" in config:
        out.append(_tag("budget", "all" if config["budget"] is None else config["budget"]))
    out += [_tag("profile", profile or "default"), _tag("model", model), _tag("task", task)]
    return out


def describe_arm(config: dict[str, Any]) -> str:
    """A cell's arm in one sentence: the run's notes."""
    arm, fmt, budget = config.get("arm"), config.get("format"), config.get("budget")
    seeds = f"data seed {config.get('data_seed')}" + (
        f", train seed {config['train_seed']}" if config.get("train_seed") is not None else ""
    )
    within = f"budget {budget} labelled examples" if budget is not None else "the full pool"
    if config.get("method") == "icl":
        k = config.get("k", 0)
        demos = config.get("demos")
        src = f"the fixed demo set '{demos}'" if demos else "the labelled pool"
        trig = f", trigger {config['trigger']!r}" if config.get("trigger") else ""
        how = f"{k} demos from {src}" if k else "no demos (zero-shot)"
        if demos == "knn":
            how = f"{k} demos per query, its nearest (BM25) in the budget"
        return (
            f"{arm}: prompting the base model {config.get('model')} with {how}, {fmt} "
            f"targets{trig}; {within}; {seeds}; not trained."
        )
    t = config.get("train") or {}
    kind = "LoRA" if config.get("method") == "lora" else "full"
    select = t.get("select", "last")
    return (
        f"{arm}: {kind} fine-tuning of {config.get('model')} on {within} ({fmt} targets; "
        f"{t.get('steps')} steps x batch {t.get('batch_size')}, lr {t.get('lr')}; checkpoint "
        f"'{select}'); evaluated at k = {config.get('train_k') or 0} with the ICL template; "
        f"{seeds}."
        + (
            " In-context fine-tuning: each training input holds train_k demos "
            "from the training set."
            if config.get("train_k")
            else ""
        )
    )


def cell_config(recipe: Recipe, cell: Any, model: Any, study: str) -> dict[str, Any]:
    """The settings a cell uses, at top level of its run's config at `wandb.init` (`cell` a
    lab.study.plan.Cell, `model` its base lab.study.models.ResolvedModel): its arm, budget
    and seeds, the arm's own training settings and the eval settings (the study's recipe is
    under `study`); what the cell resolved as it ran (demos that fit, n_train, the selected
    checkpoint...) is added when it finishes."""
    arm = cell.arm
    cfg = {
        "study_id": study,
        "cell": cell.key,
        "arm": arm.name,
        "method": arm.method,
        "format": arm.format,
        "budget": cell.budget,
        "arm_budget": f"{arm.name}@{cell.budget}",
        "data_seed": cell.data_seed,
        "train_seed": cell.train_seed,
        "model": model.spec,
        "model_fingerprint": model.fingerprint,
        "task": recipe.task.model_dump(mode="json"),
        "eval": recipe.eval.model_dump(mode="json"),
        **{k: v for k, v in arm.model_dump(mode="json").items() if k not in ("name", "train")},
    }
    if arm.method not in ("icl", "ttt"):  # ttt: its adapter's settings are `ttt` (above)
        cfg["train"] = recipe.train_for(arm).model_dump(mode="json")
    return cfg
