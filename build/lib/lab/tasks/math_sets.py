"""Source hooks of the gsm8k task (lab/tasks/yaml/gsm8k.yaml): the rows of GSM8K train and
test with their three formats, of the five OOD sets with the reason a problem is left out,
and of the fixed Wei et al. demo set. The YAML's templates turn the rows into examples and
its seeded sampling picks them; ids are ``<split>-<row in the source file>``.

- GSM8K (`gsm8k_rows`): question (one line), answer, rationale and program
  (lab/tasks/gsm8k_programs.py), program_error (why no program was verified, else None),
  program_ok, steps (calculator annotations). A record without a string question and
  solution, or without a number after ``####``, is a `LabError` naming its file and line.
- OOD sets (`ood_rows`: SVAMP, ASDiv, MultiArith, AddSub, SingleEq): every record of the
  set, its question and answer read from the set's own field names (local copies or hub),
  and ``dropped``: "" for a problem the split keeps, else why it is left out: no question,
  an answer that is not one number (ASDiv: "Yes", "3:30 p.m.", "4 (dimes); 2 (nickels)"),
  a question that also occurs in GSM8K train or test, or a repeat of an earlier question
  of the set (questions compared in lower case, whitespace collapsed).
- `wei_rows`: data/gsm8k/wei_cot_exemplars.jsonl (task.data_dir's copy if it has one: the
  demos are a prompt, not a dataset).

Rows are derived once per process while the data files are unchanged; `program_stats`
reports the program verification and the OOD problems left out.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lab.core.errors import LabError
from lab.core.numbers import normalize_number
from lab.core.recipe import TaskCfg
from lab.tasks.gsm8k_programs import ANNOTATION, clean_rationale, derive_program, gsm8k_gold
from lab.tasks.math_sources import (
    DEFAULT_DATA_DIR,
    data_dir,
    json_error_location,
    load_records,
    missing,
    stamp,
    where,
)
from lab.tasks.math_text import one_line

OOD_SETS: tuple[str, ...] = ("svamp", "asdiv", "multiarith", "addsub", "singleeq")


def _gsm8k(records: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
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
            {
                "question": one_line(question),
                "answer": gold,
                "rationale": clean_rationale(solution, gold),
                "program": program,
                "program_error": why,
                "program_ok": not why,
                "steps": len(ANNOTATION.findall(solution)),
            }
        )
    return rows


def _first(rec: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if rec.get(k) is not None:
            return rec[k]
    return None


def _join(body: str, question: str) -> str:
    body, question = one_line(body), one_line(question)
    if body and body[-1] not in ".!?,;:":
        body += "."
    return f"{body} {question}".strip()


def ood_fields(name: str, rec: dict[str, Any]) -> tuple[str | None, Any, str, str]:
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


def _ood(
    name: str, records: list[dict[str, Any]], known: set[str], stats: Counter
) -> list[dict[str, Any]]:
    seen: set[str] = set(known)  # GSM8K questions, then this set's own
    rows = []
    for rec in records:
        question, raw, source_id, kind = ood_fields(name, rec)
        row = {"question": question, "answer": None, "source_id": source_id, "type": kind}
        answer = normalize_number(None if raw is None else str(raw))
        if not isinstance(question, str) or not question.strip():
            row["dropped"] = "no question"
        elif answer is None:
            row["dropped"] = "answer not one number"
        else:
            question = one_line(question)
            key = question.lower()
            if key in seen:
                row["dropped"] = "duplicate question" if key not in known else "in GSM8K"
            else:
                seen.add(key)
                row.update(question=question, answer=answer, dropped="")
        if row["dropped"]:
            stats[f"{name}: {row['dropped']}"] += 1
        rows.append(row)
    return rows


@dataclass(frozen=True)
class _Loaded:
    gsm8k: dict[str, list[dict[str, Any]]]  # "train", "test"
    ood: dict[str, list[dict[str, Any]]]
    dropped: dict[str, int]  # OOD problems left out, by reason


_CACHE: dict[tuple, _Loaded] = {}
_LAST: list[_Loaded] = []  # the most recent load, for program_stats()


def _load_all(cfg: TaskCfg) -> _Loaded:
    key = stamp(cfg)
    if key not in _CACHE:
        gsm8k = {
            part: _gsm8k(load_records(f"gsm8k_{part}", cfg), where(f"gsm8k_{part}", cfg))
            for part in ("train", "test")
        }
        known = {r["question"].lower() for r in gsm8k["train"] + gsm8k["test"]}
        dropped: Counter = Counter()
        ood = {n: _ood(n, load_records(n, cfg), known, dropped) for n in OOD_SETS}
        _CACHE.clear()  # keep one: the derived rows are a few MB
        _CACHE[key] = _Loaded(gsm8k, ood, dict(dropped))
    loaded = _CACHE[key]
    _LAST[:] = [loaded]
    return loaded


def clear_cache() -> None:
    """Forget the derived rows (e.g. after a test that faked the hub)."""
    _CACHE.clear()
    _LAST.clear()


def gsm8k_rows(cfg: TaskCfg, part: str) -> list[dict[str, Any]]:
    """Source hook: the rows of GSM8K `part` (train | test), in file order."""
    return _load_all(cfg).gsm8k[part]


def ood_rows(cfg: TaskCfg, name: str) -> list[dict[str, Any]]:
    """Source hook: every record of OOD set `name`, with `dropped` ("" = kept)."""
    return _load_all(cfg).ood[name]


def wei_rows(cfg: TaskCfg) -> list[dict[str, Any]]:
    """Source hook: the 8 GSM8K chain-of-thought exemplars of Wei et al. 2022 (question,
    answer normalised, rationale), from task.data_dir if it has the file, else data/."""
    path = data_dir(cfg) / "gsm8k" / "wei_cot_exemplars.jsonl"
    if not path.is_file():
        path = DEFAULT_DATA_DIR / "gsm8k" / "wei_cot_exemplars.jsonl"
    if not path.is_file():
        raise missing(path)
    bad = json_error_location(path)  # a prompt written as data: read directly
    if bad:
        raise LabError(f"data file '{path}' {bad}; restore it (`git checkout -- data/`)")
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [
        {
            "question": r["question"],
            "answer": normalize_number(str(r["answer"])) or "",
            "rationale": r["rationale"],
        }
        for r in recs
    ]


def program_stats(cfg: TaskCfg | None = None) -> dict[str, Any]:
    """Program verification over the whole GSM8K train and test files: how many problems
    got a verified program, how many failed and why; and the OOD problems left out, by
    reason. For `cfg`'s data; without one, the most recent build in this process (else the
    local copies)."""
    if cfg is not None or not _LAST:
        _load_all(cfg or TaskCfg(name="gsm8k"))
    data = _LAST[0]
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        rows = data.gsm8k[split]
        failures = Counter(r["program_error"] for r in rows if r["program_error"])
        n_failed = sum(failures.values())
        out[split] = {
            "total": len(rows),
            "verified": len(rows) - n_failed,
            "failed": n_failed,
            "failures": dict(failures.most_common()),
        }
    out["ood_dropped"] = dict(data.dropped)
    return out
