"""Scoring requests: log-likelihoods of continuations and next-token log-probabilities.

`Scoring` is a mixin of `eval.lm.LM` (its grouping driver `_grouped`, prefix cache, batch
inputs, decoder body and LM head). Log-likelihoods use tree-shaped batches (eval/tree.py):
one row segment per context with all its continuations after it, scored with one LM-head
call per batch over the gathered positions. Baseline mode (FTLAB_BASELINE=1) and models
that take no explicit 4D mask use the plain path: one row per request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from eval import tree
from eval.phases import attended_pairs
from lab.core import masks


class Scoring:
    """Mixin: the scoring half of eval.lm.LM (see there for the attributes it uses)."""

    baseline: bool
    trees: bool
    invariant: bool

    # -- loglikelihood -----------------------------------------------------------------------
    @torch.no_grad()
    def loglikelihood(
        self, requests: Sequence[tuple[str, str, str]], desc: str = "loglikelihood"
    ) -> list[tuple[float, bool, int]]:
        """For (prefix, context, continuation): (sum log p(continuation), greedy?, n tokens)."""
        if not self.trees:
            return self._grouped(
                [r[0] for r in requests],
                [r[1] for r in requests],
                prepare=lambda i, p_ids, ctx: self._ll_item(p_ids, ctx, [requests[i][2]]),
                size=lambda item: item.size,
                run=self._ll_batch,
                desc=desc,
            )
        # One unit per distinct (prefix, context): its continuations are scored together.
        units: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, (prefix, ctx, _cont) in enumerate(requests):
            units[(prefix, ctx)].append(i)
        keys = list(units)

        def run(p_ids: list[int], cache: Any, items: list[tree.Unit]) -> list[list[Any]]:
            scored = iter(self._tree_batch(len(p_ids), cache, items))
            return [[next(scored) for _ in u.conts] for u in items]

        per_unit = self._grouped(
            [k[0] for k in keys],
            [k[1] for k in keys],
            prepare=lambda u, p_ids, ctx: self._ll_item(
                p_ids, ctx, [requests[i][2] for i in units[keys[u]]]
            ),
            size=lambda item: item.size,
            run=run,
            desc=desc,
        )
        out: list[Any] = [None] * len(requests)
        for key, results in zip(keys, per_unit, strict=True):
            for i, r in zip(units[key], results, strict=True):
                out[i] = r
        return out

    def _ll_item(self, p_ids: list[int], ctx: list[int], conts: list[str]) -> tree.Unit:
        """Encode and validate one context with its continuations."""
        enc = [self.encode(c) for c in conts]
        if not all(enc):
            raise ValueError("loglikelihood needs a non-empty continuation")
        if not ctx:
            raise ValueError("loglikelihood needs a non-empty context (or a BOS token)")
        self._check_length(len(p_ids) + len(ctx) + max(map(len, enc)), "a scored request")
        return tree.Unit(ctx, enc)

    def _tree_batch(
        self, p_len: int, cache: Any, units: list[tree.Unit]
    ) -> list[tuple[float, bool, int]]:
        """Every continuation of `units`, scored in one forward and one LM-head call."""
        b = tree.build(units, p_len, self.pad_id, self.device)
        past = self._batch_cache(cache, b.ids.shape[0], 0)
        allowed = b.allowed
        if self.invariant:  # padding queries see nothing (eval/invariant.py: not a sequence)
            allowed = allowed & b.real[:, None, :, None]
        mask = masks.attention_mask(allowed, self.model, self.model.dtype)
        tokens = sum(u.size for u in units)
        with self._work("scored", tokens, len(b.targets), attended_pairs(b.pos, b.real), past):
            hidden = self._hidden(b.ids, mask, b.pos, past)
            logits = self._logits(hidden[b.rows, b.cols])
        return tree.score(logits, b.targets, b.spans)

    @torch.no_grad()
    def next_token_logprobs(
        self,
        requests: Sequence[tuple[str, str]],
        tokens: Sequence[Sequence[int]],
        desc: str = "next-token logprobs",
    ) -> list[list[float]]:
        """For (prefix, context): log p(t | prefix + context) for every token id t in
        `tokens[i]`, from ONE forward pass over the request. The same numbers as
        `loglikelihood` for single-token continuations (e.g. the verbalizers " Yes" / " No"),
        at 1/len(tokens[i]) of its cost."""

        def prepare(i: int, p_ids: list[int], ctx: list[int]) -> tuple[list[int], list[int]]:
            if not ctx:
                raise ValueError("next_token_logprobs needs a non-empty context (or a BOS)")
            self._check_length(len(p_ids) + len(ctx) + 1, "a scored request")
            return ctx, list(tokens[i])

        def run(p_ids: list[int], cache: Any, items: list[tuple[list[int], list[int]]]):
            seqs = [ctx for ctx, _ in items]
            ids, mask, pos = self._batch_inputs(len(p_ids), seqs)
            past = self._batch_cache(cache, len(seqs), 0)
            tokens, pairs = sum(len(t) for t in seqs), attended_pairs(pos, mask[:, -pos.shape[1] :])
            with self._work("scored", tokens, len(seqs), pairs, past):
                hidden = self._hidden(ids, mask, pos, past)[:, -1]  # left-padded: last is real
                logits = self._logits(hidden)
            logp = torch.log_softmax(logits.float(), dim=-1)
            return [[float(logp[row, t]) for t in toks] for row, (_, toks) in enumerate(items)]

        return self._grouped(
            [r[0] for r in requests],
            [r[1] for r in requests],
            prepare=prepare,
            size=lambda item: len(item[0]),
            run=run,
            desc=desc,
        )

    def _ll_batch(
        self, p_ids: list[int], cache: Any, units: list[tree.Unit]
    ) -> list[tuple[float, bool, int]]:
        """The plain path (one row per request): baseline mode and models that take no
        explicit 4D mask. Baseline applies the LM head at every position."""
        p_len = len(p_ids)
        pairs = [(u.ctx, u.conts[0]) for u in units]
        seqs = [ctx + cont for ctx, cont in pairs]
        ids, mask, pos = self._batch_inputs(p_len, seqs)
        past = self._batch_cache(cache, len(seqs), 0)
        width = ids.shape[1]
        rows = [r for r, (_, cont) in enumerate(pairs) for _ in cont]
        cols = [c for _, cont in pairs for c in range(width - len(cont) - 1, width - 1)]
        tokens, head = sum(len(t) for t in seqs), len(rows)
        with self._work("scored", tokens, head, attended_pairs(pos, mask[:, p_len:]), past):
            hidden = self._hidden(ids, mask, pos, past)
            if self.baseline:  # head at every position
                logits = self._logits(hidden)[rows, cols]
            else:  # once per batch, at the scored positions only
                logits = self._logits(hidden[rows, cols])
        targets = torch.tensor([t for _, cont in pairs for t in cont], device=self.device)
        return tree.score(logits, targets, [len(cont) for _, cont in pairs])
