"""An lm-evaluation-harness task YAML as the source and templates of one split of a
declarative task, so an existing lm-eval task serves as an ID or OOD split (lm-eval itself
is not needed):

    splits:
      ood_arc: {lm_eval: {file: arc_easy.yaml, split: test}}

Read: ``dataset_path``, ``dataset_name``, ``dataset_kwargs`` (e.g. ``data_files``),
``training_split`` / ``validation_split`` / ``test_split`` / ``fewshot_split`` (the one
named by `split`), ``doc_to_text``, ``doc_to_target``, ``doc_to_choice`` (Jinja templates,
or a column name), ``output_type`` (``multiple_choice`` -> scored by the log-likelihood of
the choices; ``generate_until`` -> generated, the answer compared exactly, ignoring case).
Accepted and not used (the lab decides them per arm): ``task``, ``tag``, ``group``,
``description``, ``num_fewshot``, ``metric_list``, ``generation_kwargs``,
``target_delimiter``, ``fewshot_delimiter``, ``fewshot_config``, ``metadata``,
``should_decontaminate``, ``doc_to_decontamination_query``, ``repeats``.
Anything else (``process_docs``, ``!function`` hooks, ``include``, ``filter_list``, other
output types) is refused with a one-line error: declare the split in the lab's own format.
The split's own keys override what is read here (e.g. a `where` or `limit`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from lab.core.errors import LabError

_USED = {
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "training_split",
    "validation_split",
    "test_split",
    "fewshot_split",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "output_type",
}
_IGNORED = {
    "task",
    "tag",
    "group",
    "description",
    "num_fewshot",
    "metric_list",
    "generation_kwargs",
    "target_delimiter",
    "fewshot_delimiter",
    "fewshot_config",
    "metadata",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "repeats",
}
_OUTPUT = {"multiple_choice": "multiple_choice", "generate_until": "generate"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class _Function(str):
    """A `!function module.name` tag: lm-eval's Python hooks, not run here."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))


def _template(value: Any, key: str, where: str) -> Any:
    if isinstance(value, _Function):
        raise LabError(
            f"{where}: lm-eval key {key} is a Python hook (!function {value}), which the lab "
            "does not run; write it as a Jinja template in the split instead"
        )
    if isinstance(value, int):
        return f"{{{{ {value} }}}}"
    if isinstance(value, str) and _IDENT.fullmatch(value.strip()):
        return f"{{{{ {value.strip()} }}}}"  # a column name
    if isinstance(value, list):
        return [str(v) for v in value]
    if not isinstance(value, str):
        raise LabError(f"{where}: lm-eval key {key} must be a template, a column or a list")
    return value


def lm_eval_keys(file: str, split: str, base: Path, where: str) -> dict[str, Any]:
    """The split keys (source, input, prompt, target, choices, output_type) of one split of
    an lm-eval task YAML; relative `file` and `data_files` are under `base`."""
    path = Path(file).expanduser()
    path = path if path.is_absolute() else base / path
    where = f"{where} (lm-eval task {path.name})"
    if not path.is_file():
        raise LabError(f"{where}: file '{path}' not found; fix `lm_eval.file`")
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except yaml.YAMLError:
        raise LabError(f"{where}: not valid YAML; fix the file") from None
    if not isinstance(doc, dict):
        raise LabError(f"{where}: not an lm-eval task (a YAML mapping); fix the file")
    unknown = sorted(set(doc) - _USED - _IGNORED)
    if unknown:
        raise LabError(
            f"{where}: lm-eval keys {unknown} are not supported; declare this split in the "
            "lab's format (see lab/tasks/declarative.py) or remove them"
        )
    split_key = {
        "test": "test_split",
        "validation": "validation_split",
        "training": "training_split",
        "fewshot": "fewshot_split",
    }[split]
    if not doc.get("dataset_path") or not doc.get(split_key):
        raise LabError(
            f"{where}: needs dataset_path and {split_key}; add them or pick another split"
        )
    kind = doc.get("output_type", "generate_until")
    if kind not in _OUTPUT:
        raise LabError(
            f"{where}: output_type {kind} is not supported (only {sorted(_OUTPUT)}); declare "
            "this split in the lab's format"
        )
    dkw = dict(doc.get("dataset_kwargs") or {})
    data_files = dkw.pop("data_files", None)
    if isinstance(data_files, str) and not Path(data_files).is_absolute():
        data_files = str(path.parent / data_files)
    source = {
        "path": doc["dataset_path"],
        "name": doc.get("dataset_name"),
        "split": doc[split_key],
        "data_files": data_files,
        "kwargs": dkw,
    }
    for key in ("doc_to_text", "doc_to_target"):
        if key not in doc:
            raise LabError(f"{where}: {key} is missing; add it")
    text = _template(doc["doc_to_text"], "doc_to_text", where)
    out: dict[str, Any] = {
        "source": {k: v for k, v in source.items() if v is not None},
        "input": text,
        "prompt": text,
        "target": _template(doc["doc_to_target"], "doc_to_target", where),
        "output_type": _OUTPUT[kind],
    }
    if kind == "multiple_choice":
        if "doc_to_choice" not in doc:
            raise LabError(f"{where}: output_type multiple_choice needs doc_to_choice; add it")
        out["choices"] = _template(doc["doc_to_choice"], "doc_to_choice", where)
    else:
        out["extract"] = "exact"
    return out
