"""Where the code sandbox cannot be set up (here: root without CAP_SYS_ADMIN, so no
namespaces and no mounts), code-format evaluation refuses: one line naming what is missing,
exit 2 through the CLI, before anything is written; never a weaker sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _without_sys_admin(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.fail("this check needs root and util-linux's setpriv (as in CI)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    cmd = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable]
    return subprocess.run(
        [*cmd, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_require_sandbox_names_what_is_missing(tmp_path):
    code = (
        "from eval.sandbox import require_sandbox\nfrom lab.errors import LabError\n"
        "try:\n    require_sandbox()\nexcept LabError as e:\n    print('REFUSED', e)\n"
    )
    out = _without_sys_admin(["-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("REFUSED the code sandbox cannot be set up")
    assert "Operation not permitted" in lines[0] and "CAP_SYS_ADMIN" in lines[0]


def test_a_code_study_exits_2_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    recipe = str(ROOT / "recipes" / "mbpp_humaneval.yaml")
    cli = "import sys\nfrom lab.cli import main\nsys.exit(main(sys.argv[1:]))"
    args = ["-c", cli, "run", recipe, "--smoke", "--out", str(out), "--quiet"]
    res = _without_sys_admin([*args, "--cache-dir", str(tmp_path / "models")], tmp_path)
    err = res.stderr.strip()
    assert res.returncode == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: the code sandbox cannot be set up")
    assert not out.exists()
