"""What fits the model's context: the one home of every context-fit decision, made with the
model's own tokenizer and context length (read from its files, before any model is loaded).

- every eval prompt (in every prompt format of `eval.formats`) with its generation budget fits, with SLACK tokens to spare (checked
  before anything is written);
- a k-shot arm's demos are cut to the largest k that fits (the cut is recorded in the cell's
  plan and rows: `k` vs `k_requested`); at least one demo must fit;
- the FT-then-ICL variant's demos fit in full;
- an in-context FT arm's (`train_k`) longest possible training input and its evaluation
  demos fit in full (`check_in_context`: nothing is cut);
- a `demos: knn` arm's k is cut so that its k longest index examples fit (`fit_retrieved`);
- every probe split's prompt (its fixed prefix or demos, the question, the generation
  budget) fits;
- `prompt.style: chat` needs a chat template (refused with one line before anything is
  written); the template's tokens are counted: the tail after each question in every
  prompt, the system and user-turn opening in the demos' prefix (lab/core/chat.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from eval.lm import context_length
from eval.probes import probe_prompt, task_probe_max_new_tokens, task_probe_spec
from lab.core import fairness
from lab.core.chat import Frame, frame, has_chat_template
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.formats import DEFAULT, PromptFormat
from lab.core.prompts import demos_prefix, prompt, written_as
from lab.core.recipe import ArmCfg, Recipe
from lab.study.plan import StudyData, budget_size, data_order
from lab.tasks.task_probes import is_task_probe

SLACK = 8  # tokens kept free beside prompt + generation (BOS, separators)


class ContextFit:
    """The context decisions for one base model of a study."""

    def __init__(self, recipe: Recipe, data: StudyData, model_path: str):
        from transformers import AutoConfig, AutoTokenizer

        self.recipe, self.data = recipe, data
        self.tok = AutoTokenizer.from_pretrained(model_path)
        config = AutoConfig.from_pretrained(model_path)
        self.limit = context_length(SimpleNamespace(config=config))
        self._longest: dict[Any, int] = {}
        self._blocks: dict[tuple[str, str], int] = {}
        self._demo_blocks: dict[tuple[tuple[str, ...], str], int] = {}
        self.formats = recipe.prompt_formats()  # eval.formats: every prompt must fit in each
        self.prompt_cfg = recipe.prompt
        if self.prompt_cfg.style == "chat" and not has_chat_template(self.tok):
            raise LabError(
                f"prompt.style: chat needs a chat template, and the tokenizer of '{model_path}' "
                "has none; set prompt.style: plain or use an instruct model that ships one"
            )
        self.tail = self.frame([], "answer").tail

    def frame(self, demos: list[Example], fmt: str, pf: PromptFormat = DEFAULT) -> Frame:
        """What surrounds each question in the study's prompt style (lab/core/chat.py)."""
        return frame(self.tok, demos, fmt, self.prompt_cfg.style, self.prompt_cfg.demos, pf)

    def prefix_text(self, demos: list[Example], arm: ArmCfg) -> str:
        """The block in front of each question: the demos (chat: inside the template)."""
        return self.frame(demos, arm.format).prefix

    def demo_tokens(self, demos: list[Example], arm: ArmCfg) -> int:
        """Tokens of the block in front of each question, in its longest prompt format
        (memoised per demo list and answer format: the fit, the checks and every seed's
        order ask again for the same lists)."""
        key = (tuple(d.id for d in demos), arm.format)
        if key not in self._demo_blocks:
            self._demo_blocks[key] = max(
                self.prefix_tokens(self.frame(demos, arm.format, f).prefix) for f in self.formats
            )
        return self._demo_blocks[key]

    def head_tokens(self, arm: ArmCfg) -> int:
        """Chat: the template's tokens in front of a zero-shot question (0 in plain style)."""
        if self.prompt_cfg.style != "chat":
            return 0
        return self.prefix_tokens(self.prefix_text([], arm))

    def n_tokens(self, text: str) -> int:
        """Tokens of a text inside a prompt (no special tokens)."""
        return len(self.tok(text, add_special_tokens=False).input_ids)

    def prefix_tokens(self, text: str) -> int:
        """Tokens of a prompt's leading block (with the special tokens it starts with)."""
        return len(self.tok(text).input_ids)

    def longest_prompt(self, trigger: str | None) -> int:
        """The longest eval prompt in tokens, over every eval split (computed once)."""
        if trigger not in self._longest:
            self._longest[trigger] = max(
                self.n_tokens(prompt(ex, trigger, f) + self.tail)
                for s in self.data.eval_splits
                for ex in self.data.splits[s]
                for f in self.formats
            )
        return self._longest[trigger]

    def room(self, arm: ArmCfg) -> int:
        """Tokens left for an arm's demos beside its longest prompt and generation budget."""
        gen = self.recipe.eval.max_new_tokens[written_as(arm.format)]
        return self.limit - self.longest_prompt(arm.trigger) - gen - SLACK

    def fit_demos(self, demos: list[Example], arm: ArmCfg) -> list[Example]:
        """The largest prefix of `demos` that fits the context with the longest eval prompt
        and the generation budget; the caller records the cut (k vs k_requested)."""
        if not demos:
            return demos
        room = self.room(arm)

        def fits(k: int) -> bool:
            return self.demo_tokens(demos[:k], arm) <= room

        if fits(len(demos)):
            return demos
        lo, hi = 0, len(demos)  # fits(lo) holds, fits(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        if lo == 0:
            raise LabError(
                f"arm '{arm.name}': not even one demo fits the model's context ({self.limit} "
                "tokens); use shorter examples or a model with a longer context"
            )
        return demos[:lo]

    def block_tokens(self, ex: Example, fmt: str) -> int:
        """Tokens of one solved demo block (prompt, target, separator; chat: what the demo
        adds to the template's prefix, its turns included), memoised."""
        key = (ex.id, fmt)
        if key not in self._blocks:
            if self.prompt_cfg.style == "chat":
                with_demo, without = self.frame([ex], fmt).prefix, self.frame([], fmt).prefix
                self._blocks[key] = self.prefix_tokens(with_demo) - self.prefix_tokens(without)
            else:
                self._blocks[key] = self.n_tokens(demos_prefix([ex], fmt))
        return self._blocks[key]

    def fit_retrieved(self, index: list[Example], k: int, arm: ArmCfg) -> int:
        """`demos: knn`: the largest k' <= k for which the k' longest examples of the index
        (any query's worst case) fit beside the longest eval prompt; the caller records the
        cut (k vs k_requested)."""
        longest = sorted(index, key=lambda ex: -self.block_tokens(ex, arm.format))[:k]
        return len(self.fit_demos(longest, arm))

    def check(self, orders: dict[int, list[Example]]) -> None:
        """Every eval prompt, with its generation budget, fits the context; for each k-shot
        arm at least one demo fits (more are cut to what fits, recorded); the FT-then-ICL
        variant's demos fit in full. `orders`: each data seed's demo order (at least the
        FT-then-ICL variant's demos)."""
        r, limit = self.recipe, self.limit
        for arm in r.arms:
            room = self.room(arm)
            if room < self.head_tokens(arm):
                raise LabError(
                    f"arm '{arm.name}': the longest eval prompt ({self.longest_prompt(arm.trigger)}"
                    f" tokens) plus eval.max_new_tokens.{written_as(arm.format)}="
                    f"{r.eval.max_new_tokens[written_as(arm.format)]} do not fit the model's context "
                    f"({limit} tokens); lower eval.max_new_tokens or use a longer-context model"
                )
            if arm.method in ("icl", "ttt") and arm.k != 0:
                for seed, order in orders.items():
                    need = self.demo_tokens(order[:1], arm)
                    if need > room:
                        raise LabError(
                            f"arm '{arm.name}': not even one demo fits the model's context "
                            f"({limit} tokens; data seed {seed}'s first demo needs {need}, {room} "
                            "are free); lower k to 0, shorten eval.max_new_tokens, or use a "
                            "longer-context model"
                        )
            if arm.retrieved:  # any example may be retrieved: the longest one must fit
                need = max(self.block_tokens(ex, arm.format) for ex in self.data.pool) + SLACK
                if need > room:
                    raise LabError(
                        f"arm '{arm.name}': the longest pool example ({need} tokens as a demo) "
                        f"does not fit the model's context ({limit} tokens, {room} free) "
                        "beside the longest eval prompt; drop `demos: knn` or use a "
                        "longer-context model"
                    )
            k = r.eval.ft_then_icl_k
            if arm.method not in ("icl", "ttt") and k:
                for order in orders.values():
                    need = self.demo_tokens(order[:k], arm)
                    if need > room:
                        raise LabError(
                            f"eval.ft_then_icl_k={k}: the FT-then-ICL demos need {need} tokens "
                            f"but only {room} of the context ({limit}) are free for arm "
                            f"'{arm.name}'; lower eval.ft_then_icl_k"
                        )
        self.check_probes()

    def check_in_context(self) -> None:
        """In-context FT arms (`train_k`): at every seed and budget, the longest training
        input the draws can make (the train_k longest demos of the training set, the longest
        example, BOS and EOS) fits the context, and so do the arm's evaluation demos (the
        budget's first train_k) beside the longest eval prompt and the generation budget.
        Nothing is cut: an arm trained with K demos is evaluated with K."""
        r = self.recipe
        bos = self.prefix_tokens("") + 1  # BOS (if any) + EOS
        for arm in (a for a in r.arms if a.train_k):
            cfg, fmt = r.train_for(arm), arm.format
            for seed in r.seeds:
                ordered = data_order(r, self.data.pool, seed)
                for b in r.budgets or [None]:
                    budget = ordered[: budget_size(b, cfg.n_train, len(ordered))]
                    train = fairness.split_budget(budget, cfg)[0]
                    blocks = sorted((self.block_tokens(ex, fmt) for ex in train), reverse=True)
                    need = bos + sum(blocks[: arm.train_k]) + max(blocks) + SLACK
                    need += self.head_tokens(arm) + self.n_tokens(self.tail)  # chat markup
                    if need > self.limit:
                        raise LabError(
                            f"arm '{arm.name}': a training input of train_k={arm.train_k} demos "
                            f"can need {need} tokens (budget {b}, data seed {seed}) but the "
                            f"model's context is {self.limit}; lower train_k"
                        )
                    demos = budget[: arm.train_k]
                    if len(self.fit_demos(demos, arm)) < len(demos):
                        raise LabError(
                            f"arm '{arm.name}': its {len(demos)} evaluation demos (train_k) do "
                            f"not fit the model's context ({self.limit} tokens) beside the "
                            "longest eval prompt; lower train_k or eval.max_new_tokens"
                        )

    def check_probes(self) -> None:
        """Every probe prompt (its fixed prefix or demos, the question, the generation
        budget) must fit the context: checked before the first cell, not when a probe is
        reached."""
        for split in self.data.probe_splits:
            xs = self.data.splits[split]
            if is_task_probe(xs[0]):
                m = xs[0].meta
                prefix = self.prefix_tokens(task_probe_spec(xs).prefix)
                longest = max(
                    self.n_tokens(prompt(x)) + max(map(self.n_tokens, x.choices), default=0)
                    for x in xs
                )
                need = prefix + longest + probe_max_new(self.recipe, xs)
                fix = (
                    f"lower k ({len(m['demo_ids'])}) or max_new_tokens in "
                    f"task.params.probes.tasks.{m['probe']}, or drop the split"
                )
            else:
                prefix = self.prefix_tokens(xs[0].meta["prefix"])
                longest = max(self.n_tokens(probe_prompt(x)) for x in xs)
                need = prefix + longest + xs[0].meta["max_new_tokens"]
                fix = "drop the subtask from task.params.probes (tasks: [...]) or lower max_new_tokens"
            if need > self.limit:
                raise LabError(
                    f"probe split '{split}' needs {need} tokens (its fixed prompt, the longest "
                    f"question, max_new_tokens) but the model's context is {self.limit}; {fix}"
                )


def probe_max_new(recipe: Recipe, xs: list[Example]) -> int:
    """The generation budget of a cross-task probe split: its own, or its format's."""
    return task_probe_max_new_tokens(xs, recipe.eval.max_new_tokens)
