"""The real default model (SmolLM2-135M-Instruct from PyPI): minutes on CPU. `pytest -m slow`."""

import pytest

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from lab.core.recipe import TaskCfg, TrainCfg
from lab.study.models import load_model, resolve_model
from lab.tasks import build_task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real():
    r = resolve_model("smollm2-135m-instruct")
    model, tok = load_model(r.path)
    splits = build_task(TaskCfg(n_train=64, n_dev=8, n_test=6, params={"ops": "+-"}))
    return r, model, tok, splits


def test_real_model_scores_do_not_depend_on_batch_size(real):
    _, model, tok, splits = real
    spec = PromptSpec("cot", tuple(splits["train"][:4]))
    out = {}
    for bs in (1, 6):
        preds, _ = evaluate_split(LM(model, tok, bs, progress=False), splits["test"], spec, 40)
        out[bs] = [(p["generation"], round(p["gold_logprob"], 3)) for p in preds]
    assert out[1] == out[6]
    assert any(ch.isdigit() for g, _ in out[1] for ch in g)


def test_real_model_lora_changes_outputs(real, tmp_path):
    from train.finetune import finetune, load_finetuned

    r, model, tok, splits = real
    cfg = TrainCfg(steps=3, batch_size=4, lr=2e-3, warmup_ratio=0.0)
    res = finetune(r.path, splits["train"][:12], "answer", "lora", cfg, 0, tmp_path, progress=False)
    assert res.losses[-1] < res.losses[0] * 1.5
    ft, ft_tok = load_finetuned(r.path, res.checkpoint, "lora")
    x = tok("Question: Start with 5. Add 3. What is the result?\nAnswer:", return_tensors="pt")
    assert (ft(**x).logits - model(**x).logits).abs().max() > 1e-3


def test_real_model_verbalizers_take_the_one_pass_path_with_the_same_scores(real):
    """SmolLM2 encodes " Yes" / " No" as one token each: evaluate_choices scores both from one
    forward pass per example; the numbers equal `loglikelihood`'s and do not depend on the
    batch size."""
    _, model, tok, _ = real
    nli = build_task(TaskCfg(name="mnli_hans", n_train=16, n_dev=2, n_test=6))
    assert all(len(tok(c, add_special_tokens=False).input_ids) == 1 for c in (" Yes", " No"))
    spec = PromptSpec("answer", tuple(nli["train"][:4]))
    exs = nli["test"] + nli["ood_hans"]
    ref = LM(model, tok, 4, progress=False).loglikelihood(
        [(spec.prefix, ex.prompt, c) for ex in exs for c in ex.choices]
    )
    for bs in (1, 7):
        preds, _ = evaluate_split(LM(model, tok, bs, progress=False), exs, spec, 4)
        got = [lp for p in preds for lp in p["choice_logprobs"]]
        assert got == pytest.approx([lp for lp, _g, _n in ref], abs=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_real_model_invariant_scores_and_generations_are_bit_identical(real, precision):
    """eval.invariant (the default, eval/invariant.py): SmolLM2's choice log-likelihoods after
    4 shared demos and its CoT generations are the same bits at batch 1, 7 and 32, at bf16 (what
    `precision: auto` picks on a CPU with native bf16) and at fp32. The fast kernels moved
    these log-likelihoods by up to 0.14 nats at bf16 between batch 1 and 32."""
    r, _, tok, splits = real
    model, _ = load_model(r.path, precision=precision)
    nli = build_task(TaskCfg(name="mnli_hans", n_train=16, n_dev=2, n_test=10))
    exs = nli["test"] + nli["ood_hans"][:6]
    choice_spec = PromptSpec("answer", tuple(nli["train"][:4]))
    ll = [(choice_spec.prefix, ex.prompt, c) for ex in exs for c in ex.choices]
    ll += [("", choice_spec.prefix + ex.prompt, " Maybe") for ex in exs[:3]]  # run whole
    cot = PromptSpec("cot", tuple(splits["train"][:4]))
    out = {}
    for bs in (1, 7, 32):
        lm = LM(model, tok, bs, progress=False, invariant=True)
        preds, _ = evaluate_split(lm, splits["test"], cot, 24)
        gens = [(p["generation"], p["gold_logprob"]) for p in preds]
        out[bs] = (lm.loglikelihood(ll), gens)
    assert out[1] == out[7] == out[32]
    assert len({s for s, _g, _n in out[1][0]}) > len(ll) // 2
