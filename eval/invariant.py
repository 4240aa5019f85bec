"""Batch-invariant evaluation numerics: every request's log-likelihoods and generations are
bit-identical whatever it is batched with, however its group's shared prefix is split off,
and however many processes share the evaluation.

Why stock kernels are not: a matrix library picks its kernel (and with it the order in which
a dot product is summed) by the shape of the whole product, so a row's result changes with
the number of rows beside it; attention sums over the keys in blocks laid out in storage, so
padding, a shared prefix read apart from each row's own keys (eval/attention.py
`split_sdpa`) or the length of the longest row moves the block boundaries; and at bf16 each
layer rounds such differences up to a visible size (0.33 nats between batch 1 and 32).

What is invariant here (each property is tested, tests/eval/test_invariant.py):
- Linear layers at bf16 on a CPU with native bf16: oneDNN's kernel gives every row the same
  result whatever the number of rows (measured for every linear shape of SmolLM2, 1 to 600
  rows, 1 and 2 threads). At fp32 the stock kernel differs for 1 row (and for 1-3 rows at
  some shapes) from more rows: `InvariantLinear` pads inputs to at least `MIN_ROWS` rows.
- Attention (`attend`), in fp32 whatever the model's dtype: each query's keys are put in
  their logical order (the shared prefix, then the real keys of its sequence: padding, the
  prefix split and the other branches of a tree-shaped row drop out) and summed in blocks of
  `BLOCK` logical positions, always aligned at position 0, one block after another in a fixed
  order. Scores and weighted values are products of a fixed shape per block (queries padded
  to a multiple of `MIN_ROWS`, blocks of `BLOCK` keys): a sequence's result does not depend
  on how many others are beside it. The softmax is taken in two passes (the exact maximum
  over all visible keys first); keys a query cannot see weigh exactly 0, so blocks past its
  position change nothing. That is also why the queries are attended in tiles of `TILE`
  rows, each over the blocks up to its last query's position only (a long prompt's causal
  half is skipped, ~2x less work): the blocks left out would add exact zeros.
- Normalisation, activations, rotary embeddings, the LM head's log-softmax: row by row in
  torch's own kernels, which are invariant on this CPU (tested end to end).

What it costs: CPU flash attention (and its split over a shared prefix, eval/attention.py)
gives way to these fp32 blocks; the shared prefix is still computed once per group and read
in place, and tree-shaped scoring batches are kept. The figures are in the README ("Crashes,
resume and reproducibility").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BLOCK = 64  # keys per block of logical positions
MIN_ROWS = 8  # the row dimension of every fp32 product: a multiple of it, at least it
TILE = 256  # folded query rows attended together (a multiple of MIN_ROWS)

_ACTIVE: ContextVar[dict | None] = ContextVar("lab_invariant", default=None)


@contextmanager
def invariant_forward() -> Iterator[None]:
    """Run one forward (its attention, fp32 linear layers) batch-invariantly inside the block;
    the per-forward layout of the keys is worked out once and kept for every layer."""
    token = _ACTIVE.set({})
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> bool:
    return _ACTIVE.get() is not None


class InvariantLinear(nn.Linear):
    """An nn.Linear that, inside `invariant_forward` and at fp32, multiplies at least
    `MIN_ROWS` rows (zero rows appended): the kernel for fewer rows sums in another order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(x.shape[-1], 1)
        if not active() or x.dtype != torch.float32 or rows >= MIN_ROWS or not rows:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, x.shape[-1])
        padded = torch.cat([flat, flat.new_zeros(MIN_ROWS - rows, x.shape[-1])])
        return F.linear(padded, self.weight, self.bias)[:rows].reshape(*x.shape[:-1], -1)


def invariant_linears(model: Any) -> int:
    """Switch `model`'s plain fp32 linear layers to InvariantLinear (once); how many were."""
    n = 0
    for m in model.modules():
        if type(m) is nn.Linear and m.weight.dtype == torch.float32:
            m.__class__ = InvariantLinear
            n += 1
    return n


@dataclass
class _Layout:
    """Where each query's keys are, worked out once per forward (the same for every layer).

    A *sequence* is what one query attends: the shared prefix, then real keys of its row in
    storage order. A plain row holds one; a tree-shaped row (eval/tree.py) one per branch
    (the context, then that branch). Each sequence is found from its last query (a real query
    no other one sees) and takes every query whose keys are the first of its own."""

    p0: int  # prefix keys in whole blocks: read in place, one product for all sequences
    head: int  # the prefix keys after them: copied in front of each sequence's own keys
    own: torch.Tensor  # (seqs, width) flat index (row * T + column) of each own key, in order
    tail_ok: torch.Tensor  # (seqs, 1, head + width, 1) the tail position holds a real key
    queries: torch.Tensor  # (seqs, mq) flat index (row * q + i) of the sequence's queries
    query_ok: torch.Tensor  # (seqs, mq) a query is there
    seen: torch.Tensor  # (seqs, 1, m, 1) keys each folded query sees (0 for padding)
    m: int  # folded queries per sequence and KV head, padded to a multiple of MIN_ROWS
    tiles: list[tuple[int, int, int]]  # (first row, end row, tail blocks any of them sees)


def _visible(mask: torch.Tensor | None, n: int, q: int, s: int, device: Any) -> torch.Tensor:
    """(rows, q, keys) bool: which keys each query may attend. `mask`: bool, or additive (0 =
    visible), (rows, 1, q, >= keys); None: causal aligned at the end (every key for q = 1)."""
    if mask is None:
        return torch.ones(q, s, dtype=torch.bool, device=device).tril(s - q).expand(n, q, s)
    m = mask[:, 0, :, :s]
    m = m if m.dtype == torch.bool else m == 0
    return m.expand(n, q, s)


def _layout(mask: Any, n: int, q: int, g: int, p: int, t: int, device: Any) -> _Layout:
    s = p + t
    vis = _visible(mask, n, q, s, device)
    cols = torch.arange(s, device=device)
    qcol = cols[s - q :]
    own_q = vis[:, :, s - q :]  # (rows, q, q): query i sees query j's key
    real = own_q.diagonal(dim1=1, dim2=2) & ~(vis & (cols > qcol[:, None])).any(-1)
    others = own_q & real[:, :, None] & ~torch.eye(q, dtype=torch.bool, device=device)
    last = real & ~others.any(1)  # the last query of a sequence: no real query sees it
    leaf_r, leaf_i = last.nonzero(as_tuple=True)
    flat_vis = vis.reshape(n * q, s)
    seq_vis = vis[leaf_r, leaf_i]  # (seqs, keys): every key of the sequence
    member = torch.zeros(len(leaf_r), n * q, dtype=torch.bool, device=device)
    rows_q = (leaf_r[:, None] * q + torch.arange(q, device=device)).reshape(-1)
    member[torch.arange(len(leaf_r), device=device).repeat_interleave(q), rows_q] = own_q[
        leaf_r, leaf_i
    ].reshape(-1) & real[leaf_r].reshape(-1)
    owner = member.to(torch.int8).argmax(0)  # each query's first sequence
    real_flat = real.reshape(-1)
    want = seq_vis[owner] & (cols <= qcol.repeat(n)[:, None])
    if not bool((want == flat_vis)[real_flat].all()) or (p and not bool(seq_vis[:, :p].all())):
        raise RuntimeError(
            "batch-invariant attention takes rows of sequences after a shared prefix: each "
            "query sees the prefix and its sequence's keys up to itself"
        )
    claimed = member & (owner[None, :] == torch.arange(len(leaf_r), device=device)[:, None])
    mq = int(claimed.sum(-1).max())
    queries = torch.sort(claimed.to(torch.int8), dim=-1, descending=True, stable=True).indices
    queries = queries[:, :mq]
    query_ok = claimed.gather(1, queries)
    seen = flat_vis.sum(-1)[queries].masked_fill(~query_ok, 0)  # a query's position + 1
    own_vis = seq_vis[:, p:]
    n_own = own_vis.sum(-1)
    p0 = p // BLOCK * BLOCK
    head = p - p0
    width = -(-(head + int(n_own.max())) // BLOCK) * BLOCK - head
    order = torch.sort((~own_vis).to(torch.int8), dim=-1, stable=True).indices
    own = F.pad(order, (0, max(0, width - t)))[:, :width] + leaf_r[:, None] * t
    pos = torch.arange(head + width, device=device)
    tail_ok = (pos[None, :] < head + n_own[:, None])[:, None, :, None]
    m = -(-(g * mq) // MIN_ROWS) * MIN_ROWS
    folded = seen[:, :, None].expand(-1, mq, g).reshape(-1, g * mq)  # a query's g heads in a row
    folded = F.pad(folded, (0, m - g * mq))
    # Queries come in position order, so a tile of rows sees the tail's blocks up to its last
    # query's position; the blocks after it are masked for all of them and are skipped.
    last_seen = folded.amax(0).tolist()
    tiles = []
    for r in range(0, m, TILE):
        blocks = -(-(max(last_seen[r : r + TILE]) - p0) // BLOCK)
        tiles.append((r, min(r + TILE, m), max(1, blocks)))
    return _Layout(p0, head, own, tail_ok, queries, query_ok, folded[:, None, :, None], m, tiles)


def _tail(own: torch.Tensor, prefix: torch.Tensor | None, lay: _Layout) -> torch.Tensor:
    """(seqs, kv heads, head + width, d) fp32: the prefix keys after its whole blocks, then
    each sequence's own keys in order; zeros where a sequence has no key."""
    n, kv, t, d = own.shape
    seqs = lay.own.shape[0]
    flat = own.permute(0, 2, 1, 3).reshape(n * t, kv, d)
    parts = [flat[lay.own].permute(0, 2, 1, 3)]
    if lay.head:
        parts.insert(0, prefix[:, :, lay.p0 :].expand(seqs, kv, lay.head, d))
    return torch.cat(parts, 2).float().masked_fill(~lay.tail_ok, 0.0)


def _with_ones(v: torch.Tensor) -> torch.Tensor:
    """Values with a column of ones: the same product then sums the softmax's weights."""
    return torch.cat([v, torch.ones_like(v[..., :1])], -1).contiguous()


def _tile(
    qf: torch.Tensor,
    tk: torch.Tensor,
    tv: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor] | None,
    lay: _Layout,
    r0: int,
    r1: int,
    nbt: int,
) -> torch.Tensor:
    """Folded query rows r0:r1 of every sequence attending the prefix's whole blocks and the
    first `nbt` blocks of the tail: (seqs, kv heads, rows, d + 1), the weighted values and,
    last, the sum of the weights."""
    n, kv, _, d = qf.shape
    qf, seen, m = qf[:, :, r0:r1], lay.seen[:, :, r0:r1], r1 - r0
    inf = float("-inf")
    # Whole prefix blocks: every row's queries at once, one (rows x m, d) x (d, BLOCK) product
    # per KV head and block (the blocks stacked as a batch of products of that one shape).
    nbp = lay.p0 // BLOCK
    sp = None
    if nbp:
        pk, pv = prefix
        qp = qf.transpose(0, 1).reshape(kv, 1, n * m, d).expand(kv, nbp, n * m, d)
        kb = pk[0, :, : lay.p0].float().reshape(kv * nbp, BLOCK, d)
        sp = torch.bmm(qp.reshape(kv * nbp, n * m, d), kb.transpose(1, 2))
        pos = torch.arange(lay.p0, device=sp.device).view(nbp, 1, BLOCK)
        sp = sp.view(kv, nbp, n * m, BLOCK).masked_fill_(pos >= seen.reshape(1, n * m, 1), inf)
    # The rest: the prefix's last keys and each row's own, per row, blocks stacked likewise.
    tk, tv = tk[:, :, : nbt * BLOCK], tv[:, :, : nbt * BLOCK]
    qt = qf.reshape(n * kv, 1, m, d).expand(n * kv, nbt, m, d)
    st = torch.bmm(
        qt.reshape(n * kv * nbt, m, d), tk.reshape(n * kv * nbt, BLOCK, d).transpose(1, 2)
    ).view(n, kv, nbt, m, BLOCK)
    pos = torch.arange(lay.p0, lay.p0 + nbt * BLOCK, device=st.device).view(nbt, 1, BLOCK)
    st.masked_fill_(pos >= seen[:, :, None], inf)
    # The exact maximum over every visible key (0 where a query sees none).
    top = st.amax(-1).amax(2)  # (rows, kv, m)
    if sp is not None:
        top = torch.maximum(top, sp.amax(-1).amax(1).view(kv, n, m).transpose(0, 1))
    top = top.masked_fill_(top == inf, 0.0)
    # Weighted values (a column of ones sums the weights), added block after block in order.
    acc = torch.zeros((n, kv, m, d + 1), device=qf.device)
    if sp is not None:
        top_p = top.transpose(0, 1).reshape(kv, 1, n * m, 1)
        w = sp.sub_(top_p).exp_().reshape(kv * nbp, n * m, BLOCK)
        vb = _with_ones(pv[0, :, : lay.p0].float()).reshape(kv * nbp, BLOCK, d + 1)
        part = torch.bmm(w, vb).view(kv, nbp, n, m, d + 1)
        for b in range(nbp):
            acc += part[:, b].transpose(0, 1)
    w = st.sub_(top[:, :, None, :, None]).exp_().reshape(n * kv * nbt, m, BLOCK)
    vb = _with_ones(tv).reshape(n * kv * nbt, BLOCK, d + 1)
    part = torch.bmm(w, vb).view(n, kv, nbt, m, d + 1)
    for b in range(nbt):
        acc += part[:, :, b]
    return acc


def attend(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float | None,
    prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Attention of `query` (rows, heads, q, d) to `prefix` (its keys and values (1, kv heads,
    P, d), shared by every row; None: no prefix) followed by each row's `keys`/`values`
    (rows, kv heads, T, d; this forward's tokens last), as (rows, q, heads, d) in the query's
    dtype. `mask`: which of the P + T keys each query sees (see `_visible`)."""
    n, h, q, d = query.shape
    kv, t = keys.shape[1], keys.shape[-2]
    g = h // kv
    p = 0 if prefix is None else prefix[0].shape[-2]
    memo = _ACTIVE.get()
    memo = {} if memo is None else memo
    key = (id(mask), n, q, g, p, t)
    if key not in memo:  # the mask object is kept with it, so its id stays its own
        memo[key] = (mask, _layout(mask, n, q, g, p, t, query.device))
    lay = memo[key][1]
    rows = n
    n, mq = lay.queries.shape  # from here on, n counts sequences
    scale = d**-0.5 if scale is None else scale
    qf = query.permute(0, 2, 1, 3).reshape(rows * q, h, d)[lay.queries]  # (seqs, mq, h, d)
    qf = qf.float().masked_fill(~lay.query_ok[..., None, None], 0.0) * scale
    qf = qf.view(n, mq, kv, g, d).transpose(1, 2).reshape(n, kv, mq * g, d)
    qf = F.pad(qf, (0, 0, 0, lay.m - g * mq))  # (seqs, kv, m, d)
    tk = _tail(keys, None if prefix is None else prefix[0], lay)
    tv = _tail(values, None if prefix is None else prefix[1], lay)
    tiles = [_tile(qf, tk, tv, prefix, lay, *tile) for tile in lay.tiles]
    acc = tiles[0] if len(tiles) == 1 else torch.cat(tiles, 2)
    den = acc[..., d:]
    out = torch.where(den > 0, acc[..., :d] / den.clamp_min(1e-30), 0.0)
    out = out[:, :, : g * mq].reshape(n, kv, mq, g, d).transpose(1, 2).reshape(n, mq, h, d)
    full = torch.zeros((rows * q, h, d), dtype=query.dtype, device=query.device)
    full[lay.queries[lay.query_ok]] = out[lay.query_ok].to(query.dtype)
    return full.view(rows, q, h, d)
