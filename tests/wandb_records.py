"""Read the records of an offline W&B run file (`run-*.wandb`) in tests.

The file is wandb's LevelDB-style log: a 7-byte header (':W&B', magic 0xBEE1, version 0),
then 32 KiB blocks of chunks (crc32 4 bytes, length 2, type 1: FULL=1 FIRST=2 MIDDLE=3
LAST=4), each record a `wandb.proto.wandb_internal_pb2.Record`. wandb >= 0.2x no longer
ships a Python reader, so this is the ~20-line reader the tests need.
"""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7


def records(path: Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, buf, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def finished_records(run_dir: Path) -> list[pb.Record]:
    """The records of an offline run directory, once its exit record is written (or 5 s)."""
    (f,) = Path(run_dir).glob("*.wandb")
    for i in range(40):  # wandb-core may still be flushing the file (on a loaded machine)
        try:
            recs = records(f)
            # a killed run never gets its exit record: wait 5 s for it, no longer
            if i >= 10 or any(r.WhichOneof("record_type") == "exit" for r in recs):
                break
        except DecodeError:
            pass
        time.sleep(0.5)
    else:
        recs = records(f)
    return recs


def run_summary(run_dir: Path) -> dict:
    """{'id': run id, 'exit_codes': [...], 'kinds': set of record types} of an offline run.
    The id is taken from the directory name (`offline-run-<time>-<id>`): a process killed
    right after `wandb.init` may leave a run file without its run record. Sorted by name, the
    directories of one id are in start order."""
    recs = finished_records(run_dir)
    # offline-run-<date>_<time>-<id>, plus "-1", "-2"... when a run of that id started in
    # the same second (a crashed run and its resumption)
    rid = re.fullmatch(r"offline-run-\d{8}_\d{6}-([^-]+)(-\d+)?", Path(run_dir).name).group(1)
    exits = [r.exit.exit_code for r in recs if r.WhichOneof("record_type") == "exit"]
    return {"id": rid, "exit_codes": exits, "kinds": {r.WhichOneof("record_type") for r in recs}}


def _items(items) -> dict:  # noqa: ANN001 - protobuf repeated items
    """{key: value}; a nested key (['predictions/x', 'path']) as nested dicts."""
    out: dict = {}
    for i in items:
        keys = list(getattr(i, "nested_key", ())) or [i.key]
        d = out
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = json.loads(i.value_json)
    return out


class OfflineRun:
    """What one offline run recorded, decoded: its run record (group, job type, the config
    given at `wandb.init`), history rows in order, metric definitions, artifacts, the final
    summary, stats samples and exit codes."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        recs = finished_records(run_dir)
        by = lambda kind: [getattr(r, kind) for r in recs if r.WhichOneof("record_type") == kind]  # noqa: E731
        (run,) = by("run")
        self.record = run  # tags, notes...
        self.group, self.job_type, self.name = run.run_group, run.job_type, run.display_name
        self.init_config = _items(run.config.update)
        self.history = [_items(h.item) for h in by("history")]
        self.metrics = list(by("metric"))
        self.artifacts = list(by("artifact"))
        self.summary: dict = {}
        for s in by("summary"):
            for k, v in _items(s.update).items():
                if isinstance(v, dict) and isinstance(self.summary.get(k), dict):
                    self.summary[k].update(v)
                else:
                    self.summary[k] = v
        self.stats = [_items(s.item) for s in by("stats")]
        self.exit_codes = [e.exit_code for e in by("exit")]

    def artifact(self, type_: str) -> list:
        return [a for a in self.artifacts if a.type == type_]

    def table(self, key: str) -> dict:
        """The JSON of a table logged under `key` (its last version)."""
        ref = self.summary[key]
        return json.loads((self.dir / "files" / ref["path"]).read_text())
