"""Declarative tasks: a task spec (lab/tasks/spec.py; a YAML file or `task.spec` inline in
a recipe) turned into the split dict of `Example`s that every other task builder returns.

Per split (each key may also sit under `defaults:`, which every split inherits):

- data: `source` (`datasets.load_dataset` arguments: a hub id with `name`, `split`,
  `revision`; or `json` / `csv` / `parquet` with `data_files`, relative to the task's data
  folder; lab/tasks/sources.py), `hub` (the source used instead when the recipe says
  `task.source: hub`), or `lm_eval` (an lm-evaluation-harness task YAML, lab/tasks/lmeval_yaml.py); then `map`
  (a `module:function` hook adding columns to a row), `where` (a Jinja expression: rows
  where it is false are left out) and `limit` (at most that many rows, in source order);
- fields, by Jinja templates (lab/tasks/templates.py): `input` (the question), `target`
  (the gold answer), `rationale` (a CoT ending in "The answer is ..."), `program` (Python
  printing the answer), `prompt` (the task's own pattern instead of the lab's "Question:
  ...\\nAnswer:"), `choices` (verbalizers; `label_map` maps the target onto them, and a
  target that is an integer indexes them, as in lm-eval), `options` (lettered options of a
  question answered by letter), `tests` / `code_prefix` (code), `meta`, `id` (default
  ``<split>-<row, 5 digits>``);
- scoring: `output_type` (generate | multiple_choice | code) and, to generate, `extract`
  (number | exact | regex with `regex:` | option_letter; eval/answers.py);
- sampling: every split is a seeded sample of its rows, listed in source order: train
  `task.n_train`, dev `task.n_dev`, test and each `ood_*` `task.n_test`; `demos_*` keep all
  their rows. Without a `dev` split, dev and train are disjoint parts of one seeded
  permutation of the train rows (dev first). `sample_tag` names the seed of the sample
  (default ``{task}-{seed}-{split}``); `sampler` (`module:function`) replaces the sampling.

Checks (a one-line `LabError` each): a template using a column the data lacks (the columns
are listed, the closest suggested), a template failing on a row, an empty split, a gold
label outside the choices, duplicate ids, an OOD split holding questions of the train pool.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from lab.core.errors import LabError, suggest
from lab.core.example import Example
from lab.core.recipe import TaskCfg
from lab.tasks import templates as tpl
from lab.tasks.lmeval_yaml import lm_eval_keys
from lab.tasks.sources import data_root, hook, load_rows
from lab.tasks.spec import SplitSpec, TaskSpec, split_role, split_spec

_TEXT_FIELDS = ("input", "prompt", "target", "rationale", "program", "tests", "code_prefix", "id")


def resolve_params(spec: TaskSpec, cfg: TaskCfg) -> dict[str, Any]:
    given = dict(cfg.params)
    for key, value in given.items():
        if key not in spec.params:
            raise LabError(
                f"task {spec.name}: unknown param '{key}'{suggest(key, spec.params)}; known "
                f"params: {sorted(spec.params)}"
            )
        allowed = spec.params[key].choices
        if allowed is not None and value not in allowed:
            raise LabError(f"task {spec.name}: params.{key}={value!r} is not one of {allowed}")
    return {k: given.get(k, p.default) for k, p in spec.params.items()}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def with_params(spec: TaskSpec, params: dict[str, Any]) -> TaskSpec:
    """The spec with the `when_set` keys of every param that is set merged over it."""
    data = spec.model_dump()
    for name, p in spec.params.items():
        if params.get(name) and p.when_set:
            unknown = set(p.when_set) - {"defaults", "splits"}
            if unknown:
                raise LabError(
                    f"task {spec.name}: params.{name}.when_set may set defaults and splits, "
                    f"not {sorted(unknown)}"
                )
            data = _merge(data, p.when_set)
    return TaskSpec.model_validate(data)


def resolved_split(spec: TaskSpec, name: str, where: str) -> SplitSpec:
    """The split's spec: its keys over `defaults`; for a split read from an lm-eval task,
    its keys over that task's (it does not inherit `defaults`: another dataset)."""
    s = split_spec(spec, name, where)
    if s.lm_eval is None:
        return s
    keys = lm_eval_keys(s.lm_eval.file, s.lm_eval.split, Path(spec.base_dir), where)
    own = {k: v for k, v in (spec.splits[name] or {}).items() if k != "lm_eval"}
    return SplitSpec.model_validate({**keys, **own})


class SplitBuilder:
    """The rows of one split (loaded, mapped, filtered) and their examples."""

    def __init__(self, spec: TaskSpec, name: str, cfg: TaskCfg, params: dict[str, Any]):
        self.spec, self.name, self.cfg, self.params = spec, name, cfg, params
        self.where = f"task {spec.name} split {name}"
        self.s = resolved_split(spec, name, self.where)
        self._check_templates()
        src = self.s.hub if cfg.source == "hub" and self.s.hub else self.s.source
        if src is None:
            raise LabError(f"{self.where}: no `source` (or `lm_eval`); say where its rows are")
        rows = load_rows(src, data_root(spec, cfg), cfg, self.where)
        # A split built before in this process from the same rows (load_rows keeps a file's
        # rows while it is unchanged; a hook's are new each time), spec, seed and params:
        # its kept rows and examples again (the pools are rendered whole, e.g. HANS's 30,000
        # rows, for a sample of a few).
        self.key = None if src.hook else _pool_key(rows, self.s, spec.name, name, cfg, params)
        self._pool = _POOLS.get(self.key) if self.key else None
        if self._pool is not None:
            self.rows = self._pool[0]
            return
        for ref in (src.map, self.s.map):  # the source's, then the split's
            if ref:
                fn = hook(ref, self.where)
                rows = [fn(dict(r)) for r in rows]
        self.rows: list[tuple[int, dict[str, Any]]] = []
        for i, r in enumerate(rows):
            if self.s.where is None or tpl.test("where", self.s.where, self.ctx(i, r), self.where):
                self.rows.append((i, r))
                if self.s.limit and len(self.rows) == self.s.limit:
                    break
        if not self.rows and not (name == "dev" and cfg.n_dev == 0):
            raise LabError(
                f"{self.where} is empty ({len(rows)} rows read, none kept); fix its `source` "
                "or `where`"
            )

    def _check_templates(self) -> None:
        s = self.s
        if s.output_type is None:
            raise LabError(
                f"{self.where}: no `output_type`; say how it is scored: generate, "
                "multiple_choice or code"
            )
        need = {
            "generate": ("input", "target"),
            "multiple_choice": ("input", "target", "choices"),
            "code": ("input", "tests"),
        }[s.output_type]
        for key in need:
            if getattr(s, key) is None:
                raise LabError(f"{self.where}: output_type {s.output_type} needs `{key}`; add it")
        if s.output_type == "generate":
            how = s.extract or "number"
            if how not in ("number", "exact", "regex", "option_letter"):
                raise LabError(
                    f"{self.where}: extract '{how}' is not one of number, exact, regex, "
                    f"option_letter{suggest(how, ['number', 'exact', 'regex', 'option_letter'])}"
                )
            if (how == "regex") != (s.regex is not None):
                raise LabError(f"{self.where}: `regex:` goes with extract: regex (and only then)")
            if how == "option_letter" and s.options is None:
                raise LabError(f"{self.where}: extract option_letter needs `options`; add it")
        for key in _TEXT_FIELDS:
            if getattr(s, key) is not None:
                tpl.compile_check(key, getattr(s, key), self.where)
        if s.where is not None:
            tpl.compile_check("where", s.where, self.where, expression=True)

    def ctx(self, row: int, r: dict[str, Any], split: str | None = None) -> dict[str, Any]:
        lab = {
            "row": row,
            "split": split or self.name,
            "seed": self.cfg.seed,
            "task": self.spec.name,
            "params": self.params,
        }
        return tpl.context(r, lab)

    def example(self, row: int, r: dict[str, Any], split: str | None = None) -> Example:
        s, where, split = self.s, self.where, split or self.name
        c = self.ctx(row, r, split)
        text = lambda key: tpl.render(key, getattr(s, key), c, where) if getattr(s, key) else ""  # noqa: E731
        meta: dict[str, Any] = {"split": split}
        for key, source in s.meta.items():
            value = tpl.render_value(f"meta.{key}", source, c, where)
            if value is not None and value != "":
                meta[key] = value
        answer, choices = text("target").strip(), ()
        if s.output_type == "multiple_choice":
            choices = tuple(
                " " + x.strip() for x in tpl.render_list("choices", s.choices, c, where)
            )
            answer = self._gold(answer, choices, row)
        if s.output_type == "generate" and (s.extract or "number") == "option_letter":
            opts = tpl.render_list("options", s.options, c, where)
            meta["options"] = {chr(65 + i): o for i, o in enumerate(opts)}
            if answer not in meta["options"]:
                raise LabError(
                    f"{where}: row {row}'s gold answer {answer!r} is not an option letter "
                    f"{sorted(meta['options'])}; fix `target`"
                )
        if s.output_type == "code":
            meta["tests"] = text("tests")
            if s.code_prefix:
                meta["code_prefix"] = text("code_prefix")
        how = (s.extract or "number") if s.output_type == "generate" else ""
        return Example(
            id=text("id") if s.id else f"{split}-{row:05d}",
            question=text("input"),
            answer=answer,
            rationale=text("rationale").strip(),
            program=text("program").strip("\n"),
            meta=meta,
            prompt=text("prompt"),
            choices=choices,
            output_type=s.output_type or "",
            extractor=f"regex:{s.regex}" if how == "regex" else how,
        )

    def _gold(self, label: str, choices: tuple[str, ...], row: int) -> str:
        names = [c.strip() for c in choices]
        if self.s.label_map is not None:
            if label not in self.s.label_map:
                raise LabError(
                    f"{self.where}: row {row}'s label {label!r} is not in `label_map` "
                    f"{sorted(self.s.label_map)}; add it or leave the row out with `where`"
                )
            label = self.s.label_map[label].strip()
        if label not in names and label.isdigit() and int(label) < len(names):
            label = names[int(label)]  # an index into the choices, as in lm-eval
        if label not in names:
            raise LabError(
                f"{self.where}: row {row}'s gold label {label!r} is not one of the choices "
                f"{names}; map it with `label_map` or fix `choices`"
            )
        return label

    def pool(self) -> list[Example]:
        """Every kept row's example (computed once per process for a file source)."""
        if self._pool is None:
            self._pool = (self.rows, [self.example(i, r) for i, r in self.rows])
            if self.key:
                _POOLS[self.key] = self._pool
        return list(self._pool[1])

    def n(self) -> int | None:
        sample = self.s.sample or ("all" if split_role(self.name) == "demos" else "seeded")
        if sample == "all":
            return None
        return {"train": self.cfg.n_train, "dev": self.cfg.n_dev}.get(self.name, self.cfg.n_test)

    def tag(self, split: str | None = None) -> str:
        template = self.s.sample_tag or "{task}-{seed}-{split}"
        return template.format(task=self.spec.name, seed=self.cfg.seed, split=split or self.name)


# Built pools: (kept rows, their examples) by `_pool_key` (examples are frozen; lists copied).
_POOLS: dict[tuple[Any, ...], tuple[list[tuple[int, dict[str, Any]]], list[Example]]] = {}


def _pool_key(
    rows: list[dict[str, Any]],
    s: SplitSpec,
    task: str,
    name: str,
    cfg: TaskCfg,
    params: dict[str, Any],
) -> tuple[Any, ...]:
    """What a split's pool depends on: the loaded rows (the object load_rows keeps, never
    freed, so its id names it), the resolved split spec (templates, maps, where, meta), the
    task, split name, seed and params (templates may read them), the source choice."""
    p = json.dumps(params, sort_keys=True, default=str)
    return (id(rows), s.model_dump_json(), task, name, cfg.seed, cfg.source, p)


def permutation(n: int, tag: str) -> list[int]:
    order = list(range(n))
    random.Random(tag).shuffle(order)
    return order


def seeded_sample(xs: list[Any], n: int, tag: str) -> list[Any]:
    """n of xs, a prefix of the tag's seeded permutation, listed in the order of xs."""
    return [xs[i] for i in sorted(permutation(len(xs), tag)[:n])]


def _sample(b: SplitBuilder, pool: list[Example]) -> list[Example]:
    n = b.n()
    if n is None:
        return pool
    if b.s.sampler:
        return list(hook(b.s.sampler, b.where)(pool, n, b.tag()))
    return seeded_sample(pool, n, b.tag())


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def build_declarative(spec: TaskSpec, cfg: TaskCfg) -> dict[str, list[Example]]:
    """The task's splits: train, dev, test, its OOD splits, then its fixed demo sets."""
    params = resolve_params(spec, cfg)
    spec = with_params(spec, params)
    cfg = cfg.model_copy(update={"params": params})
    order = sorted(
        spec.splits,
        key=lambda s: ["train", "dev", "test", "ood", "demos"].index(split_role(s) or "demos"),
    )
    builders = {name: SplitBuilder(spec, name, cfg, params) for name in order}
    pools = {name: b.pool() for name, b in builders.items()}
    out: dict[str, list[Example]] = {}
    train = builders["train"]
    if "dev" in builders:
        out["train"] = _sample(train, pools["train"])
    else:  # dev and train: disjoint parts of one permutation of the train rows
        perm = permutation(len(train.rows), train.tag("train"))
        dev_i = sorted(perm[: cfg.n_dev])
        out["train"] = [
            pools["train"][i] for i in sorted(perm[cfg.n_dev : cfg.n_dev + cfg.n_train])
        ]
        out["dev"] = [train.example(*train.rows[i], split="dev") for i in dev_i]
    for name in order:
        if name != "train":
            out[name] = _sample(builders[name], pools[name])
    _check(spec, builders, pools, out)
    return {
        name: out[name]
        for name in ["train", "dev", *[s for s in order if s not in ("train", "dev")]]
    }


def _check(
    spec: TaskSpec,
    builders: dict[str, SplitBuilder],
    pools: dict[str, list[Example]],
    out: dict[str, list[Example]],
) -> None:
    for name, pool in pools.items():
        seen: dict[str, int] = {}
        for ex, (row, _r) in zip(pool, builders[name].rows, strict=True):
            if ex.id in seen:
                raise LabError(
                    f"task {spec.name} split {name}: example id '{ex.id}' repeats (rows "
                    f"{seen[ex.id]} and {row}); make `id` unique"
                )
            seen[ex.id] = row
    where: dict[str, str] = {}
    for name, xs in out.items():
        for ex in xs:
            if where.setdefault(ex.id, name) != name:
                raise LabError(
                    f"task {spec.name}: example id '{ex.id}' is in splits {where[ex.id]} and "
                    f"{name}; make `id` unique across splits, e.g. start it with "
                    "{{ lab.split }}"
                )
    train = {_norm(ex.question): ex for ex in pools["train"]}
    for name, pool in pools.items():
        if split_role(name) != "ood":
            continue
        shared = [ex for ex in pool if _norm(ex.question) in train]
        if shared:
            raise LabError(
                f"task {spec.name}: OOD split {name} holds {len(shared)} question(s) of the "
                f"train pool (e.g. {shared[0].id}: {shared[0].question[:60]!r}); leave them "
                "out with `where` or use another source"
            )
    for name, xs in out.items():
        if not xs and name != "dev":
            raise LabError(f"task {spec.name} split {name} is empty; raise its size in `task:`")
