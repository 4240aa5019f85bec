"""`task show --style chat`: the prompts in the model's chat template, as the arms see them;
a model without a chat template is refused with one line."""

from __future__ import annotations

from pathlib import Path

import yaml

from lab.study import models
from lab.study.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _recipe(tmp: Path, **prompt) -> Path:
    data = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    data["prompt"] = prompt
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_task_show_chat_follows_the_recipe(tmp_path, tiny_cache, monkeypatch, capsys):
    monkeypatch.setenv("FTLAB_CACHE", str(tiny_cache))
    path = _recipe(tmp_path, style="chat", demos="multi_turn")
    assert main(["task", "show", str(path), "--smoke", "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "prompt style: chat" in out and "demos: multi_turn" in out
    # the zero-demo frame, the target as the assistant's content, then the end of turn
    assert "    <|im_start|>system\n    You are tiny.<|im_end|>\n    <|im_start|>user\n" in out
    assert "Answer:<|im_end|>\n    <|im_start|>assistant\n" in out
    assert out.count("<|im_start|>assistant") > 3  # the 2-demo multi-turn layout included


def test_task_show_plain_by_default_and_chat_refused_without_template(
    tmp_path, tiny_cache, monkeypatch, capsys
):
    monkeypatch.setenv("FTLAB_CACHE", str(tiny_cache))
    assert main(["task", "show", "arithmetic", "-n", "1"]) == 0
    assert "<|im_start|>" not in capsys.readouterr().out
    assert main(["task", "show", "arithmetic", "--style", "chat", "--model", "tiny-random"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: model 'tiny-random' has no chat template; drop --style chat or pass --model "
        "with one"
    ]
    assert models.cache_root() == Path(tiny_cache)
