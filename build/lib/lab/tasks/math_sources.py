"""Where the gsm8k task's data come from: the copies in ``data/`` (provenance, licences and
checksums in ``data/README.md``), or the Hugging Face hub with ``task.source: hub``.

Local files are read with ``datasets.load_dataset`` (the ``json`` builder; ASDiv.xml with
the ``text`` builder as one document, parsed with ``xml.etree``: the ``xml`` builder of
datasets 5.2 fails on local files). ``task.data_dir`` points at another folder with the
layout of ``data/``. A missing, empty or corrupt file is a one-line `LabError` naming the
file (and, for JSON, the line) and the fix. `HUB` names the hub datasets; AddSub, SingleEq
and AQuA have no canonical hub dataset and are read from the upstream files (the commit of
the local copies) with the json builder.

`load_records(name, cfg)` gives the raw records of one source; lab/tasks/math_sets.py turns
them into the rows of the task's splits (lab/tasks/yaml/gsm8k.yaml).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import LabError, hub_error
from lab.core.recipe import TaskCfg

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"

KOJIMA = "https://raw.githubusercontent.com/kojima-takeshi188/zero_shot_cot/5ef330fcdeec0cd26aee27943504f91f8ec1c33c/dataset"


@dataclass(frozen=True)
class Source:
    local: str  # path under the data folder
    builder: str  # json, or xml (read with the text builder as one document, then parsed)
    hub: str  # hub dataset id, or the URL of the upstream file (then loaded with `builder`)
    hub_config: str | None = None


SOURCES: dict[str, Source] = {
    "gsm8k_train": Source("gsm8k/train.jsonl", "json", "openai/gsm8k", "main"),
    "gsm8k_test": Source("gsm8k/test.jsonl", "json", "openai/gsm8k", "main"),
    "svamp": Source("svamp/SVAMP.json", "json", "ChilleD/SVAMP"),
    "asdiv": Source("ASDiv/ASDiv.xml", "xml", "EleutherAI/asdiv"),
    "multiarith": Source("MultiArith/MultiArith.json", "json", "ChilleD/MultiArith"),
    "addsub": Source("AddSub/AddSub.json", "json", f"{KOJIMA}/AddSub/AddSub.json"),
    "singleeq": Source("SingleEq/questions.json", "json", f"{KOJIMA}/SingleEq/questions.json"),
    "aqua": Source("AQuA/test.json", "json", f"{KOJIMA}/AQuA/test.json"),
}
HUB = {k: (s.hub, s.hub_config) for k, s in SOURCES.items()}


def data_dir(cfg: TaskCfg) -> Path:
    """task.data_dir, else the lab's data/."""
    return Path(cfg.data_dir).expanduser().resolve() if cfg.data_dir else DEFAULT_DATA_DIR


def missing(path: Path) -> LabError:
    return LabError(
        f"data file '{path}' not found; restore it (`git checkout -- data/`), point "
        "task.data_dir at a folder with the layout of data/ (see data/README.md), or set "
        "task.source: hub (needs network)"
    )


def json_error_location(path: Path) -> str | None:
    """'line N: <why>' for the first invalid JSON in a JSON-lines or JSON-array file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return f"unreadable ({e})"
    if text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            return f"line {e.lineno}: not valid JSON ({e.msg})"
        return None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as e:
            return f"line {i}: not valid JSON ({e.msg})"
    return None


def _load_files(datasets: Any, builder: str, data_files: str) -> Any:
    if builder == "xml":
        return datasets.load_dataset("text", data_files=data_files, sample_by="document")
    return datasets.load_dataset(builder, data_files=data_files)


def _load_local(path: Path, builder: str) -> list[dict[str, Any]]:
    import datasets

    if not path.is_file():
        raise missing(path)
    if path.read_text(encoding="utf-8", errors="replace").strip() in ("", "[]"):
        raise LabError(
            f"data file '{path}' is empty (no records, so its split would be empty); restore "
            "it (`git checkout -- data/`) or point task.data_dir at a complete copy"
        )
    try:
        ds = _load_files(datasets, builder, str(path))["train"]
    except Exception as e:
        where = json_error_location(path) if builder == "json" else None
        why = where or f"{type(e).__name__}: {e}".splitlines()[0]
        raise LabError(
            f"data file '{path}' {why}; fix the file or restore it (`git checkout -- data/`)"
        ) from None
    if builder == "xml":
        return parse_asdiv_xml(ds[0]["text"], str(path))
    return list(ds)


def _load_hub(name: str, src: Source) -> list[dict[str, Any]]:
    import datasets

    try:
        if src.hub.startswith("https://"):
            ds = _load_files(datasets, src.builder, src.hub)
        else:
            ds = datasets.load_dataset(src.hub, src.hub_config)
    except Exception as e:
        raise hub_error(src.hub, e) from None
    if name.startswith("gsm8k_"):
        split = name.removeprefix("gsm8k_")
        return list(ds[split])
    if src.builder == "xml" and src.hub.startswith("https://"):
        return parse_asdiv_xml(ds["train"][0]["text"], src.hub)
    # SVAMP / MultiArith ship train+test (and ASDiv one split): the whole set is OOD.
    return [row for split in sorted(ds) for row in ds[split]]


def parse_asdiv_xml(text: str, where: str) -> list[dict[str, Any]]:
    """ASDiv.xml -> records with the field names of the hub copy (EleutherAI/asdiv)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else "?"
        raise LabError(
            f"data file '{where}' line {line}: not valid XML ({e}); fix the file or restore "
            "it (`git checkout -- data/`)"
        ) from None
    out = []
    for p in root.iter("Problem"):
        rec = {c.tag.lower().replace("-", "_"): (c.text or "") for c in p}
        rec.update({k.lower(): v for k, v in p.attrib.items()})
        out.append(rec)
    return out


def load_records(name: str, cfg: TaskCfg) -> list[dict[str, Any]]:
    """The raw records of source `name` (a key of `SOURCES`), local or from the hub."""
    src = SOURCES[name]
    if cfg.source == "hub":
        return _load_hub(name, src)
    return _load_local(data_dir(cfg) / src.local, src.builder)


def where(name: str, cfg: TaskCfg) -> str:
    """How an error names source `name`: the hub id or the local file."""
    src = SOURCES[name]
    return f"hub {src.hub}" if cfg.source == "hub" else str(data_dir(cfg) / src.local)


def stamp(cfg: TaskCfg) -> tuple:
    """What the loaded data depend on: the hub, or the data folder and its files' times and
    sizes (a cache of derived rows is valid while this is unchanged)."""
    if cfg.source == "hub":
        return ("hub",)
    root = data_dir(cfg)
    stats = []
    for src in SOURCES.values():
        p = root / src.local
        st = p.stat() if p.is_file() else None
        stats.append((src.local, st.st_mtime_ns if st else None, st.st_size if st else None))
    return ("local", str(root), tuple(stats))
