"""A task's splits as one sha256 digest: tests pin generated examples with it."""

from __future__ import annotations

import hashlib
import json

from lab.core.example import Example


def split_digest(splits: dict[str, list[Example]]) -> str:
    h = hashlib.sha256()
    for name, exs in splits.items():
        for ex in exs:
            h.update(json.dumps([name, ex.to_dict()], sort_keys=True).encode())
    return h.hexdigest()
