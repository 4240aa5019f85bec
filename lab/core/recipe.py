"""Recipe schema: a YAML study — one base model (or a ladder of them), one task, arms, seeds —
validated up front.

A recipe is plain data. `load_recipe` turns YAML into a validated `Recipe`, or raises a
`LabError` naming the bad key and the fix, before anything is written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from lab.core import formats
from lab.core.errors import LabError, suggest
from lab.core.formats import PromptFormat
from lab.core.prompts import written_as
from lab.core.recipe_sections import (  # noqa: F401  (re-exported: the recipe's public names)
    ArmCfg,
    DistributedCfg,
    EvalCfg,
    Format,
    LoraCfg,
    Method,
    PromptCfg,
    Strict,
    TaskCfg,
    TrackingCfg,
    TrainCfg,
    TttCfg,
)


class Recipe(Strict):
    name: str
    description: str = ""
    model: str | list[str] = Field(
        description="the base model, or a ladder: a list swept with the same data, seeds, budgets"
    )
    task: TaskCfg = TaskCfg()
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2], min_length=1, description="data seeds: demos, FT data"
    )
    train_seeds: list[int] | None = Field(
        None, min_length=1, description="training seeds (init, order); None = the data seed"
    )
    budgets: list[int | Literal["full"]] | None = Field(
        None,
        min_length=1,
        description="labelled-example budgets: k demos for k-shot ICL arms, n_train for FT arms",
    )
    arms: list[ArmCfg] = Field(min_length=1)
    sampling: Literal["random", "balanced"] = Field(
        "random",
        description="how each data seed orders the train pool (demos and FT data are its "
        "prefixes): random, or balanced (classification tasks: the labels take turns, so "
        "every prefix is class-balanced to within one example)",
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="numeric precision of every arm (lab/core/precision.py): auto = bf16 where the "
        "hardware runs it fast (a GPU with bf16, a CPU with AVX-512 BF16 or AMX), else fp32",
    )
    train: TrainCfg = TrainCfg()
    eval: EvalCfg = EvalCfg()
    prompt: PromptCfg = Field(
        PromptCfg(), description="plain or chat-template prompts, for every arm (lab/core/chat.py)"
    )
    tracking: TrackingCfg = TrackingCfg()
    _trains: dict[str, TrainCfg] = PrivateAttr(default_factory=dict)  # arm -> its settings
    distributed: DistributedCfg = DistributedCfg()  # how processes run, not what: not hashed
    smoke: dict[str, Any] = Field(default_factory=dict, description="overrides for --smoke")
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named overrides, applied with --profile NAME"
    )

    @property
    def models(self) -> list[str]:
        """The study's base models: one, or the ladder in the recipe's order."""
        return [self.model] if isinstance(self.model, str) else list(self.model)

    @property
    def is_ladder(self) -> bool:
        return isinstance(self.model, list)

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if isinstance(self.model, list):
            if not self.model:
                raise ValueError("model: a ladder needs at least one model")
            if len(set(self.model)) != len(self.model):
                raise ValueError("model: the models of a ladder must be unique")
        names = [a.name for a in self.arms]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"arm names must be unique; repeated: {sorted(dup)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be unique")
        if self.train_seeds and len(set(self.train_seeds)) != len(self.train_seeds):
            raise ValueError("train_seeds must be unique")
        if self.budgets is not None:
            if any(isinstance(b, int) and b <= 0 for b in self.budgets):
                raise ValueError("budgets must be positive integers or 'full'")
            if len(set(self.budgets)) != len(self.budgets):
                raise ValueError("budgets must be unique")
        for arm in self.arms:
            self._trains[arm.name] = self._merge_train(arm)  # once; a bad key fails now
            fmt = written_as(arm.format)
            if fmt not in self.eval.max_new_tokens:
                raise ValueError(
                    f"eval.max_new_tokens has no entry for format '{fmt}' (arm "
                    f"'{arm.name}'); add `{fmt}: N` to it"
                )
        return self

    def train_for(self, arm: ArmCfg) -> TrainCfg:
        """The arm's training settings: the study's `train` with the arm's overrides, merged
        once when the recipe is validated."""
        return self._trains[arm.name]

    def prompt_formats(self) -> list[PromptFormat]:
        """The prompt formats every arm is evaluated in, the main one (the lab's template)
        first: `eval.formats` resolved, sampled ones seeded by task.seed (lab/core/formats.py)."""
        return formats.resolve(self.eval.formats, self.task.seed)

    def _merge_train(self, arm: ArmCfg) -> TrainCfg:
        merged = _deep_merge(self.train.model_dump(), arm.train)
        try:
            return TrainCfg.model_validate(merged)
        except ValidationError as e:
            raise ValueError(_format_validation(e, f"arms[{arm.name}].train", TrainCfg)) from None

    def hash(self) -> str:
        """Content hash of the resolved recipe, for resume safety: what runs, not how it is
        tracked or described (nor the unapplied override sets, nor how often training is
        checkpointed: train.save_every does not change results)."""
        d = self.model_dump(
            mode="json",
            exclude={
                "tracking": True,
                "distributed": True,
                "description": True,
                "smoke": True,
                "profiles": True,
                "train": {"save_every"},
            },
        )
        if d["task"]["spec"] is None:  # the hash of a recipe from before inline task specs
            del d["task"]["spec"]
        # hashed under the key's first name, so that the hashes of recorded studies hold
        d["eval"]["ft_icl_probe_k"] = d["eval"].pop("ft_then_icl_k")
        drop_new_defaults(d)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# Defaults applied by --smoke before the recipe's own `smoke:` overrides: the same study,
# a tiny randomly initialised model, tiny sizes, fp32; finishes in well under a minute.
SMOKE_DEFAULTS: dict[str, Any] = {
    "model": "tiny-random",
    "precision": "fp32",  # deterministic whatever the host (auto would follow its CPU)
    "task": {"n_train": 64, "n_dev": 8, "n_test": 6},
    "train": {"steps": 3, "batch_size": 4, "lr": 1e-3},
    "eval": {"batch_size": 4, "max_new_tokens": {"answer": 6, "cot": 12, "code": 12}},
}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc` (for 'did you mean' suggestions)."""
    cur: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(cur, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        cur = next(
            (a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if cur is None:
            return []
    return list(getattr(cur, "model_fields", {}))


# Keys added after studies were recorded, by section ("" = the top level, "arms" = every arm):
# a recipe leaving one at its default keeps the hash it had, so a study started before resumes.
# A new key whose default changes what runs must not be listed here. (eval.precision and
# eval.invariant: cells evaluated before these keys existed ran the fast numerics.)
NEW_DEFAULTS: dict[str, dict[str, Any]] = {
    "": {"prompt": {"style": "plain", "demos": "single_turn"}},
    "eval": {"precision": "study", "invariant": True, "formats": None},
    "arms": {"train_k": 0, "ttt": TttCfg().model_dump(mode="json")},
}


def drop_new_defaults(d: dict[str, Any]) -> None:
    """Remove from a recipe dump the keys of NEW_DEFAULTS that sit at their defaults."""
    for section, keys in NEW_DEFAULTS.items():
        if section == "":
            parts = [d]
        elif section == "arms":
            parts = d.get("arms", [])
        else:
            parts = [d[section]] if isinstance(d.get(section), dict) else []
        for part in parts:
            for key, default in keys.items():
                if key in part and part[key] == default:
                    del part[key]


def _format_validation(e: ValidationError, where: str, model: type[BaseModel] | None) -> str:
    err = e.errors()[0]
    loc = tuple(err["loc"])
    key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    if err["type"] == "extra_forbidden":
        hint = suggest(str(loc[-1]), _allowed_keys(model, loc)) if model else ""
        return f"{where}: unknown key '{key}'{hint}; remove or rename it"
    if err["type"] == "missing":
        return f"{where}: required key '{key}' is missing; add it"
    got = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error" and isinstance(got, str):
        msg += suggest(got, re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", ""))))
    if loc:
        return f"{where}: key '{key}': {msg} (got {got!r}); fix its value"
    return f"{where}: {msg}"


def smoke_ladder(n: int) -> list[str]:
    """--smoke stand-ins for a ladder of n models: tiny random models of growing width."""
    return ["tiny-random"] + [f"tiny-random-d{64 + 32 * i}" for i in range(1, n)]


def parse_recipe(
    data: dict[str, Any], where: str = "recipe", smoke: bool = False, profile: str | None = None
) -> Recipe:
    """Validate a recipe dict, optionally with a named profile's overrides and then the
    --smoke overrides applied. The recipe as written is validated in full first: a smoke
    run or a profile does not hide a mistake the real run would refuse."""
    if not isinstance(data, dict):
        raise LabError(f"{where}: a recipe must be a YAML mapping of keys to values")
    if smoke or profile is not None:
        _validate(data, where)
    if profile is not None:
        profiles = data.get("profiles") or {}
        if not isinstance(profiles, dict) or profile not in profiles:
            known = sorted(profiles) if isinstance(profiles, dict) else []
            raise LabError(
                f"{where}: no profile '{profile}'{suggest(profile, known)}; "
                f"profiles defined: {known or 'none'}"
            )
        over = profiles[profile]
        if not isinstance(over, dict):
            raise LabError(f"{where}: profiles.{profile} must be a mapping of overrides")
        data = _deep_merge(data, over)
    if smoke:
        over = data.get("smoke", {}) or {}
        ladder = data.get("model")
        data = _deep_merge(_deep_merge(data, SMOKE_DEFAULTS), over)
        if isinstance(ladder, list) and ladder and "model" not in over:
            data["model"] = smoke_ladder(len(ladder))  # a ladder stays a ladder
        chat = (data.get("prompt") or {}).get("style") == "chat"
        if chat and "model" not in over:  # the tiny models with a chat template
            m = data["model"]
            data["model"] = [f"{x}-chat" for x in m] if isinstance(m, list) else f"{m}-chat"
    return _validate(data, where)


def _validate(data: dict[str, Any], where: str) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise LabError(_format_validation(e, where, Recipe)) from None


def load_recipe(path: str | Path, smoke: bool = False, profile: str | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise LabError(f"recipe file '{path}' not found; pass the path to a YAML recipe")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise LabError(
            f"recipe '{path}': not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
            f"{e.start}); save the file as UTF-8"
        ) from None
    except OSError as e:
        raise LabError(
            f"recipe file '{path}' cannot be read ({e.strerror or e}); fix its permissions"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise LabError(f"recipe '{path}'{line}: not valid YAML; fix the syntax") from None
    return parse_recipe(data, where=str(path), smoke=smoke, profile=profile)
