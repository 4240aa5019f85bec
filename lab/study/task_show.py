"""`python -m lab task show TASK_OR_RECIPE [--smoke] [--profile NAME]`: check a task before
spending compute. Prints every split with its size and how it is scored, the formats the
train pool supplies, then two rendered prompts with their targets per split and format:
exactly the text the arms will see (the lab's template or the task's own pattern, then the
answer, rationale or program an FT arm learns and a demo shows).

TASK_OR_RECIPE is a recipe (its task, sizes and params; its arms' formats are checked too),
a task YAML file, or the name of a task of the lab (at the default sizes of `task:`).

`--style chat` (default: the recipe's `prompt.style`, else plain) prints the prompts inside
the chat template of the model's tokenizer (`--model`, default: the recipe's first model,
else smollm2-135m-instruct), as the arms see them: the zero-demo frame, the target as the
assistant's content and the end-of-turn token an FT arm learns; then the layout of a 2-demo
prompt under `--demos` (default: the recipe's `prompt.demos`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from eval.answers import extractor, output_type
from lab.core.chat import chat_frame, chat_target, end_of_turn, has_chat_template
from lab.core.errors import LabError
from lab.core.example import Example, check_formats, usable
from lab.core.prompts import prompt, target
from lab.core.recipe import Recipe, TaskCfg, load_recipe
from lab.tasks import build_task, describe_task

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"

FORMATS = ("answer", "cot", "code")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("task", help="inspect a task: `task show TASK_OR_RECIPE`")
    verbs = p.add_subparsers(dest="verb", required=True)
    show = verbs.add_parser("show", help="splits, sizes, scoring and rendered prompts of a task")
    show.add_argument("task", help="a recipe, a task YAML, or a task name")
    show.add_argument("--smoke", action="store_true", help="a recipe's --smoke sizes")
    show.add_argument("--profile", help="a recipe's named overrides")
    show.add_argument("-n", type=int, default=2, help="examples shown per split and format")
    show.add_argument("--style", choices=["plain", "chat"], help="default: the recipe's")
    show.add_argument("--demos", choices=["single_turn", "multi_turn"], help="chat demo layout")
    show.add_argument(
        "--model", help=f"chat: whose template (default: the recipe's, else {DEFAULT_CHAT_MODEL})"
    )


def _is_recipe(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # reported when read as a recipe or a task
    return isinstance(data, dict) and "arms" in data


def scoring(ex: Example) -> str:
    kind = output_type(ex)
    if kind == "multiple_choice":
        return f"multiple_choice: log-likelihood of {list(ex.choices)}"
    if kind == "code":
        return "code: the program passes its tests in the sandbox"
    return f"generate: extract {extractor(ex)}, compared with the gold answer"


def _block(text: str, indent: str = "    ") -> str:
    return "\n".join(indent + line for line in text.splitlines() or [""])


def render(splits: dict[str, list[Example]], n: int = 2, tok: Any = None, turns: str = "") -> str:
    """The report `task show` prints, for built splits (`tok`: in that tokenizer's chat
    template, the demos laid out as `turns`)."""
    lines = [f"{'split':<22} {'size':>6}  scoring", f"{'-' * 22} {'-' * 6}  {'-' * 40}"]
    for name, xs in splits.items():
        lines.append(f"{name:<22} {len(xs):>6}  {scoring(xs[0]) if xs else '-'}")
    has = [f for f in FORMATS if usable(splits["train"], f)]
    lines += ["", f"formats the train pool supplies (arm `format:`): {', '.join(has) or 'none'}"]
    for name, xs in splits.items():
        fmts = [f for f in FORMATS if usable(xs, f)] or ["answer"]
        for fmt in fmts:
            shown = usable(xs, fmt)[:n] if usable(xs, fmt) else xs[:n]
            lines += ["", f"=== {name}, format {fmt} ({len(shown)} of {len(xs)}) ==="]
            for ex in shown:
                if output_type(ex) == "multiple_choice" and fmt == "answer":
                    lines.append(
                        f"--- {ex.id}   scored continuations {list(ex.choices)}, "
                        f"gold {' ' + ex.answer!r}"
                    )
                    lines.append(_block(_framed(ex, tok)))
                else:
                    want = chat_target(ex, fmt) if tok is not None else target(ex, fmt)
                    lines.append(f"--- {ex.id}   target {want!r}")
                    lines.append(_block(_framed(ex, tok, fmt)))
    if tok is not None:
        ex, demos = (splits.get("test") or splits["train"][2:])[0], splits["train"][:2]
        fr = chat_frame(tok, demos, "answer", multi_turn=turns == "multi_turn")
        lines += ["", f"=== 2 demos, format answer, prompt.demos: {turns} ==="]
        lines.append(_block(fr.prefix + fr.wrap(prompt(ex))))
    return "\n".join(lines)


def _framed(ex: Example, tok: Any, fmt: str | None = None) -> str:
    """The example's prompt (and the target in `fmt`) as an arm sees it: plain, or in the
    tokenizer's chat template (the target as the assistant's content, then end of turn)."""
    if tok is None:
        return prompt(ex) + (target(ex, fmt) if fmt else "")
    fr = chat_frame(tok, (), fmt or "answer")
    text = fr.prefix + fr.wrap(prompt(ex))
    if fmt:
        text += chat_target(ex, fmt) + tok.convert_ids_to_tokens(end_of_turn(tok))
    return text


def chat_tokenizer(model: str, smoke: bool) -> Any:
    """The tokenizer whose chat template `--style chat` shows (refused without one)."""
    from transformers import AutoTokenizer

    from lab.study.models import resolve_model

    spec = "tiny-random-chat" if smoke else model
    tok = AutoTokenizer.from_pretrained(resolve_model(spec).path)
    if not has_chat_template(tok):
        raise LabError(
            f"model '{spec}' has no chat template; drop --style chat or pass --model with one"
        )
    return tok


def task_of(arg: str, smoke: bool, profile: str | None) -> tuple[TaskCfg, Recipe | None]:
    path = Path(arg)
    if path.suffix in (".yaml", ".yml") and path.is_file() and _is_recipe(path):
        recipe = load_recipe(path, smoke=smoke, profile=profile)
        return recipe.task, recipe
    if smoke or profile:
        raise LabError("--smoke and --profile apply to a recipe; pass a recipe or drop them")
    if path.suffix in (".yaml", ".yml") and not path.is_file():
        raise LabError(f"'{arg}' not found; pass a recipe, a task YAML or a task name")
    return TaskCfg(name=arg), None


def main(args: Any) -> int:
    cfg, recipe = task_of(args.task, args.smoke, args.profile)
    splits = build_task(cfg)
    desc = describe_task(cfg)
    print(
        f"task {cfg.name} (seed {cfg.seed}; n_train {cfg.n_train}, n_dev {cfg.n_dev}, "
        f"n_test {cfg.n_test})"
    )
    for name in splits:
        if name in desc:
            print(f"  {name}: {desc[name]}")
    style = args.style or (recipe.prompt.style if recipe else "plain")
    turns = args.demos or (recipe.prompt.demos if recipe else "single_turn")
    tok = None
    if style == "chat":
        model = args.model or (recipe.models[0] if recipe else DEFAULT_CHAT_MODEL)
        tok = chat_tokenizer(model, args.smoke and not args.model)
        print(f"prompt style: chat (the chat template of {model}; demos: {turns})")
    print()
    print(render(splits, args.n, tok, turns))
    if recipe is not None:
        check_formats(recipe.arms, cfg.name, splits["train"])
        print(f"\nrecipe {recipe.name}: every arm's format is supplied by the task")
    return 0
