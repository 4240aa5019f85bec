"""`train_result.json` marks a training done (a rerun skips it): it is written only once the
checkpoint is complete and readable. A run that saved only the tokenizer was marked trained,
and the rerun's evaluation then crashed loading it (transformers ValueError)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import train.finetune as ft

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' helpers
from worker_data import config, data  # noqa: E402


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_run_that_saved_only_the_tokenizer_is_not_marked_trained(
    tiny_path, tmp_path, monkeypatch, method
):
    def tokenizer_only(model, state, tok, out, overlay=None):  # noqa: ANN001, ANN202
        out.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(out)

    monkeypatch.setattr(ft, "save", tokenizer_only)
    train, _ = data()
    with pytest.raises(RuntimeError, match="incomplete"):
        ft.finetune(tiny_path, train, "answer", method, config(method), 0, tmp_path, progress=False)
    assert not (tmp_path / "train_result.json").exists()
    assert ft.finished(tmp_path) is None


def test_a_partly_saved_adapter_is_not_marked_trained(tiny_path, tmp_path, monkeypatch):
    """An adapter file with some of the trained weights missing (a state dict gathered
    short) is incomplete too."""
    real = ft.save

    def short(model, state, tok, out, overlay=None):  # noqa: ANN001, ANN202
        keep = dict(list(state.items())[: len(state) // 2])
        real(model, keep, tok, out, overlay)

    monkeypatch.setattr(ft, "save", short)
    train, _ = data()
    with pytest.raises(RuntimeError, match="incomplete"):
        ft.finetune(tiny_path, train, "answer", "lora", config("lora"), 0, tmp_path, progress=False)
    assert ft.finished(tmp_path) is None
