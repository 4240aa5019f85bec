"""GSM8K (ID) with five OOD math word-problem sets: SVAMP, ASDiv, MultiArith, AddSub, SingleEq.

Data: the copies in ``data/`` (provenance, licences and checksums in ``data/README.md``),
loaded through ``datasets.load_dataset`` (the ``json`` builder; ASDiv.xml with the ``text``
builder as one document, parsed with ``xml.etree``: the ``xml`` builder of datasets 5.2
fails on local files). ``task.source: hub`` loads the same data from the
Hugging Face hub instead (``HUB`` below); ``task.data_dir`` points at another folder with the
layout of ``data/``.

Splits (sizes from ``TaskCfg``; every sample is a prefix of one seeded permutation, so a
larger size only adds examples, and the same config always gives the same examples):

- ``dev``: ``n_dev`` problems of the GSM8K train file, seeded by ``task.seed``.
- ``train``: the next ``n_train`` problems of that permutation (every GSM8K train problem
  not in ``dev`` when ``n_train`` is at least 7473 - n_dev); disjoint from ``dev``.
- ``test``: a seeded sample of ``n_test`` problems of the GSM8K test file (all 1319 when
  ``n_test`` >= 1319).
- ``ood_svamp``, ``ood_asdiv``, ``ood_multiarith``, ``ood_addsub``, ``ood_singleeq``: a
  seeded sample of at most ``n_test`` problems of each set, after dropping duplicate
  questions within the set, problems whose question also occurs in GSM8K, and (ASDiv)
  problems whose answer is not one number ("Yes", "3:30 p.m.", "4 (dimes); 2 (nickels)").

Each split lists its examples in source-file order; ids are ``<split>-<row in the source>``.

Formats (GSM8K train/dev/test; the OOD sets are eval-only and carry the answer only):

- answer: the number after ``####``, normalised (``1,200`` -> ``1200``).
- rationale: the GSM8K solution with its ``<<48/2=24>>`` calculator annotations removed,
  its lines joined into one line (a period added where a line has no final punctuation),
  ending ``The answer is N.``: one line, as the CoT stop string requires.
- program: one assignment per calculator annotation (``s1 = 48 / 2``), a literal replaced
  by the variable of the most recent earlier step with that value unless the number occurs
  in the question, then ``print(s<last>)``. Verified when the task is built by running it
  with a restricted in-process interpreter of straight-line arithmetic (``run_arithmetic``;
  same output as CPython, tested against the sandbox) and scoring its output exactly as the
  code-format evaluation does. Problems whose program fails (no annotations, or the last
  step is not the gold answer) keep ``program = ""``: ``program_stats()`` counts them, the
  ``train`` description shows the count, and ``lab.core.example.usable(examples, "code")``
  drops them for code-format training and demos.

AQuA (in ``data/AQuA``) is not a split here: its answers are option letters, which the
number extraction alone cannot score; ``load_aqua()`` reads it for lab/tasks/aqua.py, which
adds it as two splits: ``ood_aqua`` (log-likelihood of each option) and ``ood_aqua_gen``
(generation + option extraction).
"""

from __future__ import annotations

import ast
import json
import operator
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.extract import is_correct, last_number, normalize_number
from lab.core.errors import LabError, hub_error
from lab.core.example import Example
from lab.core.recipe import TaskCfg

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"

OOD_SETS: tuple[str, ...] = ("svamp", "asdiv", "multiarith", "addsub", "singleeq")
SPLITS: tuple[str, ...] = ("train", "dev", "test", *(f"ood_{n}" for n in OOD_SETS))

_KOJIMA = "https://raw.githubusercontent.com/kojima-takeshi188/zero_shot_cot/5ef330fcdeec0cd26aee27943504f91f8ec1c33c/dataset"


@dataclass(frozen=True)
class _Source:
    local: str  # path under the data folder
    builder: str  # json, or xml (read with the text builder as one document, then parsed)
    hub: str  # hub dataset id, or the URL of the upstream file (then loaded with `builder`)
    hub_config: str | None = None


# Hub names for `source: hub`. AddSub and SingleEq have no canonical hub dataset: they are
# read from the upstream files (the same commit as the local copies) with the json builder.
SOURCES: dict[str, _Source] = {
    "gsm8k_train": _Source("gsm8k/train.jsonl", "json", "openai/gsm8k", "main"),
    "gsm8k_test": _Source("gsm8k/test.jsonl", "json", "openai/gsm8k", "main"),
    "svamp": _Source("svamp/SVAMP.json", "json", "ChilleD/SVAMP"),
    "asdiv": _Source("ASDiv/ASDiv.xml", "xml", "EleutherAI/asdiv"),
    "multiarith": _Source("MultiArith/MultiArith.json", "json", "ChilleD/MultiArith"),
    "addsub": _Source("AddSub/AddSub.json", "json", f"{_KOJIMA}/AddSub/AddSub.json"),
    "singleeq": _Source("SingleEq/questions.json", "json", f"{_KOJIMA}/SingleEq/questions.json"),
    "aqua": _Source("AQuA/test.json", "json", f"{_KOJIMA}/AQuA/test.json"),
}
HUB = {k: (s.hub, s.hub_config) for k, s in SOURCES.items()}

_OOD_TEXT = {
    "svamp": "SVAMP (simple one/two-step problems with robustness variations)",
    "asdiv": "ASDiv (diverse problem types, grades 1-6; numeric answers only)",
    "multiarith": "MultiArith (multi-step arithmetic)",
    "addsub": "AddSub (addition/subtraction)",
    "singleeq": "SingleEq (single-equation problems)",
}


# --------------------------------------------------------------------------- loading


def _data_dir(cfg: TaskCfg) -> Path:
    return Path(cfg.data_dir).expanduser().resolve() if cfg.data_dir else DEFAULT_DATA_DIR


def _missing(path: Path) -> LabError:
    return LabError(
        f"data file '{path}' not found; restore it (`git checkout -- data/`), point "
        "task.data_dir at a folder with the layout of data/ (see data/README.md), or set "
        "task.source: hub (needs network)"
    )


def _json_error_location(path: Path) -> str | None:
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


def _load_local(path: Path, builder: str) -> list[dict[str, Any]]:
    import datasets

    if not path.is_file():
        raise _missing(path)
    if path.read_text(encoding="utf-8", errors="replace").strip() in ("", "[]"):
        raise LabError(
            f"data file '{path}' is empty (no records, so its split would be empty); restore "
            "it (`git checkout -- data/`) or point task.data_dir at a complete copy"
        )
    try:
        ds = _load_files(datasets, builder, str(path))["train"]
    except Exception as e:
        where = _json_error_location(path) if builder == "json" else None
        why = where or f"{type(e).__name__}: {e}".splitlines()[0]
        raise LabError(
            f"data file '{path}' {why}; fix the file or restore it (`git checkout -- data/`)"
        ) from None
    if builder == "xml":
        return _parse_asdiv_xml(ds[0]["text"], str(path))
    return list(ds)


def _load_files(datasets: Any, builder: str, data_files: str) -> Any:
    if builder == "xml":
        return datasets.load_dataset("text", data_files=data_files, sample_by="document")
    return datasets.load_dataset(builder, data_files=data_files)


def _load_hub(name: str, src: _Source) -> list[dict[str, Any]]:
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
        return _parse_asdiv_xml(ds["train"][0]["text"], src.hub)
    # SVAMP / MultiArith ship train+test (and ASDiv one split): the whole set is OOD.
    return [row for split in sorted(ds) for row in ds[split]]


def _parse_asdiv_xml(text: str, where: str) -> list[dict[str, Any]]:
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


def _load(name: str, cfg: TaskCfg) -> list[dict[str, Any]]:
    src = SOURCES[name]
    if cfg.source == "hub":
        return _load_hub(name, src)
    return _load_local(_data_dir(cfg) / src.local, src.builder)


# --------------------------------------------------------------------------- GSM8K formats

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_QUESTION_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def gsm8k_gold(solution: str) -> str | None:
    """The normalised final answer after '####'."""
    _, sep, tail = solution.rpartition("####")
    return normalize_number(tail) if sep else None


def clean_rationale(solution: str, answer: str) -> str:
    """The GSM8K solution as a one-line CoT: annotations removed, lines joined, ending
    'The answer is N.'."""
    body = _ANNOTATION.sub("", solution.rpartition("####")[0] or solution)
    sentences = []
    for line in body.splitlines():
        line = _one_line(line)
        if not line:
            continue
        if line[-1] not in ".!?:;,":
            line += "."
        sentences.append(line)
    return " ".join([*sentences, f"The answer is {answer}."])


# A restricted evaluator for straight-line arithmetic: what the derived programs contain.
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _eval_expr(node: ast.AST, env: dict[str, Any]) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _eval_expr(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _eval_expr(node.left, env), _eval_expr(node.right, env)
        if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 1e12):
            raise ValueError("power too large")
        return _BINOPS[type(node.op)](a, b)
    raise ValueError(f"not allowed in an arithmetic program: {ast.unparse(node)!r}")


def run_arithmetic(program: str) -> str:
    """Run a straight-line arithmetic program (`name = <arithmetic>` lines, `print(<expr>)`
    lines) in-process and return what it prints: the same output as CPython for such
    programs. Anything else raises ValueError; arithmetic errors raise as in Python."""
    env: dict[str, Any] = {}
    out: list[str] = []
    for stmt in ast.parse(program).body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            env[stmt.targets[0].id] = _eval_expr(stmt.value, env)
        elif (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "print"
            and not stmt.value.keywords
        ):
            out.append(" ".join(str(_eval_expr(a, env)) for a in stmt.value.args))
        else:
            raise ValueError(f"line {stmt.lineno}: not an assignment or print")
    return "".join(line + "\n" for line in out)


def verify_program(program: str, gold: str) -> bool:
    """Does the program print the gold answer, scored as the code-format evaluation scores
    a generation (last number of the last printed line, exact match after normalising)?"""
    try:
        lines = run_arithmetic(program).strip().splitlines()
    except (ValueError, ArithmeticError, SyntaxError):
        return False
    return bool(lines) and is_correct(last_number(lines[-1]), gold)


class _Substitute(ast.NodeTransformer):
    """Replace a literal by the variable of the most recent earlier step with its value."""

    def __init__(self, steps: list[tuple[str, float | None, float]], avoid: set[float], mode):
        self.steps, self.avoid, self.mode = steps, avoid, mode

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        v = node.value
        if type(v) not in (int, float) or v in self.avoid:
            return node
        for var, annotated, computed in reversed(self.steps):
            if computed == v or (self.mode == "annotated" and annotated == v):
                return ast.Name(id=var, ctx=ast.Load())
        return node


def _to_float(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").strip())
    except ValueError:
        return None


def _build_program(annotations: list[str], avoid: set[float], mode: str) -> str:
    steps: list[tuple[str, float | None, float]] = []
    env: dict[str, Any] = {}
    lines = []
    for k, ann in enumerate(annotations, 1):
        expr, sep, result = ann.rpartition("=")
        if not sep:
            raise ValueError(f"annotation without '=': <<{ann}>>")
        tree = ast.parse(expr.strip(), mode="eval")
        if mode != "literal":
            tree = _Substitute(steps, avoid, mode).visit(tree)
        value = _eval_expr(tree.body, env)
        var = f"s{k}"
        env[var] = value
        steps.append((var, _to_float(result), value))
        lines.append(f"{var} = {ast.unparse(tree)}")
    lines.append(f"print(s{len(annotations)})")
    return "\n".join(lines)


def derive_program(question: str, solution: str, gold: str) -> tuple[str, str | None]:
    """(program, None) when a program derived from the calculator annotations prints the
    gold answer, else ("", why). Substitution tries, in order: literals equal to an earlier
    step's annotated or computed result; computed results only (annotated results are
    sometimes rounded); no substitution. The first variant that verifies wins."""
    annotations = _ANNOTATION.findall(solution)
    if not annotations:
        return "", "no calculator annotations"
    avoid = {float(m) for m in _QUESTION_NUMBER.findall(question.replace(",", ""))}
    why = "last step is not the gold answer"
    for mode in ("annotated", "computed", "literal"):
        try:
            program = _build_program(annotations, avoid, mode)
        except (SyntaxError, ValueError, ArithmeticError) as e:
            why = f"annotation not evaluable ({type(e).__name__})"
            continue
        if verify_program(program, gold):
            return program, None
    return "", why


@dataclass(frozen=True)
class _Gsm8kRow:
    index: int
    question: str
    answer: str
    rationale: str
    program: str
    program_error: str | None
    steps: int


def _gsm8k_rows(records: list[dict[str, Any]], where: str) -> list[_Gsm8kRow]:
    rows = []
    for i, rec in enumerate(records):
        question, solution = rec.get("question"), rec.get("answer")
        if not isinstance(question, str) or not isinstance(solution, str):
            raise LabError(
                f"{where} line {i + 1}: needs string fields 'question' and 'answer'; fix the "
                "file or restore it (`git checkout -- data/`)"
            )
        gold = gsm8k_gold(solution)
        if gold is None:
            raise LabError(
                f"{where} line {i + 1}: no numeric final answer after '####'; fix the file or "
                "restore it (`git checkout -- data/`)"
            )
        program, why = derive_program(question, solution, gold)
        rows.append(
            _Gsm8kRow(
                index=i,
                question=_one_line(question),
                answer=gold,
                rationale=clean_rationale(solution, gold),
                program=program,
                program_error=why,
                steps=len(_ANNOTATION.findall(solution)),
            )
        )
    return rows


# --------------------------------------------------------------------------- OOD sets


@dataclass(frozen=True)
class _Problem:
    index: int
    question: str
    answer: str
    source_id: str
    kind: str  # problem type where the set records one


def _first(rec: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if rec.get(k) is not None:
            return rec[k]
    return None


def _join(body: str, question: str) -> str:
    body, question = _one_line(body), _one_line(question)
    if body and body[-1] not in ".!?,;:":
        body += "."
    return f"{body} {question}".strip()


def _ood_question_answer(name: str, rec: dict[str, Any]) -> tuple[str | None, Any, str, str]:
    """(question, raw answer, source id, type) of one record of an OOD set, local or hub."""
    if name == "svamp":
        q = _join(_first(rec, "Body", "body") or "", _first(rec, "Question", "question") or "")
        q = q or _first(rec, "question_concat")
        return (
            q,
            _first(rec, "Answer", "answer"),
            str(_first(rec, "ID", "id") or ""),
            str(_first(rec, "Type", "type") or ""),
        )
    if name == "asdiv":
        q = _join(rec.get("body") or "", rec.get("question") or "")
        ans = str(rec.get("answer") or "").split(" (")[0]  # "9 (apples)" -> "9"
        return q, ans, str(rec.get("id") or ""), str(rec.get("solution_type") or "")
    # MultiArith / AddSub / SingleEq (Kojima et al. copies), or ChilleD/MultiArith.
    q = _first(rec, "sQuestion", "question")
    sol = _first(rec, "lSolutions", "final_ans")
    if isinstance(sol, list):
        sol = sol[0] if len(sol) == 1 else None
    return q, sol, str(_first(rec, "iIndex") if "iIndex" in rec else ""), ""


def _ood_problems(
    name: str, records: list[dict[str, Any]], known: set[str], stats: Counter
) -> list[_Problem]:
    seen: set[str] = set(known)  # GSM8K questions, then this set's own
    out = []
    for i, rec in enumerate(records):
        question, raw, source_id, kind = _ood_question_answer(name, rec)
        if not isinstance(question, str) or not question.strip():
            stats[f"{name}: no question"] += 1
            continue
        answer = normalize_number(None if raw is None else str(raw))
        if answer is None:
            stats[f"{name}: answer not one number"] += 1
            continue
        question = _one_line(question)
        key = question.lower()
        if key in seen:
            stats[f"{name}: duplicate question" if key not in known else f"{name}: in GSM8K"] += 1
            continue
        seen.add(key)
        out.append(_Problem(i, question, answer, source_id, kind))
    return out


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Loaded:
    train: list[_Gsm8kRow]
    test: list[_Gsm8kRow]
    ood: dict[str, list[_Problem]]
    dropped: dict[str, int]  # OOD problems left out, by reason


_CACHE: dict[tuple, _Loaded] = {}
_LAST: list[_Loaded] = []  # the most recent load, for describe()


def _cache_key(cfg: TaskCfg) -> tuple:
    if cfg.source == "hub":
        return ("hub",)
    root = _data_dir(cfg)
    stats = []
    for src in SOURCES.values():
        p = root / src.local
        st = p.stat() if p.is_file() else None
        stats.append((src.local, st.st_mtime_ns if st else None, st.st_size if st else None))
    return ("local", str(root), tuple(stats))


def _load_all(cfg: TaskCfg) -> _Loaded:
    key = _cache_key(cfg)
    if key not in _CACHE:
        where = "hub openai/gsm8k" if cfg.source == "hub" else str(_data_dir(cfg) / "gsm8k") + "/"
        train = _gsm8k_rows(_load("gsm8k_train", cfg), f"{where}train.jsonl")
        test = _gsm8k_rows(_load("gsm8k_test", cfg), f"{where}test.jsonl")
        known = {r.question.lower() for r in train + test}
        dropped: Counter = Counter()
        ood = {n: _ood_problems(n, _load(n, cfg), known, dropped) for n in OOD_SETS}
        _CACHE.clear()  # keep one: the loaded data are a few MB
        _CACHE[key] = _Loaded(train, test, ood, dict(dropped))
    loaded = _CACHE[key]
    _LAST[:] = [loaded]
    return loaded


def _permutation(n: int, tag: str) -> list[int]:
    order = list(range(n))
    random.Random(tag).shuffle(order)
    return order


def _gsm8k_example(split: str, row: _Gsm8kRow) -> Example:
    meta: dict[str, Any] = {
        "split": split,
        "source": "gsm8k",
        "row": row.index,
        "steps": row.steps,
        "program_ok": not row.program_error,
    }
    if row.program_error:
        meta["program_error"] = row.program_error
    return Example(
        id=f"{split}-{row.index:05d}",
        question=row.question,
        answer=row.answer,
        rationale=row.rationale,
        program=row.program,
        meta=meta,
    )


def _ood_example(split: str, name: str, p: _Problem) -> Example:
    meta: dict[str, Any] = {"split": split, "source": name, "row": p.index}
    if p.source_id:
        meta["source_id"] = p.source_id
    if p.kind:
        meta["type"] = p.kind
    return Example(
        id=f"{split}-{p.index:05d}", question=p.question, answer=p.answer, rationale="",
        program="", meta=meta,
    )  # fmt: skip


def build_gsm8k(cfg: TaskCfg) -> dict[str, list[Example]]:
    """Splits "train", "dev", "test", "ood_svamp", "ood_asdiv", "ood_multiarith",
    "ood_addsub", "ood_singleeq", "demos_wei" (the fixed Wei et al. demo set), in this
    order; deterministic in `cfg`. (Probe splits: `lab.tasks.build_task`.)"""
    params = dict(getattr(cfg, "params", None) or {})
    if params:
        raise LabError(
            f"task gsm8k: params {sorted(params)} not understood; the one parameter is "
            "`probes`, which every task takes (e.g. probes: {bbh: {n_per_task: 5}}; see "
            "lab/tasks/probes.py)"
        )
    data = _load_all(cfg)
    seed = cfg.seed
    order = _permutation(len(data.train), f"gsm8k-{seed}-train")
    dev = sorted(order[: cfg.n_dev])
    train = sorted(order[cfg.n_dev : cfg.n_dev + cfg.n_train])
    test = sorted(_permutation(len(data.test), f"gsm8k-{seed}-test")[: cfg.n_test])
    out = {
        "train": [_gsm8k_example("train", data.train[i]) for i in train],
        "dev": [_gsm8k_example("dev", data.train[i]) for i in dev],
        "test": [_gsm8k_example("test", data.test[i]) for i in test],
    }
    for name in OOD_SETS:
        problems = data.ood[name]
        pick = sorted(_permutation(len(problems), f"gsm8k-{seed}-ood_{name}")[: cfg.n_test])
        out[f"ood_{name}"] = [_ood_example(f"ood_{name}", name, problems[i]) for i in pick]
    # A fixed demo set (arm key `demos: wei`): never evaluated, never in the budgeted pool.
    # (the lab's own copy unless task.data_dir has one: they are a prompt, not a dataset)
    wei = _data_dir(cfg) / "gsm8k" / "wei_cot_exemplars.jsonl"
    out["demos_wei"] = wei_cot_exemplars(wei.parents[1] if wei.is_file() else None)
    return out


def program_stats(cfg: TaskCfg | None = None) -> dict[str, Any]:
    """Program verification over the whole GSM8K train and test files: how many problems
    got a verified program, how many failed and why; and the OOD problems left out, by
    reason. For `cfg`'s data; without one, the most recent build in this process (else the
    local copies)."""
    if cfg is not None or not _LAST:
        _load_all(cfg or TaskCfg(name="gsm8k"))
    data = _LAST[0]
    out: dict[str, Any] = {}
    for split, rows in (("train", data.train), ("test", data.test)):
        failures = Counter(r.program_error for r in rows if r.program_error)
        n_failed = sum(failures.values())
        out[split] = {
            "total": len(rows),
            "verified": len(rows) - n_failed,
            "failed": n_failed,
            "failures": dict(failures.most_common()),
        }
    out["ood_dropped"] = dict(data.dropped)
    return out


def describe() -> dict[str, str]:
    """One-line description of each split, in split order, with the program-verification
    count (of the most recent build in this process, or of the local data)."""
    train = "ID pool: GSM8K train (openai/grade-school-math) minus dev, seeded sample"
    try:
        s = program_stats()["train"]
        train += (
            f"; programs verified for {s['verified']}/{s['total']} GSM8K train problems "
            f"({s['failed']} failed: program left empty, skipped for code-format training)"
        )
    except LabError:
        pass
    out = {
        "train": train,
        "dev": "ID dev (not used by the arms): a seeded sample of GSM8K train, disjoint from train",
        "test": "ID test: a seeded sample of the GSM8K test set (1319 problems)",
    }
    for name in OOD_SETS:
        out[f"ood_{name}"] = f"OOD {_OOD_TEXT[name]}: seeded sample, answer-only, eval only"
    out["demos_wei"] = (
        "fixed demo set (arm key `demos: wei`): the 8 GSM8K CoT exemplars of Wei et al. 2022, "
        "in the lab's template; not drawn from the budgeted train pool, never evaluated"
    )
    return out


# --------------------------------------------------------------------------- extras


def wei_cot_exemplars(data_dir: str | Path | None = None) -> list[Example]:
    """The 8 GSM8K chain-of-thought exemplars of Wei et al. 2022 (data/gsm8k/
    wei_cot_exemplars.jsonl), as Examples (program empty: they have no annotations)."""
    root = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    path = root / "gsm8k" / "wei_cot_exemplars.jsonl"
    if not path.is_file():
        raise _missing(path)
    where = _json_error_location(path)  # a prompt written as data: read directly
    if where:
        raise LabError(f"data file '{path}' {where}; restore it (`git checkout -- data/`)")
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [
        Example(
            id=f"demos_wei-{i}",
            question=r["question"],
            answer=normalize_number(str(r["answer"])) or "",
            rationale=r["rationale"],
            program="",
            meta={"split": "demos_wei", "source": "wei2022", "row": i},
        )
        for i, r in enumerate(recs)
    ]


def load_aqua(cfg: TaskCfg | None = None) -> list[dict[str, Any]]:
    """AQuA-RAT test (254): {question, options: {letter: text}, answer: letter, rationale},
    for the AQuA splits of lab/tasks/aqua.py (see the module docstring)."""
    out = []
    for i, rec in enumerate(_load("aqua", cfg or TaskCfg(name="gsm8k"))):
        options = {}
        for opt in rec.get("options") or []:
            letter, _, text = str(opt).partition(")")
            options[letter.strip()] = text.strip()
        out.append(
            {
                "id": f"aqua-{i:05d}",
                "question": _one_line(rec["question"]),
                "options": options,
                "answer": str(rec["correct"]).strip(),
                "rationale": rec.get("rationale") or "",
            }
        )
    return out
