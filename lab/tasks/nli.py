"""Sentence-pair classification by log-likelihood of verbalizers: the ID/OOD pairs of
Mosbach et al. 2023 ("Few-shot Fine-tuning vs. In-context Learning"): MNLI -> HANS (and
the mismatched genres), RTE -> HANS, QQP -> PAWS-QQP.

RTE -> HANS and QQP -> PAWS-QQP are declarative tasks (lab/tasks/yaml/rte_hans.yaml,
qqp_paws.yaml) with the same pattern, labels, samples and ids; this module builds
MNLI -> HANS (its LM-BFF k-shot splits and label schemes are not declarative yet) and
holds their hooks: `sample_hans` (the HANS sampler) and the hub row maps.

Every example is one pattern shared by ICL demos, fine-tuning and evaluation, followed by
a verbalizer, as in Mosbach et al.'s "gpt-3" in-context format (uds-lsv/llmft,
scripts/in_context/mnli/run_gpt3.sh: pattern "{text1} question: {text2} Yes or No?",
target prefix " answer:", target tokens " Yes" / " No"):

    {premise} question: {hypothesis} Yes or No? answer: Yes

`task.params.pattern: minimal` uses their fine-tuning pattern "{text1} {text2} ?" instead.
Yes = entailment (MNLI, RTE, HANS) or duplicate / paraphrase (QQP, PAWS-QQP); No = the rest.

MNLI labels (`task.params.labels`):
- `binary` (default, Mosbach et al.'s "mnli" task, task_utils.py: neutral examples are
  removed, contradiction -> No), applied to train, dev, test and the mismatched split;
- `merge` (their "mnli-original", and the HANS README's mapping): neutral and
  contradiction -> No (non-entailment); the ID classes are then 1:2.
HANS is 2-way (non-entailment -> No) either way.

Data: the copies in ``data/`` (provenance, licences, checksums: ``data/README.md``) read
with ``datasets.load_dataset("json", data_files=...)`` (the LM-BFF k-shot files with the
``csv`` builder, tab-separated); ``task.source: hub`` reads the hub datasets in ``SOURCES``.

Splits (sizes from TaskCfg; every sample is a prefix of one seeded permutation, listed in
source order; ids are ``<split>-<row in the source file>``):
- ``dev`` (``n_dev``) and ``train`` (the next ``n_train``): disjoint parts of the ID train
  pool (checkpoint selection uses dev only);
- ``test``: ``n_test`` of the ID evaluation set;
- OOD splits: ``n_test`` of each OOD set. HANS is sampled evenly over its 30 subcases (so
  heuristics and labels stay balanced in small samples); each HANS example keeps
  ``heuristic``, ``subcase`` and ``label`` in its meta for the per-heuristic, per-subcase
  and per-label tables of the report.
- With ``task.params.lmbff_split`` (e.g. ``16-42``, MNLI only), train and dev are that
  LM-BFF 16-shot split's ``train.tsv`` / ``dev_matched.tsv`` (16 examples per class, drawn
  from MNLI train; n_train / n_dev are ignored).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError, suggest
from lab.recipe import TaskCfg
from lab.tasks.base import Example, hub_error

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"

PATTERNS = {
    "gpt3": "{text1} question: {text2} Yes or No? answer:",
    "minimal": "{text1} {text2} ?",
}
CHOICES = (" Yes", " No")
LMBFF_SPLITS = ("16-13", "16-21", "16-42", "16-87", "16-100")


@dataclass(frozen=True)
class _Source:
    local: str  # path under the data folder
    hub: str  # hub dataset id
    hub_config: str | None
    hub_split: str


SOURCES: dict[str, _Source] = {
    "mnli_train": _Source("mnli/mnli_train_pool_8999.jsonl", "nyu-mll/multi_nli", None, "train"),
    "mnli_matched": _Source(
        "mnli/mnli_dev_matched.jsonl", "nyu-mll/multi_nli", None, "validation_matched"
    ),
    "mnli_mismatched": _Source(
        "mnli/textfooler_dev_mismatched_1000.jsonl",
        "nyu-mll/multi_nli",
        None,
        "validation_mismatched",
    ),  # fmt: skip
    "hans": _Source("hans/hans_evaluation_30000.jsonl", "jhu-cogsci/hans", None, "validation"),
}

# Integer labels of the hub copies -> the label names of the local files.
_HUB_LABELS = {
    "mnli": ("entailment", "neutral", "contradiction"),
    "hans": ("entailment", "non-entailment"),
    "rte": ("entailment", "not_entailment"),
}
_YES = {"entailment", "1", "True", "duplicate"}
_NO = {"contradiction", "neutral", "non-entailment", "not_entailment", "0", "False"}


# --------------------------------------------------------------------------- loading


def _data_dir(cfg: TaskCfg) -> Path:
    return Path(cfg.data_dir).expanduser().resolve() if cfg.data_dir else DEFAULT_DATA_DIR


_CACHE: dict[tuple, list[dict[str, Any]]] = {}  # (path, mtime, size) -> records


def _load_file(path: Path, builder: str = "json", **kw: Any) -> list[dict[str, Any]]:
    """The records of a local file (read once per process while the file is unchanged)."""
    if not path.is_file():
        raise LabError(
            f"data file '{path}' not found; restore it (`git checkout -- data/`), point "
            "task.data_dir at a folder with the layout of data/ (see data/README.md), or set "
            "task.source: hub (needs network)"
        )
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        _CACHE[key] = _read(path, builder, **kw)
    return _CACHE[key]


def _read(path: Path, builder: str, **kw: Any) -> list[dict[str, Any]]:
    import datasets

    try:
        return list(datasets.load_dataset(builder, data_files=str(path), **kw)["train"])
    except Exception as e:
        why = f"{type(e).__name__}: {e}".splitlines()[0]
        raise LabError(
            f"data file '{path}' could not be read ({why}); fix it or restore it "
            "(`git checkout -- data/`)"
        ) from None


def _load(name: str, cfg: TaskCfg) -> list[dict[str, Any]]:
    src = SOURCES[name]
    if cfg.source == "local" or not src.hub:
        return _load_file(_data_dir(cfg) / src.local)
    import datasets

    try:
        ds = datasets.load_dataset(src.hub, src.hub_config, split=src.hub_split)
    except Exception as e:
        raise hub_error(src.hub, e) from None
    kind = "mnli" if name.startswith("mnli") else name.split("_")[0]
    names = _HUB_LABELS.get(kind)
    rows = []
    for rec in ds:
        rec = dict(rec)
        if names is not None and isinstance(rec.get("label"), int):
            if rec["label"] < 0:  # unlabelled (GLUE test); never sampled
                continue
            rec["label"] = names[rec["label"]]
        if kind == "hans":
            rec["subcase_inferred"] = rec.get("subcase", "")
        if kind == "rte" and "sentence1" in rec:
            rec["premise"], rec["hypothesis"] = rec["sentence1"], rec["sentence2"]
        rows.append(rec)
    return rows


def _load_lmbff(cfg: TaskCfg, split: str, part: str) -> list[dict[str, Any]]:
    path = _data_dir(cfg) / "mnli" / "kshot_lmbff" / split / f"{part}.tsv"
    rows = _load_file(path, "csv", delimiter="\t", quoting=3)  # 3 = csv.QUOTE_NONE
    return [
        {"premise": r["sentence1"], "hypothesis": r["sentence2"], "label": r["gold_label"],
         "genre": r["genre"]}
        for r in rows
    ]  # fmt: skip


def hub_row(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A `map` hook for the hub copies of the declarative pair tasks (lab/tasks/yaml/):
    integer labels to the label names of the local files, RTE's sentence1/2 to premise /
    hypothesis, HANS's subcase to subcase_inferred."""
    names = _HUB_LABELS[kind]

    def row(rec: dict[str, Any]) -> dict[str, Any]:
        rec = dict(rec)
        if isinstance(rec.get("label"), int) and rec["label"] >= 0:
            rec["label"] = names[rec["label"]]
        if kind == "hans":
            rec["subcase_inferred"] = rec.get("subcase", "")
        if kind == "rte" and "sentence1" in rec:
            rec["premise"], rec["hypothesis"] = rec["sentence1"], rec["sentence2"]
        return rec

    return row


rte_hub_row = hub_row("rte")
hans_hub_row = hub_row("hans")


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class _Pair:
    row: int  # index in the source file
    text1: str
    text2: str
    label: str  # the source's label name
    meta: dict[str, Any]


def _verbalize(label: str, labels: str) -> str | None:
    """'Yes' / 'No' for a source label; None when the example is dropped (neutral, binary)."""
    if label == "neutral" and labels == "binary":
        return None
    if label in _YES:
        return "Yes"
    if label in _NO:
        return "No"
    raise LabError(f"unknown label {label!r} in the NLI/paraphrase data; fix the data file")


def _pairs(recs: list[dict[str, Any]], keys: tuple[str, str], labels: str) -> list[_Pair]:
    out = []
    for i, r in enumerate(recs):
        label = str(r["label"])
        if _verbalize(label, labels) is None:
            continue
        meta = {"label": label}
        if "heuristic" in r:
            meta.update(heuristic=r["heuristic"], subcase=r.get("subcase_inferred", ""))
        if r.get("genre"):
            meta["genre"] = r["genre"]
        out.append(_Pair(i, str(r[keys[0]]).strip(), str(r[keys[1]]).strip(), label, meta))
    return out


def _example(split: str, source: str, p: _Pair, pattern: str, labels: str) -> Example:
    answer = _verbalize(p.label, labels)
    assert answer is not None
    return Example(
        id=f"{split}-{p.row:05d}",
        question=f"{p.text1} {p.text2}",
        answer=answer,
        rationale="",
        program="",
        meta={"split": split, "source": source, "row": p.row, **p.meta},
        prompt=PATTERNS[pattern].format(text1=p.text1, text2=p.text2),
        choices=CHOICES,
    )


def _perm(n: int, tag: str) -> list[int]:
    order = list(range(n))
    random.Random(tag).shuffle(order)
    return order


def _sample(pairs: list[_Pair], n: int, tag: str) -> list[_Pair]:
    return [pairs[i] for i in sorted(_perm(len(pairs), tag)[:n])]


def sample_hans(pairs: list[Any], n: int, tag: str) -> list[Any]:
    """n examples spread evenly over the subcases: round r takes the r-th example of every
    subcase's seeded permutation, the subcases interleaved so that any prefix of a round
    alternates heuristics and labels (lexical_overlap / subsequence / constituent, then
    entailment / non-entailment). Works on anything with a `meta` holding `subcase`,
    `heuristic` and `label` (the HANS examples of a declarative task: its `sampler` hook)."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by[p.meta.get("subcase", "")].append(i)

    def slot(sub: str) -> tuple[int, int, str]:
        p = pairs[by[sub][0]]
        same = sorted(s for s in by if pairs[by[s][0]].meta.get("heuristic") ==
                      p.meta.get("heuristic") and pairs[by[s][0]].meta["label"] ==
                      p.meta["label"])  # fmt: skip
        return (same.index(sub), p.meta["label"] != "entailment", p.meta.get("heuristic", ""))

    ranked = []
    for j, sub in enumerate(sorted(by, key=slot)):
        idx = by[sub]
        for r, k in enumerate(_perm(len(idx), f"{tag}-{sub}")):
            ranked.append((r, j, idx[k]))
    return [pairs[i] for i in sorted(i for _r, _j, i in sorted(ranked)[:n])]


@dataclass(frozen=True)
class PairTask:
    name: str
    keys: tuple[str, str]  # text fields
    train: str  # source of the ID train pool (dev is carved from it)
    test: str  # source of the ID test split
    ood: tuple[tuple[str, str], ...]  # (split name, source)
    text: dict[str, str]  # split -> description


TASKS: dict[str, PairTask] = {
    "mnli_hans": PairTask(
        "mnli_hans",
        ("premise", "hypothesis"),
        "mnli_train",
        "mnli_matched",
        (("ood_hans", "hans"), ("ood_mnli_mm", "mnli_mismatched")),
        {
            "train": "ID pool: MNLI train (the 8,999-example subset), minus dev",
            "dev": "ID dev (checkpoint selection): a seeded sample of the MNLI train subset",
            "test": "ID test: a seeded sample of MNLI validation_matched (9,815)",
            "ood_hans": "OOD HANS evaluation set (30,000; 2-way), sampled evenly over its 30 "
            "subcases; broken down per heuristic, subcase and label in the report",
            "ood_mnli_mm": "OOD MNLI validation_mismatched (genre shift): seeded sample of the "
            "1,000 gold-labelled TextFooler copy (PTB-tokenised)",
        },
    ),  # fmt: skip
}

_PARAMS = {"labels": ("binary", "merge"), "pattern": tuple(PATTERNS), "lmbff_split": LMBFF_SPLITS}


def _params(cfg: TaskCfg) -> dict[str, Any]:
    p = {"labels": "binary", "pattern": "gpt3", "lmbff_split": None, **dict(cfg.params)}
    for key, value in p.items():
        if key not in _PARAMS:
            raise LabError(
                f"task {cfg.name}: unknown param '{key}'{suggest(key, _PARAMS)}; known params: "
                f"{sorted(_PARAMS)}"
            )
        if value is not None and value not in _PARAMS[key]:
            raise LabError(
                f"task {cfg.name}: params.{key}={value!r} is not one of {list(_PARAMS[key])}"
            )
    if p["lmbff_split"] and cfg.name != "mnli_hans":
        raise LabError(f"task {cfg.name}: params.lmbff_split is for mnli_hans only; remove it")
    if p["labels"] == "merge" and cfg.name != "mnli_hans":
        raise LabError(f"task {cfg.name}: params.labels applies to mnli_hans only; remove it")
    return p


def build_pair_task(cfg: TaskCfg) -> dict[str, list[Example]]:
    """Splits "train", "dev", "test", then the task's OOD splits; deterministic in `cfg`."""
    t = TASKS[cfg.name]
    p = _params(cfg)
    lab, pat, seed = p["labels"], p["pattern"], cfg.seed

    def ex(split: str, source: str, pairs: list[_Pair]) -> list[Example]:
        return [_example(split, source, x, pat, lab) for x in pairs]

    if p["lmbff_split"]:
        keys = ("premise", "hypothesis")
        src = f"mnli_lmbff_{p['lmbff_split']}"
        train = _pairs(_load_lmbff(cfg, p["lmbff_split"], "train"), keys, lab)
        dev = _pairs(_load_lmbff(cfg, p["lmbff_split"], "dev_matched"), keys, lab)
        out = {"train": ex("train", src, train), "dev": ex("dev", src, dev)}
    else:
        pool = _pairs(_load(t.train, cfg), t.keys, lab)
        order = _perm(len(pool), f"{t.name}-{seed}-train")
        dev_i = sorted(order[: cfg.n_dev])
        train_i = sorted(order[cfg.n_dev : cfg.n_dev + cfg.n_train])
        out = {
            "train": ex("train", t.train, [pool[i] for i in train_i]),
            "dev": ex("dev", t.train, [pool[i] for i in dev_i]),
        }
    test = _pairs(_load(t.test, cfg), t.keys, lab)
    out["test"] = ex("test", t.test, _sample(test, cfg.n_test, f"{t.name}-{seed}-test"))
    for split, source in t.ood:
        keys = ("premise", "hypothesis") if source in ("hans", "mnli_mismatched") else t.keys
        pairs = _pairs(_load(source, cfg), keys, lab)
        pick: Callable[[list[_Pair], int, str], list[_Pair]]
        pick = sample_hans if source == "hans" else _sample
        out[split] = ex(split, source, pick(pairs, cfg.n_test, f"{t.name}-{seed}-{split}"))
    return out


def describer(name: str) -> Callable[[], dict[str, str]]:
    def describe() -> dict[str, str]:
        return dict(TASKS[name].text)

    return describe
