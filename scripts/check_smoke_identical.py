"""Check that tasks moved to the declarative format (lab/tasks/yaml/) give what their Python
builders gave: the same examples (every field, ids first) and the same --smoke results.

    python scripts/check_smoke_identical.py [--base REV] [--cache DIR] [--no-runs] RECIPE...

The base revision (default: the merge base with main) is exported with `git archive` into
a temporary folder and run from there; the working tree is run as it is. For every recipe:

1. splits: its task built at the recipe's --smoke sizes and at larger sizes (n_train 300,
   n_dev 20, n_test 200) by both; every example's fields compared (the scoring fields
   `output_type` and `extractor`, which the base does not have, are left out);
2. runs (unless --no-runs): `python -m lab run RECIPE --smoke` by both; results.jsonl
   compared row by row, and every cell's predictions (ids, predictions, correctness).
   With --float-tol T, floats (log-likelihoods and their means) may differ by a relative T
   (an optimisation that reorders fp32 sums moves them by ~1e-7); the count and the largest
   difference are printed; every other value must be identical.

Each side runs its own copy of the recipe file (a recipe key renamed since the base is
renamed in both copies). With --cache DIR the base's dumps and runs are kept under
DIR/<base commit>/ and reused by the next call. Row keys renamed since the base are mapped
by RENAMED before comparing (the values must still be identical).

Prints one line per check and exits 1 on the first difference of a recipe (all recipes are
checked). Runs take ~1 minute per recipe and code on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DUMP = """
import json, sys
try:
    from lab.core.recipe import load_recipe
except ImportError:  # a base revision from before lab/core/
    from lab.core.recipe import load_recipe
from lab.tasks import build_task
r = load_recipe(sys.argv[1], smoke=True)
def fields(e):
    if not hasattr(e, "__dataclass_fields__"):
        return list(e)
    return {f: v for f, v in vars(e).items() if f not in ("output_type", "extractor")}
out = {}
for tag, upd in (("smoke", {}), ("large", {"n_train": 300, "n_dev": 20, "n_test": 200})):
    s = build_task(r.task.model_copy(update=upd))
    out[tag] = {k: [fields(e) for e in xs] for k, xs in s.items()}
json.dump(out, open(sys.argv[2], "w"), sort_keys=True, default=fields)
"""
# Row keys renamed since the base ("probe" now means only a split from another task):
RENAMED = {"probe_k": "ft_then_icl_k"}
PRED_KEYS = (
    "id",
    "gold",
    "pred",
    "correct",
    "error",
    "generation",
    "gold_logprob",
    "choice_logprobs",
)


def _run(code_dir: Path, args: list[str], env_extra: dict[str, str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(code_dir), "HF_DATASETS_OFFLINE": "1", **env_extra}
    subprocess.run([sys.executable, *args], cwd=code_dir, env=env, check=True)


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{RENAMED.get(k, k): v for k, v in r.items()} for r in rows]


def _preds(out: Path) -> dict[str, list[dict]]:
    got = {}
    for f in sorted(out.glob("cells/*/predictions/**/*.jsonl")):
        key = str(f.relative_to(out))
        got[key] = [{k: p.get(k) for k in PRED_KEYS} for p in _rows(f)]
    return got


FLOAT_TOL = 0.0  # --float-tol: relative tolerance for floats (log-likelihoods, their means)
FLOAT_DIFFS: list[float] = []  # relative differences of floats found unequal but within it


def _first_diff(a: object, b: object, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_diff(a.get(k), b.get(k), f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _first_diff(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    if isinstance(a, float) and isinstance(b, float) and a != b and FLOAT_TOL:
        rel = abs(a - b) / max(1.0, abs(a))
        if rel <= FLOAT_TOL:
            FLOAT_DIFFS.append(rel)
            return None
    return None if a == b else f"{where}: {a!r} (base) vs {b!r} (now)"


def check(recipe: str, base: Path, tmp: Path, runs: bool, cache: Path) -> bool:
    ok = True
    dumps = {}
    for name, code in (("base", base), ("now", ROOT)):
        where = cache if name == "base" else tmp
        dumps[name] = where / f"{Path(recipe).stem}-{name}.json"
        if name == "now" or not dumps[name].exists():
            _run(code, ["-c", DUMP, str(code / recipe), str(dumps[name])], {})
    a, b = (json.loads(dumps[n].read_text()) for n in ("base", "now"))
    diff = _first_diff(a, b, "splits")
    n = sum(len(xs) for sizes in a.values() for xs in sizes.values())
    print(
        f"{recipe}: splits {'IDENTICAL' if not diff else 'DIFFER'} ({n} examples)"
        + (f": {diff}" if diff else "")
    )
    ok &= not diff
    if not runs:
        return ok
    outs = {}
    for name, code in (("base", base), ("now", ROOT)):
        where = cache if name == "base" else tmp
        outs[name] = where / f"{Path(recipe).stem}-run-{name}"
        if name == "base" and (outs[name] / "results.jsonl").exists():
            continue
        _run(
            code,
            [
                "-m",
                "lab",
                "run",
                str(code / recipe),
                "--smoke",
                "--quiet",
                "--out",
                str(outs[name]),
            ],
            {"WANDB_MODE": "disabled"},
        )
    FLOAT_DIFFS.clear()
    ra, rb = (_rows(outs[n] / "results.jsonl") for n in ("base", "now"))
    diff = _first_diff(ra, rb, "results.jsonl")
    pa, pb = _preds(outs["base"]), _preds(outs["now"])
    pdiff = _first_diff(pa, pb, "predictions")
    if FLOAT_DIFFS and not diff and not pdiff:
        print(
            f"{recipe}: {len(FLOAT_DIFFS)} floats differ within --float-tol "
            f"(largest relative difference {max(FLOAT_DIFFS):.2e}); everything else identical"
        )
    print(
        f"{recipe}: smoke results.jsonl {'IDENTICAL' if not diff else 'DIFFER'} "
        f"({len(ra)} rows); predictions {'IDENTICAL' if not pdiff else 'DIFFER'} "
        f"({sum(map(len, pa.values()))} in {len(pa)} files)"
        + "".join(f": {d}" for d in (diff, pdiff) if d)
    )
    return ok and not diff and not pdiff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--base", help="git revision of the Python builders (default: merge base)")
    ap.add_argument("--no-runs", action="store_true", help="compare the splits only")
    ap.add_argument("--cache", help="keep the base's dumps and runs here and reuse them")
    ap.add_argument(
        "--float-tol",
        type=float,
        default=0.0,
        help="relative tolerance for floats (fp32 reassociation: 1e-5); other values exact",
    )
    args = ap.parse_args()
    global FLOAT_TOL
    FLOAT_TOL = args.float_tol
    base = subprocess.run(
        ["git", "rev-parse", args.base] if args.base else ["git", "merge-base", "HEAD", "main"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="smoke-identical-") as t:
        tmp = Path(t)
        code = tmp / "base"
        code.mkdir()
        archive = subprocess.run(
            ["git", "archive", base], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
        cache = Path(args.cache) / base if args.cache else tmp
        cache.mkdir(parents=True, exist_ok=True)
        print(f"base {base[:12]} vs the working tree")
        results = [check(r, code, tmp, not args.no_runs, cache) for r in args.recipes]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
