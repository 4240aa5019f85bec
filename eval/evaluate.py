"""Evaluate one prompted model on one split: build the prompts, generate, extract, score.

The same function serves every arm: ICL arms pass k demos (and maybe a trigger), fine-tuned
arms pass no demos. Per-example predictions are returned for logging and error analysis.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from eval.answers import extractor, output_type, score_generation
from eval.choice import evaluate_choices, summarize_choices
from eval.lm import LM, GenRequest
from eval.retrieve import Retriever
from lab.core.chat import Frame, chat_text, end_of_turn, frame
from lab.core.example import Example
from lab.core.formats import DEFAULT, PromptFormat
from lab.core.prompts import demos_prefix, prompt, target

# A zero-shot CoT answer may run over several lines: stop at a blank line or a new question.
MULTILINE_STOP = ("\n\n", "\nQuestion:")


@dataclass(frozen=True)
class PromptSpec:
    """How an arm is prompted: the demo format, the demos, an optional trigger, and the
    study's prompt style (plain text, or the chat template with the demos in one user turn
    or as turns: lab/core/chat.py) and the prompt format (lab/core/formats.py) demos and
    question are written in."""

    fmt: str  # answer | cot | code: what the model is expected to produce
    demos: tuple[Example, ...] = ()
    trigger: str | None = None
    style: str = "plain"  # plain | chat (the recipe's prompt.style)
    turns: str = "single_turn"  # chat: single_turn | multi_turn (the recipe's prompt.demos)
    retriever: Retriever | None = None  # `demos: knn`: each query's own demos (eval/retrieve.py)
    prompt_format: PromptFormat = DEFAULT

    @property
    def stop(self) -> tuple[str, ...]:
        """The format's stops (DEFAULT: lab.core.prompts.STOP, and MULTILINE_STOP for a
        zero-shot CoT)."""
        zero_shot = not self.demos and self.retriever is None
        return self.prompt_format.stop(self.fmt, multiline=self.fmt == "cot" and zero_shot)

    @property
    def prefix(self) -> str:
        """The plain style's shared prefix: the demos (chat: `frame(tokenizer).prefix`;
        '' with retrieved demos: `frame_for`)."""
        return demos_prefix(self.demos, self.fmt, self.prompt_format)

    def prompt(self, ex: Example) -> str:
        """The example's prompt after the prefix: its question in this spec's format."""
        return prompt(ex, self.trigger, self.prompt_format)

    @property
    def chat(self) -> bool:
        return self.style == "chat"

    def frame(self, tokenizer: Any) -> Frame:
        """What surrounds each question's text with this tokenizer: `prefix + prompt + tail`."""
        return frame(tokenizer, self.demos, self.fmt, self.style, self.turns, self.prompt_format)

    def demos_for(self, ex: Example) -> tuple[Example, ...]:
        """The demos in this example's prompt: the retrieved ones, else the shared ones."""
        return self.retriever.demos(ex) if self.retriever is not None else self.demos

    def frame_for(self, ex: Example, tokenizer: Any, shared: Frame | None = None) -> Frame:
        """The frame of this example's prompt: its retrieved demos' own, else `shared`."""
        if self.retriever is None and shared is not None:
            return shared
        pf = self.prompt_format
        return frame(tokenizer, self.demos_for(ex), self.fmt, self.style, self.turns, pf)


def evaluate_split(
    lm: LM,
    examples: Sequence[Example],
    spec: PromptSpec,
    max_new_tokens: int,
    code_timeout_s: float = 5.0,
    desc: str = "eval",
    gold_logprob: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(per-example predictions, metrics) for `examples` prompted as `spec`.

    With `gold_logprob`, each example also gets log p(" <gold answer>" | the same prompt):
    a smooth metric that shows gradual change exact match hides (for CoT and code arms it
    is the probability of answering directly, without the rationale). How an example is
    scored is its output type (eval/answers.py: explicit on declarative tasks' examples,
    inferred from the fields for older builders'). Code examples (`meta['tests']`: MBPP,
    HumanEval) are correct when the generated program passes them in the sandbox; their
    smooth metric is log p(reference program).

    Multiple-choice examples (classification, multiple choice) are scored by the
    log-likelihood of each choice instead of generated (eval/choice.py). Option questions
    scored by generation (extractor option_letter, `meta['options']`, {letter: text}: AQuA's
    ``ood_aqua_gen``) are correct when the option read from the generation (eval/options.py)
    is the gold letter;
    their predictions also say how it was read (`match`) and the number the format's
    extraction gave (`number`); their smooth metric is log p(" <gold option's text>").
    """
    fr = spec.frame(lm.tok if spec.chat else None)  # plain style needs no tokenizer
    if spec.chat:  # the answer is an assistant turn: it ends at the template's end of turn
        lm.eos_ids = lm.eos_ids | {end_of_turn(lm.tok)}
    if any(output_type(ex) == "multiple_choice" for ex in examples):
        return _choices_by_demo_set(lm, examples, spec, fr, desc)
    tok = lm.tok if spec.chat else None
    frames = [spec.frame_for(ex, tok, fr) for ex in examples]
    requests = [
        GenRequest(f.prefix, f.wrap(spec.prompt(ex)), spec.stop, max_new_tokens)
        for f, ex in zip(frames, examples, strict=True)
    ]
    gens = lm.generate(requests, desc=desc)
    lps: list[float | None] = [None] * len(examples)
    if gold_logprob:
        golds = [_gold_text(ex, spec.prompt_format) for ex in examples]  # chat: the content
        golds = [chat_text(g) for g in golds] if spec.chat else golds
        scored = lm.loglikelihood(
            [
                (f.prefix, f.wrap(spec.prompt(ex)), g)
                for f, ex, g in zip(frames, examples, golds, strict=True)
            ],
            desc=f"{desc} logp",
        )
        lps = [lp for lp, _greedy, _n in scored]
    scores = score_all(
        [g.text for g in gens], examples, spec.fmt, spec.trigger is not None, code_timeout_s
    )
    preds: list[dict[str, Any]] = []
    for ex, g, lp, got in zip(examples, gens, lps, scores, strict=True):
        option = {"match": got["match"], "number": got["number"]} if "match" in got else {}
        preds.append(
            {
                "id": ex.id,
                "question": ex.question,
                "gold": ex.answer,
                "generation": g.text,
                "pred": got["pred"],
                "correct": got["passed"],
                "error": got["error"],
                "stopped": g.stopped,
                "prompt_tokens": g.prompt_tokens,
                "new_tokens": g.new_tokens,
                "gold_logprob": lp,
                **option,
                **_retrieved(spec, ex),
                "meta": ex.meta,
            }
        )
    return preds, summarize(preds)


def _retrieved(spec: PromptSpec, ex: Example) -> dict[str, Any]:
    """Retrieved demos: the ids in the example's prompt (logged per query)."""
    return {"demo_ids": [d.id for d in spec.demos_for(ex)]} if spec.retriever else {}


def _choices_by_demo_set(
    lm: LM, examples: Sequence[Example], spec: PromptSpec, shared: Frame, desc: str
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Choice scoring: the examples grouped by their frame (one group, `shared`, unless
    the demos are retrieved per query), each group scored on its own prefix (one cache per
    distinct demo set) in the spec's prompt format, then put back in order. An example's
    scores do not depend on its group (eval/lm.py)."""
    tok = lm.tok if spec.chat else None
    groups: dict[Frame, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(spec.frame_for(ex, tok, shared), []).append(i)
    preds: list[dict[str, Any]] = [{}] * len(examples)
    for fr, idx in groups.items():
        got, _m = evaluate_choices(
            lm,
            [examples[i] for i in idx],
            fr.prefix,
            spec.trigger,
            desc=desc,
            tail=fr.tail,
            chat=spec.chat,
            prompt_format=spec.prompt_format,
        )
        for i, p in zip(idx, got, strict=True):
            preds[i] = p | _retrieved(spec, examples[i])
    return preds, summarize(preds)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def program_slots() -> int:
    """How many sandboxed programs this process runs at a time: its usable cores divided
    among the processes of its node (LOCAL_WORLD_SIZE, set by torchrun and `accelerate
    launch`; 1 when unset), at least one."""
    try:
        local = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    except ValueError:
        local = 1
    return max(1, usable_cores() // max(1, local))


def runs_programs(examples: Sequence[Example], fmt: str) -> bool:
    """Whether scoring runs programs in the sandbox: code-format generations, code tests."""
    return fmt == "code" or any(output_type(ex) == "code" for ex in examples)


def score_all(
    texts: Sequence[str],
    examples: Sequence[Example],
    fmt: str,
    cot_prompted: bool,
    timeout_s: float,
) -> list[dict[str, Any]]:
    """`score_generation` of every (text, example), in order. Programs run in the sandbox
    several at a time, each in its own namespaces and limits, started and read by its own
    thread: `program_slots()` of them, so the processes of one node together run about one
    program per core. A program's verdict does not depend on the others or on the number
    of processes: its timeout is CPU time, counted by the kernel (eval/sandbox.py). The
    model is idle meanwhile."""

    def one(pair: tuple[str, Example]) -> dict[str, Any]:
        text, ex = pair
        return score_generation(text, ex, fmt, cot_prompted=cot_prompted, timeout_s=timeout_s)

    pairs = list(zip(texts, examples, strict=True))
    workers = min(program_slots(), len(pairs)) if runs_programs(examples, fmt) else 1
    if workers <= 1:
        return [one(p) for p in pairs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, pairs))


def _gold_text(ex: Example, prompt_format: PromptFormat = DEFAULT) -> str:
    if output_type(ex) == "code":
        return target(ex, "code", prompt_format)
    if extractor(ex) == "option_letter":
        return prompt_format.continuation(f" {ex.meta['options'][ex.answer]}")
    return prompt_format.continuation(f" {ex.answer}")


def summarize(preds: Sequence[dict[str, Any]]) -> dict[str, float]:
    if preds and "brier" in preds[0]:  # scored by choices (eval/choice.py)
        return summarize_choices(preds)
    n = len(preds)
    out: dict[str, float] = {
        "n": n,
        "exact_match": sum(p["correct"] for p in preds) / n,
        "no_answer": sum(p["pred"] is None for p in preds) / n,
        "truncated": sum(p["stopped"] == "length" for p in preds) / n,
        "prompt_tokens": sum(p["prompt_tokens"] for p in preds),
        "new_tokens": sum(p["new_tokens"] for p in preds),
    }
    lps = [p["gold_logprob"] for p in preds if p.get("gold_logprob") is not None]
    if lps:
        out["gold_logprob"] = sum(lps) / len(lps)
    return out
