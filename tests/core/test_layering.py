"""The packages' imports point one way: core <- tasks <- (train, eval) <- report <- study.

Read from the source (every import statement, at any depth, TYPE_CHECKING ones included),
not from what happens to be imported at run time."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# package -> the packages of the project it may import (besides itself)
ALLOWED = {
    "lab.core": set(),
    "lab.tasks": {"lab.core"},
    "train": {"lab.core", "lab.tasks"},
    "eval": {"lab.core", "lab.tasks"},
    "lab.report": {"lab.core", "lab.tasks", "eval"},
    "lab.study": {"lab.core", "lab.tasks", "eval", "train", "lab.report"},
    "lab": {"lab.study"},  # lab/__init__.py, lab/__main__.py
}
PACKAGES = sorted(ALLOWED, key=len, reverse=True)


def package_of(module: str) -> str | None:
    for p in PACKAGES:
        if module == p or module.startswith(p + "."):
            return p
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement in the file; `from a import b`
    counts as a.b when a.b is a module of the project, else as a."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                as_module = sub.replace(".", "/")
                is_mod = (root / f"{as_module}.py").is_file() or (root / as_module).is_dir()
                out.append((node.lineno, sub if is_mod else node.module))
    return out


def sources(root: Path = ROOT) -> list[Path]:
    return sorted(p for d in ("lab", "train", "eval") for p in (root / d).rglob("*.py"))


def violations(root: Path = ROOT) -> list[str]:
    bad = []
    for path in sources(root):
        mine = package_of(module_name(path, root))
        assert mine is not None, f"{path} is in no package of the layering"
        for line, mod in imports(path, root):
            theirs = package_of(mod)
            if theirs is None or theirs == mine:
                continue
            if theirs not in ALLOWED[mine]:
                bad.append(f"{path.relative_to(root)}:{line} ({mine}) imports {mod} ({theirs})")
    return bad


def test_layers_point_one_way():
    assert violations() == []


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """The import cycles between modules of one package (every import statement, at any
    depth, TYPE_CHECKING ones included): each as its modules, sorted."""
    graph: dict[str, set[str]] = {}
    for path in sources(root):
        mine = module_name(path, root)
        graph[mine] = {
            mod
            for _, mod in imports(path, root)
            if mod != mine and package_of(mod) == package_of(mine)
        }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            comp.append(v)
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycle_inside_a_package():
    assert import_cycles() == []


def test_the_check_sees_a_cycle(tmp_path):
    """The checker itself: two study modules importing each other, one of them only inside
    a function or under TYPE_CHECKING, are a cycle."""
    study = tmp_path / "lab" / "study"
    study.mkdir(parents=True)
    (study / "a.py").write_text("from lab.study.b import f\n")
    (study / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lab.study import a\n"
    )
    (study / "c.py").write_text("def g():\n    from lab.study.a import f\n")
    assert import_cycles(tmp_path) == [["lab.study.a", "lab.study.b"]]


def test_no_private_name_imported_from_another_module():
    bad = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if package_of(node.module) is None:
                    continue
                bad += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
    assert bad == []


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself: a core module importing the study layer, even inside a function,
    is reported."""
    (tmp_path / "lab" / "core").mkdir(parents=True)
    (tmp_path / "lab" / "study").mkdir(parents=True)
    (tmp_path / "lab" / "core" / "bad.py").write_text(
        "def f():\n    from lab.study.run import run_study\n"
    )
    (tmp_path / "lab" / "study" / "run.py").write_text("")
    assert violations(tmp_path) == [
        "lab/core/bad.py:2 (lab.core) imports lab.study.run (lab.study)"
    ]


def test_files_stay_small():
    """Each file one idea: none of the packages' files is over 400 lines."""
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in sources()
        if (n := len(p.read_text().splitlines())) > 400
    ]
    assert big == []


def test_bench_and_scripts_import_names_that_exist():
    """bench/ and scripts/ are not run by the tests: every `from <project module> import
    name` in them (function-level ones too) must still name something that exists after a
    package move."""
    import importlib

    missing = []
    for path in sorted([*(ROOT / "bench").glob("*.py"), *(ROOT / "scripts").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            if node.module.split(".")[0] not in ("lab", "train", "eval", "bench"):
                continue
            module = importlib.import_module(node.module)
            for a in node.names:
                if hasattr(module, a.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{a.name}")
                except ModuleNotFoundError:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}")
    assert missing == []


def test_planning_a_study_imports_no_report_or_plotting():
    """lab.study.plan once imported lab.report.ladder for one name (`model_tag`, now in
    lab.core.layout), which pulled matplotlib into every planning step."""
    import subprocess
    import sys

    code = (
        "import sys, lab.study.plan; "
        "bad = sorted(m for m in sys.modules if m.startswith(('lab.report', 'matplotlib'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
