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
