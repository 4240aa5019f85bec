"""A LoRA checkpoint evaluated on fp32-merged weights (eval/merge.py): within the stated
tolerance of the unmerged adapter in fp32 and bf16, the fallback when it is not, the adapter
check on the merged model, and the saved checkpoint left as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from eval.merge import TOLERANCE, for_evaluation, is_adapter
from lab.core.prompts import prompt
from lab.core.recipe import TrainCfg
from lab.study.base_model import StudyBase
from lab.study.models import ResolvedModel
from train.finetune import finetune, load_finetuned

# lr 3e-2: an adapter that moves the tiny model's outputs well beyond rounding
CFG = TrainCfg(steps=4, batch_size=4, lr=3e-2, lora={"r": 4, "alpha": 8, "dropout": 0.0})


@pytest.fixture(scope="module")
def adapter(tiny_path, splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    return finetune(
        tiny_path, splits["train"][:8], "answer", "lora", CFG, 0, out, progress=False
    ).checkpoint


@pytest.fixture(scope="module")
def texts(splits):
    return [prompt(ex) for ex in splits["test"][:4]]


def digest(directory: str) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(directory).rglob("*"))
        if p.is_file()
    }


def evaluate(model, tok, examples):  # noqa: ANN001, ANN201
    lm = LM(model, tok, batch_size=4, progress=False)
    preds, _ = evaluate_split(lm, examples, PromptSpec("answer"), 6, gold_logprob=True)
    return preds


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_merged_matches_the_unmerged_adapter_within_the_tolerance(
    tiny_path, adapter, texts, splits, precision
):
    before = digest(adapter)
    unmerged, tok = load_finetuned(tiny_path, adapter, "lora", precision, unmerged=True)
    assert is_adapter(unmerged)
    want = evaluate(unmerged, tok, splits["test"])
    model, info = for_evaluation(unmerged, tok, tiny_path, adapter, precision, texts)
    assert info["path"] == "merged" and not is_adapter(model)
    assert not any("lora_" in n for n, _ in model.named_parameters())
    assert {p.dtype for p in model.parameters()} == {
        torch.float32 if precision == "fp32" else torch.bfloat16
    }
    assert (
        info["tolerance"] == TOLERANCE["fp32"]
        if precision == "fp32"
        else info["tolerance"]
        == max(TOLERANCE["bf16"], info["vs_exact_max_abs_logprob_diff"]["unmerged"])
    )
    assert info["max_abs_logprob_diff"] <= info["tolerance"]
    if precision == "fp32":  # both are the exact model up to fp32 rounding
        assert max(info["vs_exact_max_abs_logprob_diff"].values()) <= 1e-3
    assert info["probe_texts"] == 4 and info["probe_tokens"] > 20
    got = evaluate(model, tok, splits["test"])
    assert [x["generation"] for x in got] == [x["generation"] for x in want]
    for x, y in zip(want, got, strict=True):
        assert abs(x["gold_logprob"] - y["gold_logprob"]) <= info["tolerance"] * 4
    assert digest(adapter) == before  # the saved adapter is only read


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_unmerged_adapter_is_kept_beyond_the_tolerance(tiny_path, adapter, texts, precision):
    unmerged, tok = load_finetuned(tiny_path, adapter, "lora", precision, unmerged=True)
    model, info = for_evaluation(
        unmerged, tok, tiny_path, adapter, precision, texts, tolerance=1e-12
    )
    assert info["max_abs_logprob_diff"] > 1e-12  # the merge rounds: the fallback is taken
    assert info["path"] == "adapter" and model is unmerged and is_adapter(model)
    model, info = for_evaluation(
        unmerged, tok, tiny_path, adapter, precision, texts, tolerance=-1.0
    )
    assert info["path"] == "adapter" and model is unmerged


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_adapter_check_fires_for_a_merged_noop_adapter(
    tiny_path, tiny_cache, splits, tmp_path, precision
):
    """A LoRA adapter as peft initialises it (B = 0) changes nothing: merged, its model must
    still be caught by the adapter check."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lab.study.models import load_model

    base = AutoModelForCausalLM.from_pretrained(tiny_path)
    get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    ).save_pretrained(tmp_path / "noop")
    _, tok0 = load_model(tiny_path)
    tok0.save_pretrained(tmp_path / "noop")
    checker = StudyBase(
        ResolvedModel("tiny-random", tiny_path, "tiny", "x"), "cpu", precision, splits["test"]
    )
    unmerged, tok = load_finetuned(
        tiny_path, str(tmp_path / "noop"), "lora", precision, unmerged=True
    )
    model, info = for_evaluation(
        unmerged, tok, tiny_path, str(tmp_path / "noop"), precision, checker.check_texts
    )
    assert info["path"] == "merged" and info["max_abs_logit_diff"] == 0.0
    with pytest.raises(RuntimeError, match="were not applied"):
        checker.output_delta(model, tok)


def test_a_model_without_an_adapter_comes_back_as_loaded(tiny_model, texts):
    model, tok = tiny_model
    got, info = for_evaluation(model, tok, "unused", "unused", "fp32", texts)
    assert got is model and info == {"path": "as loaded"}
