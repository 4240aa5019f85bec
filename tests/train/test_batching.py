"""Packed micro-batches (train/batching.py): same loss and gradients as padded batches."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from sharp import sharpen
from transformers import AutoModelForCausalLM

import train.batching as batching
from lab.core.recipe import TrainCfg
from lab.study.models import load_model
from train.batching import (
    collate_micro,
    collate_packed,
    pack_rows,
    packing,
    padding_fraction,
)
from train.data import IGNORE, Encoder, collate
from train.finetune import finetune
from train.loss import SupervisedLoss


@pytest.fixture(scope="module")
def mixed(splits, tiny_model):
    """8 encoded examples of very different lengths (answer and CoT formats mixed)."""
    _, tok = tiny_model
    return [
        Encoder("cot" if i % 3 == 0 else "answer", tok, [])(ex)
        for i, ex in enumerate(splits["train"][:8])
    ]


def test_pack_rows_fits_the_width_and_keeps_every_example():
    rnd = random.Random(0)
    for _ in range(200):
        lengths = [rnd.randint(1, 50) for _ in range(rnd.randint(1, 12))]
        width = max(lengths)
        rows = pack_rows(lengths, width)
        width2, rows2 = packing(lengths)
        assert width2 >= width and len(rows2) * width2 <= len(rows) * width
        assert all(sum(lengths[i] for i in r) <= width2 for r in rows2)
        assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in r) <= width for r in rows)
        assert all(r == sorted(r) for r in rows)
    assert pack_rows([10, 4, 6, 3], 10) == [[0], [1, 2], [3]]


def test_packs_only_where_padding_exceeds_ten_percent(mixed, tiny_model):
    pad = tiny_model[1].pad_token_id
    assert padding_fraction([len(d["input_ids"]) for d in mixed]) > 0.10
    packed = collate_micro(mixed, pad, pack=True)
    assert "position_ids" in packed
    assert packed["input_ids"].numel() < len(mixed) * max(len(d["input_ids"]) for d in mixed)
    plain = collate(mixed, pad)
    assert int(packed["attention_mask"].sum()) == int(plain["attention_mask"].sum())
    assert int((packed["labels"] != IGNORE).sum()) == int((plain["labels"][:, 1:] != IGNORE).sum())
    assert "position_ids" not in collate_micro(mixed, pad, pack=False)
    even = [mixed[1]] * 4  # no padding at all
    assert "position_ids" not in collate_micro(even, pad, pack=True)


def test_packed_rows_hold_each_example_whole(mixed, tiny_model):
    packed = collate_packed(mixed, tiny_model[1].pad_token_id)
    found = []
    for ids, pos, mask in zip(
        packed["input_ids"], packed["position_ids"], packed["attention_mask"], strict=True
    ):
        starts = [j for j in range(len(ids)) if mask[j] and pos[j] == 0]
        ends = starts[1:] + [int(mask.sum())]
        found += [ids[a:b].tolist() for a, b in zip(starts, ends, strict=True)]
    assert sorted(found) == sorted(d["input_ids"] for d in mixed)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_gives_the_same_loss_and_gradients(tiny_path, mixed, attn):
    model = AutoModelForCausalLM.from_pretrained(tiny_path, attn_implementation=attn)
    sharpen(model, 1)
    pad = load_model(tiny_path)[1].pad_token_id

    def loss_and_grads(batch):
        model.zero_grad()
        loss = SupervisedLoss(model, reduction="sum")(**batch)
        loss.backward()
        return float(loss), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, g_plain = loss_and_grads(collate(mixed, pad))
    packed_batch = collate_micro(mixed, pad, pack=True)
    assert "position_ids" in packed_batch
    packed, g_packed = loss_and_grads(packed_batch)
    assert packed == pytest.approx(plain, rel=1e-5)
    for name, g in g_plain.items():
        err = float((g_packed[name] - g).abs().max()) / max(float(g.abs().max()), 1e-12)
        assert err < 1e-4, (name, err)
    assert sum(float(g.abs().sum()) for g in g_plain.values()) > 0


@pytest.mark.parametrize("method", ["lora", "full"])
def test_finetune_packed_or_padded_same_losses(tiny_path, splits, tmp_path, monkeypatch, method):
    """The whole loop, packed and padded, on examples whose lengths vary by more than 10%
    (every third question asked twice)."""
    cfg = TrainCfg(steps=3, batch_size=8, lr=1e-3, warmup_ratio=0.0, schedule="constant")
    data = [
        replace(ex, question=f"{ex.question} {ex.question}") if i % 3 == 0 else ex
        for i, ex in enumerate(splits["train"][:24])
    ]
    packs: list[int] = []
    real = batching.collate_packed

    def counting(*args, **kwargs):
        packs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(batching, "collate_packed", counting)
    packed = finetune(tiny_path, data, "answer", method, cfg, 0, tmp_path / "p", progress=False)
    assert packs  # it did pack
    monkeypatch.setattr(batching, "PAD_LIMIT", 2.0)  # never
    packs.clear()
    padded = finetune(tiny_path, data, "answer", method, cfg, 0, tmp_path / "n", progress=False)
    assert not packs
    # the first step's loss to float reassociation; later ones after AdamW steps (which
    # normalise tiny gradient differences) to 1e-4
    assert packed.losses[0] == pytest.approx(padded.losses[0], rel=1e-6)
    assert packed.losses == pytest.approx(padded.losses, rel=1e-4)
    assert (packed.train_tokens, packed.target_tokens) == (
        padded.train_tokens,
        padded.target_tokens,
    )
