"""Where a declarative task's rows come from (lab/tasks/declarative.py): a split's `source`
as `datasets.load_dataset` arguments (a hub id, or a builder for local files with
`data_files` under the task's data folder), or a `hook` (module:function) that returns rows;
then its `columns` renames (its `map` hook is applied by the split, after them). Source strings may use the task's
params (``data_files: "kshot/{{ lab.params.split }}/train.tsv"``). Rows are read once per
process while their files are unchanged.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.core.errors import LabError
from lab.core.recipe import TaskCfg
from lab.tasks import templates as tpl
from lab.tasks.spec import SourceSpec, TaskSpec

_CACHE: dict[str, list[dict[str, Any]]] = {}


def hook(ref: str, where: str) -> Callable[..., Any]:
    """The function named by `module:function`."""
    mod, _, name = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(mod), name) if name else None
    except ImportError as e:
        raise LabError(
            f"{where}: hook '{ref}' could not be imported ({e}); fix the module"
        ) from None
    if not callable(fn):
        raise LabError(f"{where}: hook '{ref}' is not a function; write module:function")
    return fn


def data_root(spec: TaskSpec, cfg: TaskCfg) -> Path:
    """Where relative `data_files` are: task.data_dir, else the spec's data_dir (relative to
    its file), else the folder of the task file (of the working directory, inline)."""
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser().resolve()
    base = Path(spec.base_dir)
    return (base / spec.data_dir).resolve() if spec.data_dir else base


def _files(data_files: Any, root: Path) -> Any:
    if isinstance(data_files, dict):
        return {k: _files(v, root) for k, v in data_files.items()}
    if isinstance(data_files, list):
        return [_files(v, root) for v in data_files]
    path = Path(data_files).expanduser()
    path = path if path.is_absolute() else root / path
    if not any(c in str(path) for c in "*?[") and not path.is_file():
        raise LabError(
            f"data file '{path}' not found; restore it or fix `data_files` (relative paths "
            f"are under '{root}'), or set task.data_dir"
        )
    return str(path)


def load_rows(src: SourceSpec, root: Path, cfg: TaskCfg, where: str) -> list[dict[str, Any]]:
    """The rows of a source (read once per process while its files are unchanged: the same
    list object again, never freed, so callers may key on it), with its `columns` renamed.
    Its strings may use the task's params: ``{{ lab.params.x }}``."""
    src = _render_source(src, cfg, where)
    if src.hook:
        rows = hook(src.hook, where)(cfg, **src.args)
        return [dict(r) for r in rows]
    if not src.path:
        raise LabError(f"{where}: source has no `path` (a hub id, json, csv, parquet) or `hook`")
    files = _files(src.data_files, root) if src.data_files is not None else None
    rows = _read(src, files, where)
    if not src.columns:
        return rows
    missing = sorted({old for old in src.columns.values() if rows and old not in rows[0]})
    if missing:
        raise LabError(
            f"{where}: `columns` renames {missing}, which the data lacks; its columns are "
            f"{sorted(rows[0])}"
        )
    key = json.dumps([id(rows), src.columns], sort_keys=True)  # kept like the file's rows
    if key not in _CACHE:
        _CACHE[key] = [{**r, **{new: r[old] for new, old in src.columns.items()}} for r in rows]
    return _CACHE[key]


def _read(src: SourceSpec, files: Any, where: str) -> list[dict[str, Any]]:
    kw = {k: v for k, v in (("name", src.name), ("revision", src.revision)) if v is not None}
    key = json.dumps([src.path, files, src.split, kw, src.kwargs, _stamp(files)], default=str)
    if key not in _CACHE:
        import datasets

        try:
            ds = datasets.load_dataset(
                src.path, data_files=files, split=src.split, **kw, **src.kwargs
            )
        except Exception as e:
            why = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            what = files or src.path
            raise LabError(
                f"{where}: could not load {what!r} ({why}); fix the source (a local file, or a "
                "hub id with network access)"
            ) from None
        _CACHE[key] = [dict(r) for r in ds]
    return _CACHE[key]


def _render_source(src: SourceSpec, cfg: TaskCfg, where: str) -> SourceSpec:
    ctx = tpl.context({}, {"params": dict(cfg.params), "seed": cfg.seed, "row": "-"})

    def r(value: Any, key: str) -> Any:
        if isinstance(value, str) and "{" in value:
            return tpl.render(f"source.{key}", value, ctx, where)
        if isinstance(value, list):
            return [r(v, key) for v in value]
        if isinstance(value, dict):
            return {k: r(v, key) for k, v in value.items()}
        return value

    keys = ("path", "name", "split", "revision", "data_files")
    return src.model_copy(update={k: r(getattr(src, k), k) for k in keys})


def _stamp(files: Any) -> list[Any]:
    flat = files if isinstance(files, list) else [files] if isinstance(files, str) else []
    return [(f, Path(f).stat().st_mtime_ns) for f in flat if Path(f).is_file()]
