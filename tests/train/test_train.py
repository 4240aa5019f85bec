"""Training data (train/data.py) and the fine-tuning loop (train/finetune.py) on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lab.core.errors import LabError
from lab.core.prompts import prompt, target
from lab.core.recipe import TrainCfg
from train.data import IGNORE, Encoder, collate, epoch_order
from train.finetune import finetune, load_finetuned
from train.loss import SupervisedLoss

CFG = {"steps": 8, "batch_size": 4, "warmup_ratio": 0.0, "schedule": "constant"}
LORA = TrainCfg(lr=1e-2, **CFG)
FULL = TrainCfg(lr=1e-3, **CFG)


def ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


# -------------------------------------------------------------------------------- Encoder


@pytest.mark.parametrize("fmt", ["answer", "cot", "code"])
def test_encoder_masks_prompt_and_supervises_target_and_eos(tiny_model, splits, fmt):
    _, tok = tiny_model
    ex = splits["train"][0]
    enc = Encoder(fmt, tok, [])(ex)
    p, t = ids(tok, prompt(ex)), ids(tok, target(ex, fmt))
    assert enc["input_ids"] == p + t + [tok.eos_token_id]
    assert enc["labels"] == [IGNORE] * len(p) + t + [tok.eos_token_id]
    supervised = [x for x in enc["labels"] if x != IGNORE]
    assert tok.decode(supervised[:-1]) == target(ex, fmt)
    assert supervised[-1] == tok.eos_token_id


def test_encoder_with_bos(tiny_model, splits):
    _, tok = tiny_model
    ex = splits["train"][1]
    plain = Encoder("answer", tok, [])(ex)
    enc = Encoder("answer", tok, [tok.bos_token_id])(ex)
    assert enc["input_ids"] == [tok.bos_token_id] + plain["input_ids"]
    assert enc["labels"] == [IGNORE] + plain["labels"]


# ------------------------------------------------------------------------- collate


def test_collate_right_pads_with_ignored_labels():
    batch = [
        {"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
        {"input_ids": [8, 9, 10, 11, 12], "labels": [IGNORE, IGNORE, 10, 11, 12]},
    ]
    out = collate(batch, pad_id=3)
    assert out["input_ids"].tolist() == [[5, 6, 7, 3, 3], [8, 9, 10, 11, 12]]
    assert out["labels"].tolist() == [
        [IGNORE, 6, 7, IGNORE, IGNORE],
        [IGNORE, IGNORE, 10, 11, 12],
    ]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert all(v.dtype == torch.long for v in out.values())


# ------------------------------------------------------------------------- epoch_order


def test_epoch_order_deterministic_per_seed():
    assert epoch_order(7, 30, seed=0) == epoch_order(7, 30, seed=0)
    assert epoch_order(7, 30, seed=0) != epoch_order(7, 30, seed=1)


@pytest.mark.parametrize("n, total", [(8, 32), (7, 30), (5, 3), (1, 4)])
def test_epoch_order_covers_every_index_each_epoch(n, total):
    order = epoch_order(n, total, seed=3)
    assert len(order) == total
    full_epochs = total // n
    for e in range(full_epochs):
        assert sorted(order[e * n : (e + 1) * n]) == list(range(n))
    rest = order[full_epochs * n :]
    assert len(set(rest)) == len(rest) and set(rest) <= set(range(n))


def test_epoch_order_reshuffles_between_epochs():
    order = epoch_order(10, 30, seed=0)
    epochs = [order[i : i + 10] for i in (0, 10, 20)]
    assert len({tuple(e) for e in epochs}) == 3


# ------------------------------------------------------------------------- finetune


def supervised_loss(model, tok, examples, fmt="answer"):
    data = [Encoder(fmt, tok, [])(ex) for ex in examples]
    batch = collate(data, tok.pad_token_id)
    with torch.no_grad():
        return float(SupervisedLoss(model)(**batch))


def logits(model, tok, text):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids(tok, text)])).logits


@pytest.fixture(scope="module")
def train_set(splits):
    return splits["train"][:8]


@pytest.fixture(scope="module")
def lora_run(tiny_path, train_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    return finetune(tiny_path, train_set, "answer", "lora", LORA, 0, out, progress=False)


@pytest.fixture(scope="module")
def full_run(tiny_path, train_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return finetune(tiny_path, train_set, "answer", "full", FULL, 0, out, progress=False)


@pytest.mark.parametrize("run", ["lora_run", "full_run"])
def test_finetune_loss_decreases(request, run):
    res = request.getfixturevalue(run)
    assert res.steps == len(res.losses) == 8
    assert all(loss == loss and loss > 0 for loss in res.losses)
    assert sum(res.losses[-2:]) / 2 < res.losses[0]


@pytest.mark.parametrize("run", ["lora_run", "full_run"])
def test_finetune_result_counts(request, run, tiny_model, train_set):
    res = request.getfixturevalue(run)
    _, tok = tiny_model
    data = [Encoder("answer", tok, [])(ex) for ex in train_set]
    order = epoch_order(len(data), 8 * 4, seed=0)
    assert res.examples_seen == 32
    assert res.train_tokens == sum(len(data[i]["input_ids"]) for i in order)
    assert res.target_tokens == sum(sum(x != IGNORE for x in data[i]["labels"]) for i in order)
    saved = json.loads((Path(res.checkpoint) / "train_result.json").read_text())
    assert saved["losses"] == res.losses
    assert saved["method"] == res.method


def test_lora_trains_only_the_adapter(lora_run, full_run, tiny_model):
    base, _ = tiny_model
    n_base = sum(p.numel() for p in base.parameters())
    assert 0 < lora_run.trainable_params < n_base
    assert lora_run.total_params == n_base + lora_run.trainable_params
    assert full_run.trainable_params == full_run.total_params == n_base
    ckpt = Path(lora_run.checkpoint)
    assert (ckpt / "adapter_config.json").is_file()
    assert not (ckpt / "model.safetensors").exists()  # adapter only, not the full weights


@pytest.mark.parametrize("run", ["lora_run", "full_run"])
def test_load_finetuned_differs_from_base_and_fits_the_data(
    request, run, tiny_path, tiny_model, train_set
):
    res = request.getfixturevalue(run)
    base, base_tok = tiny_model
    model, tok = load_finetuned(tiny_path, res.checkpoint, res.method)
    assert type(model) is type(base)  # a LoRA adapter is merged, not wrapped
    assert not model.training
    text = prompt(train_set[0]) + target(train_set[0], "answer")
    diff = (logits(model, tok, text) - logits(base, base_tok, text)).abs().max()
    assert diff > 1e-3
    assert supervised_loss(model, tok, train_set) < supervised_loss(base, base_tok, train_set) - 0.1


def test_finetune_reproducible_per_seed(tiny_path, train_set, lora_run, tmp_path):
    again = finetune(
        tiny_path, train_set, "answer", "lora", LORA, 0, tmp_path / "a", progress=False
    )
    assert again.losses == lora_run.losses
    other = finetune(
        tiny_path, train_set, "answer", "lora", LORA, 1, tmp_path / "b", progress=False
    )
    assert other.losses != lora_run.losses


def test_baseline_loss_head_everywhere_is_the_same_loss(tiny_model, train_set, monkeypatch):
    """FTLAB_BASELINE=1 applies the LM head at every position (a plain causal-LM loss);
    the supervised-positions-only head gives the same loss and gradient."""
    model, tok = tiny_model
    batch = collate([Encoder("cot", tok, [])(ex) for ex in train_set], tok.pad_token_id)

    def loss_and_grad():
        model.zero_grad()
        loss = SupervisedLoss(model)(**batch)
        loss.backward()
        return float(loss), model.get_input_embeddings().weight.grad.clone()

    fast, g_fast = loss_and_grad()
    monkeypatch.setenv("FTLAB_BASELINE", "1")
    base, g_base = loss_and_grad()
    model.zero_grad()
    assert base == pytest.approx(fast, rel=1e-5)
    assert torch.allclose(g_base, g_fast, atol=1e-6) and g_fast.abs().sum() > 0


def test_finetune_rejects_batch_not_divisible_by_accumulation(tiny_path, train_set, tmp_path):
    cfg = TrainCfg(steps=1, batch_size=4, grad_accum=3)
    with pytest.raises(LabError, match="multiple of grad_accum"):
        finetune(tiny_path, train_set, "answer", "full", cfg, 0, tmp_path, progress=False)
