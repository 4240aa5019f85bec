"""Test-time training (`method: ttt`): its leave-one-out tasks, the loss on the held-out
answer only, and the adapter discarded after its split (the base weights unchanged)."""

from __future__ import annotations

import pytest

from eval.evaluate import PromptSpec
from eval.lm import LM
from lab.core.errors import LabError
from lab.core.prompts import bos_prefix, target
from lab.core.recipe import TttCfg
from lab.study.ttt_eval import evaluate_split_ttt
from train.data import IGNORE, Encoder
from train.ttt import loo_tasks, train_adapter, weights_checksum

CFG = TttCfg(steps=2, batch_size=2, permutations=2)


def test_loo_tasks_hold_each_demo_out_never_in_its_own_context(splits):
    demos = splits["train"][:5]
    tasks = loo_tasks(demos, 3, seed=7)
    assert len(tasks) == 5 * 3
    for context, held in tasks:
        assert held.id not in {d.id for d in context}
        assert {d.id for d in context} | {held.id} == {d.id for d in demos}
        assert len(context) == 4
    held_counts = {d.id: sum(h.id == d.id for _, h in tasks) for d in demos}
    assert set(held_counts.values()) == {3}
    # deterministic in the seed; another seed orders the contexts differently
    assert loo_tasks(demos, 3, seed=7) == tasks
    assert loo_tasks(demos, 3, seed=8) != tasks


def test_task_loss_is_on_the_held_out_answer_only(splits, tiny_model):
    _model, tok = tiny_model
    demos = splits["train"][:3]
    context, held = loo_tasks(demos, 1, seed=0)[0]
    enc = Encoder("answer", tok, bos_prefix(tok))(held, context)
    scored = [t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE]
    assert tok.decode(scored[:-1]) == target(held, "answer")
    assert scored[-1] == tok.eos_token_id
    assert tok.decode(enc["input_ids"]).count("Question:") == len(demos)  # 2 context + held


def test_checksum_sees_a_changed_weight(tiny_model):
    import copy

    import torch

    model, _tok = tiny_model
    other = copy.deepcopy(model)
    assert weights_checksum(other) == weights_checksum(model)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    assert weights_checksum(other) != weights_checksum(model)


def test_adapter_trains_a_copy_and_the_base_is_untouched(splits, tiny_model):
    model, tok = tiny_model
    before = weights_checksum(model)
    adapted, record = train_adapter(model, tok, splits["train"][:4], "answer", CFG, seed=0)
    assert weights_checksum(model) == before
    assert weights_checksum(adapted) != before  # the adapter did change the copy's weights
    assert not any("lora_" in n for n, _ in adapted.named_parameters())  # merged, unloaded
    assert record["tasks"] == 4 * CFG.permutations and record["flops"] > 0
    again, _ = train_adapter(model, tok, splits["train"][:4], "answer", CFG, seed=0)
    assert weights_checksum(again) == weights_checksum(adapted)  # deterministic


@pytest.mark.parametrize("per_query", [False, True])
def test_split_adapter_is_discarded_and_compute_counted_per_query(splits, tiny_model, per_query):
    model, tok = tiny_model
    lm = LM(model, tok, batch_size=4, progress=False)
    queries = splits["test"][:3]
    spec = PromptSpec("answer", tuple(splits["train"][:4]))
    cfg = CFG.model_copy(update={"per_query": per_query})
    before = weights_checksum(model)
    tokens = lm.counts["tokens"]
    preds, m = evaluate_split_ttt(lm, queries, spec, cfg, seed=0, max_new_tokens=3)
    assert weights_checksum(model) == before  # the adapter went with its split
    assert [p["id"] for p in preds] == [q.id for q in queries]
    assert m["ttt_adapters"] == (3 if per_query else 1)
    assert all(p["ttt_flops"] > 0 for p in preds)
    assert sum(p["ttt_flops"] for p in preds) == pytest.approx(m["ttt_flops"])
    assert lm.counts["tokens"] > tokens  # the adapted model's forwards are counted


def test_a_query_among_the_demos_is_refused(splits, tiny_model):
    model, tok = tiny_model
    lm = LM(model, tok, batch_size=4, progress=False)
    spec = PromptSpec("answer", tuple(splits["train"][:3]))
    with pytest.raises(LabError, match="queries among"):
        evaluate_split_ttt(lm, splits["train"][2:4], spec, CFG, seed=0, max_new_tokens=3)
