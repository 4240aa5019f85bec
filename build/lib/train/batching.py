"""Packed micro-batches: several examples per row where padding would waste the batch.

A micro-batch right-padded to its longest example wastes `1 - real / (rows x width)` of its
positions. Where that exceeds `PAD_LIMIT` (10%), `collate_micro` packs the examples into
fewer rows (first-fit decreasing, in batch order within a row; rows 1 to 2 times the
longest example wide, whichever leaves the fewest positions) when that saves positions: each
example keeps its own position ids (0, 1, ...) and attends only to itself (a block-diagonal
causal mask, `packed_mask`), and the first token of each example is never a target. The loss
and gradients are then those of the padded batch up to float reassociation (tested); the
`attention_mask` key stays the 2D real-token mask, so token counts are unchanged.

Packing needs a model whose attention takes an explicit 4D mask (lab.core.masks.takes_4d_mask:
full attention, sdpa or eager); for others, and in FTLAB_BASELINE=1 mode, batches are padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lab.core.masks import attention_mask as mask_for_model
from train.data import IGNORE, collate

PAD_LIMIT = 0.10


def padding_fraction(lengths: Sequence[int]) -> float:
    """Share of a right-padded batch's positions that are padding."""
    return 1.0 - sum(lengths) / (len(lengths) * max(lengths))


def pack_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """First-fit decreasing: example indices per row, each row at most `width` tokens; the
    examples of a row keep their batch order."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return [sorted(r) for r in rows]


def packing(lengths: Sequence[int]) -> tuple[int, list[list[int]]]:
    """(row width, rows): of 17 widths from 1 to 2 x the longest example, the packing with
    the fewest positions (rows x width; the narrowest on a tie)."""
    longest = max(lengths)
    options = []
    for width in range(longest, 2 * longest + 1, max(1, longest // 16)):
        rows = pack_rows(lengths, width)
        options.append((len(rows) * width, width, rows))
    _, width, rows = min(options, key=lambda o: (o[0], o[1]))
    return width, rows


def collate_packed(batch: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """The batch packed into rows (`packing`), with `position_ids`."""
    lengths = [len(b["input_ids"]) for b in batch]
    width, rows = packing(lengths)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        col = 0
        for i in row:
            n = lengths[i]
            ids[r, col : col + n] = torch.tensor(batch[i]["input_ids"])
            labels[r, col + 1 : col + n] = torch.tensor(batch[i]["labels"][1:])
            mask[r, col : col + n] = 1
            pos[r, col : col + n] = torch.arange(n)
            col += n
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "position_ids": pos}


def collate_micro(
    batch: Sequence[dict[str, list[int]]], pad_id: int, pack: bool
) -> dict[str, torch.Tensor]:
    """Packed where padding would exceed PAD_LIMIT (and `pack` allows), else padded."""
    lengths = [len(b["input_ids"]) for b in batch]
    if pack and len(batch) > 1 and padding_fraction(lengths) > PAD_LIMIT:
        width, rows = packing(lengths)
        if len(rows) * width < len(batch) * max(lengths):
            return collate_packed(batch, pad_id)
    return collate(batch, pad_id)


def packed_mask(attention_mask: torch.Tensor, position_ids: torch.Tensor, model: Any) -> Any:
    """The 4D block-diagonal causal mask of a packed batch, in the model's mask form.

    An example starts where a real token has position 0; a padding query attends to itself
    only (so that no row of the attention is empty)."""
    real = attention_mask.bool()
    seg = torch.cumsum((position_ids == 0) & real, dim=-1)
    seg = torch.where(real, seg, torch.full_like(seg, -1))
    width = seg.shape[-1]
    idx = torch.arange(width, device=seg.device)
    allowed = (seg[:, :, None] == seg[:, None, :]) & (idx[None, :] <= idx[:, None])[None]
    allowed &= real[:, :, None]
    allowed |= torch.eye(width, dtype=torch.bool, device=seg.device)
    dtype = next(model.parameters()).dtype
    return mask_for_model(allowed[:, None], model, dtype)
