"""The W&B artifacts of a study: what each run produced, and the base model it started from.

- `base-model-<fingerprint>` (type `base-model`): the weights every run of the study starts
  from, named by their fingerprint (lab.study.models); a JSON description and, for a local
  model, a reference to its directory (not uploaded). Online, every run declares it as an
  input (lineage); offline W&B cannot record inputs, so the runs' config names the
  fingerprint and the Report script links the inputs after `wandb sync`.
- `<study id>-<cell>-adapter` / `-weights` (type `model`): the fine-tuned cell's selected
  checkpoint; uploaded up to `tracking.max_upload_mb`, above it a reference to the local
  directory.
- `<study id>-<cell>-predictions` (type `predictions`): the cell's per-example predictions.
- `<study id>` (type `study`): results.jsonl, study.json, the resolved recipe and the report.

W&B copies what it logs (tables, artifact files) to a staging folder until it is uploaded,
by default in the user's home, where offline runs would leave it for good; `staged_in`
keeps it in OUT/wandb/data/ with the offline runs that `wandb sync` uploads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


@contextlib.contextmanager
def staged_in(out: Path) -> Iterator[None]:
    """W&B's staging folder in OUT/wandb/data/ meanwhile (unless WANDB_DATA_DIR is set)."""
    if "WANDB_DATA_DIR" in os.environ:
        yield
        return
    os.environ["WANDB_DATA_DIR"] = str(Path(out).resolve() / "wandb" / "data")
    try:
        yield
    finally:
        os.environ.pop("WANDB_DATA_DIR", None)


def artifact_name(*parts: str) -> str:
    """A valid W&B artifact name (letters, digits, '-', '_', '.'; at most 128 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts))[:128]


def dir_mb(path: Path, top_only: bool = False) -> float:
    files = path.glob("*") if top_only else path.rglob("*")
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def base_model(spec: str, path: str, source: str, fingerprint: str) -> Any:
    import wandb

    art = wandb.Artifact(
        artifact_name("base-model", fingerprint),
        type="base-model",
        description=f"base weights {spec} (fingerprint {fingerprint})",
        metadata={"spec": spec, "source": source, "fingerprint": fingerprint, "path": path},
    )
    with art.new_file("model.json") as f:
        json.dump({"spec": spec, "source": source, "fingerprint": fingerprint}, f)
    if Path(path).is_dir():
        art.add_reference(Path(path).resolve().as_uri(), name="weights", checksum=False)
    return art


def weights(
    study_id: str, cell: str, method: str, checkpoint: Path, max_mb: float, metadata: dict[str, Any]
) -> Any:
    """The selected checkpoint of a fine-tuned cell (its top-level files: a `best/`
    subdirectory is another checkpoint)."""
    import wandb

    kind = "adapter" if method == "lora" else "weights"
    size = dir_mb(checkpoint, top_only=True)
    uploaded = size <= max_mb
    art = wandb.Artifact(
        artifact_name(study_id, cell, kind),
        type="model",
        description=f"{kind} of cell {cell} ({size:.1f} MB"
        + ("" if uploaded else f", above tracking.max_upload_mb={max_mb:g}: a reference")
        + ")",
        metadata={**metadata, "size_mb": size, "uploaded": uploaded, "path": str(checkpoint)},
    )
    if uploaded:
        for f in sorted(checkpoint.iterdir()):
            if f.is_file():
                art.add_file(str(f), name=f.name)
    else:
        art.add_reference(checkpoint.resolve().as_uri(), name=kind, checksum=False)
    return art


def predictions(study_id: str, cell: str, pred_dir: Path) -> Any:
    import wandb

    art = wandb.Artifact(
        artifact_name(study_id, cell, "predictions"),
        type="predictions",
        description=f"per-example predictions of cell {cell} (<variant>/<split>.jsonl)",
    )
    art.add_dir(str(pred_dir))
    return art


def study(study_id: str, out: Path, recipe: dict[str, Any]) -> Any:
    import wandb

    art = wandb.Artifact(
        artifact_name(study_id),
        type="study",
        description=f"results, recipe and report of study {study_id}",
    )
    for name in ("results.jsonl", "study.json"):
        if (out / name).is_file():
            art.add_file(str(out / name), name=name)
    with art.new_file("recipe.yaml") as f:
        yaml.safe_dump(recipe, f, sort_keys=False)
    if (out / "report").is_dir():
        art.add_dir(str(out / "report"), name="report")
    return art
