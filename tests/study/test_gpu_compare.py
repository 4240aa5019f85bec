"""bench/gpu_compare.py's pure parts: the published shapes it builds, its padded character
tokenizer, its fixed-length training examples, batch sizes and goal verdicts. (Its smoke
run needs trl and lm-eval, which the lab's environment does not install: run by hand,
`python -m bench.gpu_compare --smoke`, see bench/README.md.)"""

from __future__ import annotations

import pytest
import torch

from bench.gpu_compare import (
    batch_for,
    char_tokenizer,
    filler,
    long_examples,
    plan_jobs,
    qwen2_config,
    shape_row,
    verdict,
)
from lab.core.prompts import bos_prefix
from train.data import Encoder


@pytest.mark.parametrize(
    "name, params", [("0.5b", 494_032_768), ("1.5b", 1_543_714_304)]
)  # the published Qwen2.5 parameter counts (tied embeddings)
def test_random_models_have_the_published_sizes(name, params):
    from transformers import AutoModelForCausalLM

    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(qwen2_config(shape_row(name), ids))
    assert sum(p.numel() for p in model.parameters()) == params


def test_the_tokenizer_is_one_token_a_character_padded_to_the_vocabulary():
    tok = char_tokenizer(512)
    assert len(tok) == 512
    text = "Question: 12 + 7\nAnswer: 19"
    assert len(tok(text, add_special_tokens=False).input_ids) == len(text)
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    ch = tok.decode([511])  # a filler id: one character beyond ASCII, and back
    assert (
        len(ch) == 1 and ord(ch) >= 0x100 and tok(ch, add_special_tokens=False).input_ids == [511]
    )
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in filler(60_000))


@pytest.mark.parametrize("seq", [64, 512, 2048])
def test_training_examples_are_exactly_the_sequence_length(seq):
    tok = char_tokenizer(256)
    exs = long_examples(seq, 3)
    assert len({ex.question for ex in exs}) == 3
    for ex in exs:
        row = Encoder("cot", tok, bos_prefix(tok))(ex)
        assert len(row["input_ids"]) == seq
        target = sum(x != -100 for x in row["labels"])
        assert target == seq - seq // 2  # half prompt, half supervised target


def test_batches_and_verdicts():
    assert batch_for(512, 16384) == 32 and batch_for(2048, 16384) == 8
    assert batch_for(4096, 1024) == 1
    assert verdict(3.2, 3.0).endswith("met)") and "BELOW" in verdict(0.5, 1.0)
    assert verdict(None, 1.0) == "n/a"


def test_the_goals_pairs_run_first():
    jobs = plan_jobs(
        ["0.5b", "1.5b"], [512, 2048], ["lora", "full"], ["bf16", "fp32"], ["train", "eval"]
    )
    keys = [k for k, *_ in jobs]
    assert len(keys) == len(set(keys)) == 2 * (2 * 2 + 2)
    assert keys[:6] == [
        "0.5b/train/lora/2048",
        "0.5b/train/full/2048",
        "0.5b/eval/bf16",
        "1.5b/train/lora/2048",
        "1.5b/train/full/2048",
        "1.5b/eval/bf16",
    ]
    assert [k for k, *_ in plan_jobs(["s"], [64], ["lora"], ["fp32"], ["eval"])] == ["s/eval/fp32"]
