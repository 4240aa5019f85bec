"""A chat-style study end to end on the tiny chat model (lab/study/model_chat.py): prompted
arms with multi-turn demos and a LoRA arm trained on the chat-framed examples."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from transformers import AutoTokenizer

from lab.core.chat import chat_frame
from lab.core.errors import LabError
from lab.core.example import Example
from lab.core.io import read_jsonl
from lab.core.prompts import prompt
from lab.core.recipe import parse_recipe
from lab.study.cli import main
from lab.study.context import ContextFit
from lab.study.models import resolve_model
from lab.study.plan import study_data
from lab.tasks import build_task

RECIPE = {
    "name": "chat",
    "model": "tiny-random-chat",
    "precision": "fp32",
    "task": {"n_train": 16, "n_dev": 4, "n_test": 3},
    "seeds": [0],
    "train": {"steps": 2, "batch_size": 4},
    "eval": {"batch_size": 4, "max_new_tokens": {"answer": 4, "cot": 6, "code": 6}},
    "prompt": {"style": "chat", "demos": "multi_turn"},
    "arms": [
        {"name": "zs", "method": "icl"},
        {"name": "icl2", "method": "icl", "k": 2},
        {"name": "lora", "method": "lora"},
    ],
    "tracking": {"mode": "disabled"},
}


def test_chat_study_runs_every_arm(tmp_path, tiny_cache):
    path, out = tmp_path / "chat.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(RECIPE))
    code = main(["run", str(path), "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"])
    assert code == 0
    rows = read_jsonl(out / "results.jsonl")
    assert {r["arm"] for r in rows} == {"zs", "icl2", "lora"}
    study = json.loads((out / "study.json").read_text())
    assert study["recipe"]["prompt"] == {"style": "chat", "demos": "multi_turn"}
    assert (out / "cells" / "lora__d0" / "checkpoint" / "train_result.json").is_file()
    # the zero-shot arm ran the chat-framed prompt: its token count is the framed prompt's
    tok = AutoTokenizer.from_pretrained(resolve_model("tiny-random-chat", tiny_cache).path)
    fr = chat_frame(tok, (), "answer")
    preds = read_jsonl(out / "cells" / "zs__d0" / "predictions" / "prompted" / "test.jsonl")
    for p in preds:
        ex = Example(p["id"], p["question"], p["gold"], "", "")
        assert p["prompt_tokens"] == len(tok(fr.prefix + fr.wrap(prompt(ex))).input_ids)


def test_context_fit_counts_the_chat_template(tmp_path, tiny_cache):
    """A context that holds the longest plain prompt and its generation budget but not the
    chat template's tokens around it: plain passes, chat is refused before anything runs."""
    small = tmp_path / "ctx160"
    shutil.copytree(resolve_model("tiny-random-chat", tiny_cache).path, small)
    cfg = json.loads((small / "config.json").read_text())
    cfg["max_position_embeddings"] = 160  # the longest plain prompt 129 + 10 new + 8 slack
    (small / "config.json").write_text(json.dumps(cfg))
    base = {
        "name": "ctx",
        "model": str(small),
        "task": {"n_train": 16, "n_dev": 4, "n_test": 3},
        "arms": [{"name": "zs", "method": "icl"}],
    }
    plain = parse_recipe(base)
    data = study_data(plain, build_task(plain.task))
    ContextFit(plain, data, str(small)).check({})
    chat = parse_recipe({**base, "prompt": {"style": "chat"}})
    with pytest.raises(LabError, match="do not fit the model's context \\(160 tokens\\)"):
        ContextFit(chat, data, str(small)).check({})
