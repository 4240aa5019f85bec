"""The model interface, as in lm-evaluation-harness: a model answers two questions,
`generate` (greedy, until a stop string) and `loglikelihood` (of a continuation).

Every request is `prefix + text`: the prefix is the k-shot demo block shared by many
requests. Each request is tokenised whole (`bos + encode(prefix + text)`, exactly what a
plain evaluation feeds the model); the token prefix that all requests of a group share is
run once and its KV cache reused for every request (the same numbers as recomputing it,
far fewer FLOPs).

Batches are length-sorted; padding sits between the prefix and the text and is masked,
with explicit position ids, so a request's result does not depend on what it is batched with.

Log-likelihoods add a second cache level (eval/tree.py): the continuations of one context
(e.g. the 4 choices of a question) share a row after it, so the context runs once. Prefixes
used by a single context (a different demo set per example) are not cached alone: those
requests run whole, batched together. The LM head runs once per batch, over the gathered
scored positions only. Every forward is timed per phase (`self.clock`, eval/phases.py) and
runs grouped-query attention without copying the KV cache (eval/attention.py); a batch
attends to its group's prefix in place, once for all its rows, instead of a copy per row
(eval/kv_cache.py `share`), and bf16 linear layers read weights packed once for oneDNN on a
CPU with native bf16 (eval/packed.py; bitwise the same outputs).

`invariant=True` (the recipe's `eval.invariant`, on by default in studies; eval/invariant.py)
makes every result bit-identical whatever the batch size, the grouping and the process count:
attention over each sequence's keys in fixed logical blocks, fp32 products of a fixed shape
(trees and the shared prefix read in place are kept).

`FTLAB_BASELINE=1` (read when an LM is made; for `bench/quickstart.py` only) turns the
optimisations off, to time the lab as a plain evaluation would run: every request runs
whole, one per row (no shared-prefix cache, no trees, no merging of per-example prefixes),
the KV cache grows by concatenation, the LM head runs at every position of a scored
sequence, and a generation batch decodes until its last row stops. The numbers are the
same up to float reassociation (tested).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from eval.attention import folded, shared_prefix
from eval.invariant import invariant_forward, invariant_linears
from eval.kv_cache import expand, preallocate, share
from eval.packed import pack_linears
from eval.phases import PhaseClock, attended_pairs
from eval.scoring import Scoring
from lab.core.compute import baseline_mode
from lab.core.masks import takes_4d_mask
from lab.core.prompts import bos_prefix


def _contiguous_input(module: Any, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def contiguous_head_input(model: Any) -> None:
    """Give the LM head a contiguous input (once per model). The model hands it a slice of
    the hidden states (`logits_to_keep`: the last position of each row), and torch.matmul
    multiplies a non-contiguous (rows, 1, d) input by a weight that needs no gradient (a
    frozen base under a LoRA adapter, a merged adapter) as a batched product against the
    weight expanded once per row: the whole vocabulary matrix copied per row, 1.6 s instead
    of 0.01 s for 32 rows of SmolLM2 on this CPU. Contiguous, it is one matrix product, the
    kernel the base model's own head already uses (same values at bf16; at fp32 within
    float reassociation, e.g. 5e-5 on a logit)."""
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, "_lab_contiguous_input", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._lab_contiguous_input = True


def context_length(model: Any) -> int:
    """The model's context window in tokens (multimodal configs keep it in text_config)."""
    cfg = model.config
    cfg = getattr(cfg, "text_config", cfg)
    return int(getattr(cfg, "max_position_embeddings", 2048))


@dataclass(frozen=True)
class GenRequest:
    prefix: str  # shared demo block ('' for zero-shot)
    text: str  # the example's own prompt
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 32


@dataclass
class Generation:
    text: str  # the completion, cut before the first stop string
    prompt_tokens: int  # prefix + text tokens (the context the model saw)
    new_tokens: int  # generated tokens (including the one that hit a stop)
    stopped: str = "length"  # "stop" | "eos" | "length"
    extra: dict[str, Any] = field(default_factory=dict)


class LM(Scoring):
    """generate / loglikelihood / next_token_logprobs (the last two: eval/scoring.py)."""

    def __init__(
        self, model: Any, tokenizer: Any, batch_size: int = 16, progress: bool = True,
        invariant: bool = False,
    ):  # fmt: skip
        self.model = model
        self.tok = tokenizer
        self.batch_size = batch_size
        self.progress = progress
        self.device = next(model.parameters()).device
        self.bos = bos_prefix(tokenizer)
        self.eos_ids = self._eos_ids()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.max_len = context_length(model)
        # Work actually done (with the shared prefix computed once): for compute accounting.
        self.counts = {"tokens": 0, "head": 0}
        self._kept: tuple[tuple[int, ...], Any] | None = None  # the last prefix cache
        self.clock = PhaseClock(self.device)  # seconds and work per phase (eval/phases.py)
        self.baseline = baseline_mode()
        # Batch-invariant numerics (eval/invariant.py).
        self.invariant = invariant and not self.baseline
        if self.invariant and model.config._attn_implementation != "sdpa":
            raise ValueError(
                "batch-invariant evaluation runs sdpa attention; this model uses "
                f"{model.config._attn_implementation!r}: set `eval.invariant: false`"
            )
        if self.invariant and self.device.type != "cpu":
            warnings.warn(
                f"batch-invariant evaluation is verified on CPU only; on {self.device.type} its "
                "matrix kernels are the vendor's and scores may still move with batching",
                stacklevel=2,
            )
        self.trees = not self.baseline and takes_4d_mask(model)
        # Split attention over a shared prefix (eval/attention.py) runs in the folded sdpa.
        self.split = not self.baseline and model.config._attn_implementation == "sdpa"
        if not self.baseline:
            contiguous_head_input(model)
            pack_linears(model)  # bf16 on a CPU with native bf16: same results, faster
        if self.invariant:
            invariant_linears(model)  # fp32: at least MIN_ROWS rows per product

    def _eos_ids(self) -> set[int]:
        ids = {self.tok.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids |= set(gen_eos) if isinstance(gen_eos, list) else {gen_eos}
        return {i for i in ids if i is not None}

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids if text else []

    def _split_shared(
        self, prefix: str, texts: dict[int, str]
    ) -> tuple[list[int], dict[int, list[int]]]:
        """Tokenise each `prefix + text` whole; return (shared token prefix, the rest of each).

        BPE merges across the prefix/text boundary (e.g. '\n\n' + 'Question'), so the shared
        part is the longest token prefix common to the prefix alone and to every request.
        """
        p_ids = self.bos + self.encode(prefix)
        full = {i: self.bos + self.encode(prefix + t) for i, t in texts.items()}
        if self.baseline:  # every request runs whole
            return [], full
        shared = len(p_ids)
        for ids in full.values():
            n = 0
            limit = min(shared, len(ids) - 1)  # keep >= 1 token of each request as input
            while n < limit and ids[n] == p_ids[n]:
                n += 1
            shared = n
        return p_ids[:shared], {i: ids[shared:] for i, ids in full.items()}

    # -- shared-prefix KV cache -------------------------------------------------------------
    @torch.no_grad()
    def _prefix_cache(self, ids: list[int]) -> Any:
        """The shared tokens' KV cache; the last one is kept (batches never write it), so a
        demo prefix runs once for generation, log p(gold) and every split of a variant."""
        key = tuple(ids)
        if not ids or (self._kept is not None and self._kept[0] == key):
            return self._kept[1] if ids else None
        x = torch.tensor([ids], device=self.device)
        n = len(ids)
        with self._work("prefix", n, 0, n * (n + 1) // 2):
            cache = self._body()(input_ids=x, use_cache=True).past_key_values  # no LM head
        self._kept = None if self.baseline else (key, cache)
        return cache

    def _batch_cache(self, cache: Any, n: int, extra: int) -> Any:
        """The cache a batch of n rows runs on: the shared prefix read in place by every
        row with room for `extra` own tokens (eval/kv_cache.py `share`), else the prefix
        repeated per row (`expand`; baseline mode, non-sdpa attention, special layers)."""
        shared = share(cache, extra) if self.split else None
        return shared if shared is not None else expand(cache, n)

    @contextmanager
    def _work(
        self, phase: str, tokens: int, head: int, attn_pairs: int, past: Any = None
    ) -> Iterator[None]:
        """A forward: count its work (compute accounting), time it (`self.clock`) and run
        its attention without KV copies (eval/attention.py; not in baseline mode), on a
        shared prefix read once for all rows when `past` has one."""
        self.counts["tokens"] += tokens
        self.counts["head"] += head
        fold = nullcontext() if self.baseline else folded(self.model)
        split = shared_prefix(past) if self.split and past is not None else nullcontext()
        inv = invariant_forward() if self.invariant else nullcontext()
        with self.clock.phase(phase, tokens, head, attn_pairs), fold, split, inv:
            yield

    def _batch_inputs(
        self, p_len: int, texts: Sequence[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-pad the texts after the prefix; mask the pads; explicit position ids."""
        width = max(len(t) for t in texts)
        ids = torch.full((len(texts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), p_len + width), dtype=torch.long)
        mask[:, :p_len] = 1
        pos = torch.zeros((len(texts), width), dtype=torch.long)
        for i, t in enumerate(texts):
            if t:
                ids[i, width - len(t) :] = torch.tensor(t)
                mask[i, p_len + width - len(t) :] = 1
                pos[i, width - len(t) :] = torch.arange(p_len, p_len + len(t))
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def _groups(self, prefixes: Sequence[str], texts: Sequence[str]) -> dict[str, list[int]]:
        """Request indices by prefix. A prefix that only one distinct text uses (a demo set
        per example) is not worth a cache of its own: its requests join the '' group, whole
        (`prefix + text`: the same tokens), and are batched with the other such requests."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(prefixes):
            groups[p].append(i)
        if self.baseline:
            return groups
        lone = [p for p, idx in groups.items() if p and len({texts[i] for i in idx}) == 1]
        for p in lone:
            groups[""] += groups.pop(p)
        return groups

    def _check_length(self, n: int, what: str) -> None:
        if n > self.max_len:
            raise ValueError(
                f"{what} needs {n} tokens but the model's context is {self.max_len}; "
                "use fewer demos (k) or shorter examples — nothing is truncated silently"
            )

    # -- the shared driver ------------------------------------------------------------------
    def _grouped(
        self,
        prefixes: Sequence[str],
        texts: Sequence[str],
        prepare: Callable[[int, list[int], list[int]], Any],
        size: Callable[[Any], int],
        run: Callable[[list[int], Any, list[Any]], list[Any]],
        desc: str,
    ) -> list[Any]:
        """What generate and loglikelihood share. Per prefix group: split off the shared
        tokens (`_split_shared`), `prepare(i, shared ids, rest of request i)` each request
        (encode, validate), compute the prefix cache once, then `run` length-sorted batches
        (longest first, by `size`) on it. Results come back in request order."""
        results: list[Any] = [None] * len(prefixes)
        bar = tqdm(total=len(prefixes), desc=desc, disable=not self.progress, leave=False)
        for prefix, idx in self._groups(prefixes, texts).items():
            whole = {i: texts[i] if prefix else prefixes[i] + texts[i] for i in idx}
            p_ids, rest = self._split_shared(prefix, whole)
            items = {i: prepare(i, p_ids, rest[i]) for i in idx}
            cache = self._prefix_cache(p_ids)
            order = sorted(idx, key=lambda i: -size(items[i]))
            for b in range(0, len(order), self.batch_size):
                chunk = order[b : b + self.batch_size]
                for i, r in zip(chunk, run(p_ids, cache, [items[i] for i in chunk]), strict=True):
                    results[i] = r
                bar.update(len(chunk))
        bar.close()
        return results

    # -- generate ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, requests: Sequence[GenRequest], desc: str = "generate") -> list[Generation]:
        def run(p_ids: list[int], cache: Any, items: list[tuple[list[int], GenRequest]]):
            return self._generate_batch(p_ids, cache, [t for t, _ in items], [r for _, r in items])

        return self._grouped(
            [r.prefix for r in requests],
            [r.text for r in requests],
            prepare=lambda i, _p, ids: (ids, requests[i]),
            size=lambda item: len(item[0]),
            run=run,
            desc=desc,
        )

    def _generate_batch(
        self, p_ids: list[int], cache: Any, texts: list[list[int]], reqs: list[GenRequest]
    ) -> list[Generation]:
        n, p_len = len(texts), len(p_ids)
        max_new = max(r.max_new_tokens for r in reqs)
        for t, r in zip(texts, reqs, strict=True):
            self._check_length(p_len + len(t) + r.max_new_tokens, "a prompt plus its generation")
        ids, mask, pos = self._batch_inputs(p_len, texts)
        past = self._batch_cache(cache, n, max_new)
        tokens = sum(len(t) for t in texts)
        with self._work("prefill", tokens, n, attended_pairs(pos, mask[:, p_len:]), past):
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=past,
                use_cache=True,
                logits_to_keep=1,
            )
        past = out.past_key_values
        if not self.baseline:
            preallocate(past, max_new)
        next_tok = out.logits[:, -1].argmax(-1)
        next_pos = pos[:, -1] + 1
        generated: list[list[int]] = [[] for _ in range(n)]
        finished: list[Generation | None] = [None] * n
        active = list(range(n))  # rows of the current batch -> request index
        for step in range(max_new):
            keep = []
            toks = next_tok.tolist()  # one device sync per step, not one per row
            for row, i in enumerate(active):
                if finished[i] is not None:  # baseline: a stopped row decodes on, ignored
                    keep.append(row)
                    continue
                tok = toks[row]
                done = self._finish(i, tok, generated[i], reqs[i], p_len + len(texts[i]), step)
                if done is not None:
                    finished[i] = done
                else:
                    keep.append(row)
            if all(finished[i] is not None for i in active):
                break
            if len(keep) < len(active) and not self.baseline:
                sel = torch.tensor(keep, device=self.device)
                past.batch_select_indices(sel)
                mask, next_tok, next_pos = mask[sel], next_tok[sel], next_pos[sel]
                active = [active[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            n_act = len(active)
            with self._work("decode", n_act, n_act, attended_pairs(next_pos), past):
                out = self.model(
                    input_ids=next_tok[:, None],
                    attention_mask=mask,
                    position_ids=next_pos[:, None],
                    past_key_values=past,
                    use_cache=True,
                )
            past = out.past_key_values
            next_tok = out.logits[:, -1].argmax(-1)
            next_pos = next_pos + 1
        for i in range(n):
            if finished[i] is None:
                text = self.tok.decode(generated[i], skip_special_tokens=True)
                finished[i] = Generation(
                    self._cut(text, reqs[i].stop)[0], p_len + len(texts[i]), len(generated[i])
                )
        return finished  # type: ignore[return-value]

    def _finish(
        self, i: int, tok: int, gen: list[int], req: GenRequest, n_prompt: int, step: int
    ) -> Generation | None:
        """Append `tok`; return the finished Generation if the request is done."""
        if tok in self.eos_ids:
            text = self.tok.decode(gen, skip_special_tokens=True)
            return Generation(self._cut(text, req.stop)[0], n_prompt, len(gen) + 1, "eos")
        gen.append(tok)
        text = self.tok.decode(gen, skip_special_tokens=True)
        cut, hit = self._cut(text, req.stop)
        if hit:
            return Generation(cut, n_prompt, len(gen), "stop")
        if len(gen) >= req.max_new_tokens:
            return Generation(text, n_prompt, len(gen), "length")
        return None

    @staticmethod
    def _cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
        """Cut at the first stop string after the leading whitespace (a completion may
        open with a newline, e.g. a program after 'Answer:')."""
        lead = len(text) - len(text.lstrip())
        cuts = [j for s in stops if s and (j := text.find(s, lead)) >= 0]
        return (text[: min(cuts)], True) if cuts else (text, False)

    def _body(self) -> Any:
        """The decoder without its LM head."""
        return self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.model

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, past: Any):
        return self._body()(
            input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=past,
            use_cache=past is not None,
        ).last_hidden_state  # fmt: skip

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        """LM head only at the scored positions (the vocabulary is 49k-262k wide)."""
        logits = self.model.get_output_embeddings()(h)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits
