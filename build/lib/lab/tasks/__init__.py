"""Tasks by name: every task is declarative (lab/tasks/declarative.py), a spec inline in
the recipe (`task.spec`), a YAML file (`task.name: path/to/task.yaml`), or a YAML shipped
with the lab (`lab/tasks/yaml/<name>.yaml`, named by its name). Python enters only through
a spec's hooks (`module:function`).

`build_task` also builds the probe splits of `task.params.probes` (BBH, other tasks of this
registry: lab/tasks/probes.py) for every task: a task's own builder never sees `probes`."""

from __future__ import annotations

from pathlib import Path

from lab.core.errors import LabError, suggest
from lab.core.example import Example
from lab.core.recipe import TaskCfg
from lab.tasks.declarative import build_declarative
from lab.tasks.probes import build_probes
from lab.tasks.spec import TaskSpec, load_spec_file, parse_spec, split_spec

YAML_DIR = Path(__file__).resolve().parent / "yaml"


def yaml_tasks() -> list[str]:
    """The names of the declarative tasks shipped with the lab."""
    return sorted(p.stem for p in YAML_DIR.glob("*.yaml"))


def task_spec(cfg: TaskCfg) -> TaskSpec:
    """The declarative spec of the task `cfg` names."""
    if cfg.spec is not None:
        return parse_spec(cfg.spec, "recipe task.spec", Path.cwd(), cfg.name)
    if cfg.name.endswith((".yaml", ".yml")):
        return load_spec_file(Path(cfg.name).expanduser())
    if (YAML_DIR / f"{cfg.name}.yaml").is_file():
        return load_spec_file(YAML_DIR / f"{cfg.name}.yaml")
    known = yaml_tasks()
    raise LabError(
        f"unknown task '{cfg.name}'{suggest(cfg.name, known)}; known tasks: {known}, or the "
        "path to a task YAML, or a spec inline under task.spec"
    )


def build_task(cfg: TaskCfg) -> dict[str, list[Example]]:
    """The task's splits, then its probe splits (`task.params.probes`), in that order."""
    spec = task_spec(cfg)
    params = dict(cfg.params)
    probes = params.pop("probes", None)
    own = cfg.model_copy(update={"params": params})
    splits = build_declarative(spec, own)
    for name, examples in splits.items():
        if not examples and name != "dev":
            raise LabError(f"task '{cfg.name}' split '{name}' is empty; raise its size in `task:`")
    if probes is not None:
        splits.update(build_probes(probes, cfg, build_task, yaml_tasks()))
    return splits


def describe_task(task: TaskCfg | str) -> dict[str, str]:
    """{split: one line on where it comes from and how it is scored}."""
    cfg = TaskCfg(name=task) if isinstance(task, str) else task
    spec = task_spec(cfg)
    out = {}
    for name in spec.splits:
        s = split_spec(spec, name, f"task {spec.name}")
        out[name] = s.description or f"{name} of {spec.name} ({s.output_type})"
    if "dev" not in out:
        dev = spec.dev_description or "ID dev: a seeded sample of the train rows, not in train"
        out = {"train": out["train"], "dev": dev, **out}
    return out
