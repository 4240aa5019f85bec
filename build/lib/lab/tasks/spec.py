"""The schema of a declarative task (a YAML file, or a mapping inline under a recipe's
`task.spec`), validated before any data is read. See lab/tasks/declarative.py for what each
key does and README.md ("Your own task") for a walk-through.

    name: reviews_shift
    description: sentiment of product reviews; OOD = reviews of another shop
    defaults:                      # every split inherits these keys (a split overrides them)
      source: {path: csv, data_files: reviews.csv}
      output_type: multiple_choice
      input: "{{ review_text }}"
      target: "{{ stars }}"
      choices: [negative, positive]
      label_map: {"1": negative, "2": negative, "4": positive, "5": positive}
    splits:
      train: {where: "part == 'train'"}
      test: {where: "part == 'test'"}
      ood_shop2: {source: {path: csv, data_files: shop2.csv}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.core.errors import LabError, suggest

OutputType = Literal["generate", "multiple_choice", "code"]
ROLE_HELP = "train, dev, test, ood_<name> or demos_<name>"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """`datasets.load_dataset(path, name, split=split, revision=revision,
    data_files=data_files, **kwargs)`: a hub id (with config, split, revision) or a builder
    for local files (json, csv, parquet, text) with `data_files`; or `hook` (module:function
    returning the rows, for data no file holds: a synthetic generator)."""

    path: str | None = None
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    hook: str | None = None
    args: dict[str, Any] = Field(default_factory=dict, description="keyword args of `hook`")
    map: str | None = Field(None, description="module:function row -> row, for this source")
    columns: dict[str, str] = Field(
        default_factory=dict, description="column renames {name in templates: name in the data}"
    )


class LmEvalRef(_Strict):
    """An lm-evaluation-harness task YAML used as this split's source and templates."""

    file: str
    split: Literal["test", "validation", "training", "fewshot"] = "test"


class SplitSpec(_Strict):
    source: SourceSpec | None = None
    hub: SourceSpec | None = Field(None, description="the source when task.source is hub")
    lm_eval: LmEvalRef | None = None
    where: str | None = Field(None, description="Jinja expression: keep the rows where true")
    limit: int | None = Field(None, gt=0, description="read at most this many rows (filtered)")
    map: str | None = Field(None, description="module:function row -> row (added columns)")
    sampler: str | None = Field(None, description="module:function (examples, n, tag) -> sample")
    sample: Literal["seeded", "all"] | None = Field(None, description="demos_*: all, else seeded")
    sample_tag: str | None = Field(None, description="'{task}-{seed}-{split}' by default")
    output_type: OutputType | None = None
    extract: str | None = Field(None, description="generate: number | exact | option_letter")
    regex: str | None = Field(None, description="extract: regex, the answer pattern")
    id: str | None = None
    input: str | None = None
    prompt: str | None = None
    target: str | None = None
    rationale: str | None = None
    program: str | None = None
    choices: list[str] | str | None = None
    label_map: dict[str, str] | None = None
    options: list[str] | str | None = None
    tests: str | None = None
    code_prefix: str | None = None
    meta: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class ParamSpec(_Strict):
    default: Any = None
    choices: list[Any] | None = None
    description: str = ""
    when_set: dict[str, Any] = Field(
        default_factory=dict,
        description="spec keys (defaults, splits) merged over the spec when the param is set",
    )


class TaskSpec(_Strict):
    name: str
    description: str = ""
    dev_description: str = Field("", description="of the dev split carved from train")
    data_dir: str | None = None
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)
    splits: dict[str, dict[str, Any] | None]
    base_dir: str = Field(".", description="set by the loader: the folder of the YAML file")


def split_role(name: str) -> str | None:
    if name in ("train", "dev", "test"):
        return name
    for prefix in ("ood_", "demos_"):
        if name.startswith(prefix) and len(name) > len(prefix):
            return prefix[:-1]
    return None


def validation_message(e: ValidationError, where: str, keys: list[str]) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return (
            f"{where}: unknown key '{loc}'{suggest(str(err['loc'][-1]), keys)}; remove or rename it"
        )
    if err["type"] == "missing":
        return f"{where}: required key '{loc}' is missing; add it"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: key '{loc}': {msg} (got {err.get('input')!r}); fix its value"


def parse_spec(data: Any, where: str, base_dir: Path, default_name: str) -> TaskSpec:
    """A validated `TaskSpec` from a YAML mapping, or a one-line `LabError`."""
    if not isinstance(data, dict):
        raise LabError(f"{where}: a task spec must be a YAML mapping (name, defaults, splits)")
    data = {"name": default_name, **data, "base_dir": str(base_dir)}
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as e:
        raise LabError(validation_message(e, where, list(TaskSpec.model_fields))) from None
    for key in spec.defaults:
        if key not in SplitSpec.model_fields:
            raise LabError(
                f"{where} defaults: unknown key '{key}'{suggest(key, SplitSpec.model_fields)}; "
                "remove or rename it"
            )
    for key in ("train", "test"):
        if key not in spec.splits:
            raise LabError(
                f"{where}: splits.{key} is missing; a task needs a train and a test split"
            )
    for name in spec.splits:
        if split_role(name) is None:
            raise LabError(
                f"{where}: split '{name}' has no role; name it {ROLE_HELP}"
                f"{suggest(name, ['train', 'dev', 'test'])}"
            )
    for name in spec.splits:
        split_spec(spec, name, where)  # every split's keys checked now, not mid-build
    return spec


def split_spec(spec: TaskSpec, name: str, where: str) -> SplitSpec:
    """The split's keys over the task's `defaults` (a split's `meta` adds to the defaults')."""
    own = spec.splits[name] or {}
    if not isinstance(own, dict):
        raise LabError(f"{where}: splits.{name} must be a mapping of keys (or empty)")
    merged = {**spec.defaults, **own}
    if "meta" in spec.defaults and "meta" in own:
        merged["meta"] = {**spec.defaults["meta"], **own["meta"]}
    try:
        return SplitSpec.model_validate(merged)
    except ValidationError as e:
        raise LabError(
            validation_message(e, f"{where} splits.{name}", list(SplitSpec.model_fields))
        ) from None


def load_spec_file(path: Path) -> TaskSpec:
    if not path.is_file():
        raise LabError(f"task file '{path}' not found; pass the path to a task YAML")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise LabError(f"task file '{path}'{line}: not valid YAML; fix the syntax") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LabError(
            f"task file '{path}' could not be read ({type(e).__name__}); fix it"
        ) from None
    return parse_spec(data, str(path), path.resolve().parent, path.stem)
