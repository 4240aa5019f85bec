"""The real default model (SmolLM2-135M-Instruct from PyPI): minutes on CPU. `pytest -m slow`."""

import pytest

from eval.evaluate import PromptSpec, evaluate_split
from eval.lm import LM
from lab.models import load_model, resolve_model
from lab.recipe import TaskCfg, TrainCfg
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
