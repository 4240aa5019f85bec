"""Read the records of an offline W&B run file (`run-*.wandb`) in tests.

The file is wandb's LevelDB-style log: a 7-byte header (':W&B', magic 0xBEE1, version 0),
then 32 KiB blocks of chunks (crc32 4 bytes, length 2, type 1: FULL=1 FIRST=2 MIDDLE=3
LAST=4), each record a `wandb.proto.wandb_internal_pb2.Record`. wandb >= 0.2x no longer
ships a Python reader, so this is the ~20-line reader the tests need.
"""

from __future__ import annotations

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


def run_summary(run_dir: Path) -> dict:
    """{'id': run id, 'exit_codes': [...], 'kinds': set of record types} of an offline run.
    The id is taken from the directory name (`offline-run-<time>-<id>`): a process killed
    right after `wandb.init` may leave a run file without its run record. Sorted by name, the
    directories of one id are in start order."""
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
    # offline-run-<date>_<time>-<id>, plus "-1", "-2"... when a run of that id started in
    # the same second (a crashed run and its resumption)
    rid = re.fullmatch(r"offline-run-\d{8}_\d{6}-([^-]+)(-\d+)?", Path(run_dir).name).group(1)
    exits = [r.exit.exit_code for r in recs if r.WhichOneof("record_type") == "exit"]
    return {"id": rid, "exit_codes": exits, "kinds": {r.WhichOneof("record_type") for r in recs}}
