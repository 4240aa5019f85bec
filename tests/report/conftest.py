"""The offline-W&B smoke study shared by the W&B review tests (run once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from wandb_records import OfflineRun
from wandb_study import RECIPE, offline

from lab.study.cli import main


@pytest.fixture(scope="session")
def study(tmp_path_factory, tiny_cache) -> Path:
    tmp = tmp_path_factory.mktemp("wbreview")
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    out = tmp / "out"
    mp = pytest.MonkeyPatch()
    offline(mp)
    try:
        argv = [
            "run",
            str(path),
            "--profile",
            "tiny",
            "--smoke",
            "--out",
            str(out),
            "--cache-dir",
            str(tiny_cache),
            "--quiet",
        ]
        assert main(argv) == 0
    finally:
        mp.undo()
    return out


@pytest.fixture(scope="session")
def runs(study) -> dict[str, OfflineRun]:
    got = [OfflineRun(d) for d in sorted((study / "wandb").glob("offline-run-*"))]
    return {r.name: r for r in got}
