"""DeepSpeed ZeRO-3 in one process (train/zero3.py): the DeepSpeed config of each training run
filled from the recipe or refused, evaluation models loaded whole while accelerate's ZeRO-3
config is registered with transformers, and the resume keyword DeepSpeed's engine takes.
The 2-process runs (a ZeRO-3 study equal to one process, a resume round trip) are in
tests/study/test_multiprocess_study.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from accelerate.utils import DeepSpeedPlugin, DistributedType
from transformers.integrations import is_deepspeed_zero3_enabled

from lab.core.errors import LabError
from lab.core.recipe import TrainCfg
from lab.study.models import load_model
from train import zero3
from train.finetune import load_finetuned


def fake_accelerator(user_config: dict, processes: int = 2) -> SimpleNamespace:
    """What `configure` reads of an Accelerator under DeepSpeed, with accelerate's own plugin."""
    plugin = DeepSpeedPlugin(hf_ds_config=user_config)
    return SimpleNamespace(
        distributed_type=DistributedType.DEEPSPEED,
        state=SimpleNamespace(deepspeed_plugin=plugin),
        num_processes=processes,
        gradient_accumulation_steps=1,
    )


AUTO = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_optimization": {"stage": 3},
}


def test_each_run_gets_its_recipe_values_not_the_first_runs():
    """Two cells with other accumulation, clipping and micro-batch: each run's config has its
    own (accelerate filled "auto" once, in place, at the first prepare)."""
    acc = fake_accelerator(AUTO)
    plugin = acc.state.deepspeed_plugin
    a = TrainCfg(batch_size=8, grad_accum=2, max_grad_norm=0.5)
    zero3.configure(acc, a, micro=2, precision="fp32")
    got = plugin.deepspeed_config
    assert got["gradient_accumulation_steps"] == 2 and got["gradient_clipping"] == 0.5
    assert got["train_micro_batch_size_per_gpu"] == 2 and got["train_batch_size"] == 8
    assert got["bf16"]["enabled"] is False and got["fp16"]["enabled"] is False
    assert got["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert acc.gradient_accumulation_steps == 2
    got["train_micro_batch_size_per_gpu"] = 99  # what accelerate's prepare may write
    b = TrainCfg(batch_size=4, grad_accum=1, max_grad_norm=2.0)
    zero3.configure(acc, b, micro=2, precision="bf16")
    got = plugin.deepspeed_config
    assert got is plugin.hf_ds_config.config  # accelerate keeps them one dict
    assert got["gradient_accumulation_steps"] == 1 and got["gradient_clipping"] == 2.0
    assert got["train_micro_batch_size_per_gpu"] == 2 and got["train_batch_size"] == 4
    assert got["bf16"]["enabled"] is True


@pytest.mark.parametrize(
    "key,value,needs",
    [
        ("gradient_accumulation_steps", 4, "train.grad_accum"),
        ("gradient_clipping", 1.0, "train.max_grad_norm"),
        ("train_micro_batch_size_per_gpu", 16, "train.batch_size"),
        ("bf16", {"enabled": True}, "precision"),
    ],
)
def test_a_user_value_that_contradicts_the_recipe_is_refused(key, value, needs):
    acc = fake_accelerator({**AUTO, key: value})
    cfg = TrainCfg(batch_size=8, grad_accum=2, max_grad_norm=0.5)
    with pytest.raises(LabError) as e:
        zero3.configure(acc, cfg, micro=2, precision="fp32")
    msg = str(e.value)
    assert "\n" not in msg and needs in msg and '"auto"' in msg
    with pytest.raises(LabError):  # the study's check, before anything is written
        zero3.check(acc, [cfg], "fp32")


def test_a_user_value_equal_to_the_recipes_is_kept():
    acc = fake_accelerator({**AUTO, "gradient_clipping": 0.5, "gradient_accumulation_steps": 2})
    zero3.configure(acc, TrainCfg(batch_size=8, grad_accum=2, max_grad_norm=0.5), 2, "fp32")
    assert acc.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] == 0.5


def test_not_under_deepspeed_nothing_changes():
    acc = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU)
    assert zero3.configure(acc, TrainCfg(), 4, "fp32") is None
    assert zero3.load_state_kwargs(acc) == {"strict": False}


def test_deepspeeds_engine_gets_its_own_strictness_keyword():
    """DeepSpeed's engine.load_checkpoint takes load_module_strict, not strict (TypeError)."""
    import inspect

    from deepspeed.runtime.engine import DeepSpeedEngine

    acc = fake_accelerator(AUTO)
    kwargs = zero3.load_state_kwargs(acc)
    assert kwargs == {"load_module_strict": False}
    assert set(kwargs) <= set(inspect.signature(DeepSpeedEngine.load_checkpoint).parameters)


@pytest.fixture
def zero3_registered():
    """accelerate's ZeRO-3 config registered with transformers, as `Accelerator()` leaves it
    under accelerate_config_zero3.yaml (whatever zero3_init_flag says)."""
    plugin = DeepSpeedPlugin(hf_ds_config=dict(AUTO), zero3_init_flag=False)
    plugin.set_deepspeed_weakref()
    assert is_deepspeed_zero3_enabled()
    yield plugin
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def test_evaluation_models_load_whole_while_zero3_is_registered(
    zero3_registered, tiny_path, tmp_path
):
    """The base model and a fine-tuned checkpoint load with every weight in this process
    (a partitioned load needs a process group and leaves empty tensors); the registration
    is restored afterwards, for the training model's load."""
    model, _ = load_model(tiny_path)
    assert is_deepspeed_zero3_enabled()
    assert all(p.numel() > 0 and not hasattr(p, "ds_id") for p in model.parameters())
    model.save_pretrained(tmp_path / "full")
    _.save_pretrained(tmp_path / "full")
    ft, _ = load_finetuned(tiny_path, str(tmp_path / "full"), "full")
    assert all(p.numel() > 0 and not hasattr(p, "ds_id") for p in ft.parameters())
    assert is_deepspeed_zero3_enabled()


def test_partitioned_parameters_are_counted_in_full():
    """Under ZeRO-3 a parameter's tensor is this process's partition (often empty):
    parameter counts and FLOPs read ds_numel."""
    import torch

    from lab.core.compute import numel

    p = torch.nn.Parameter(torch.empty(0))
    p.ds_numel = 4096  # what deepspeed.zero sets on a partitioned parameter
    assert numel(p) == 4096 and numel(torch.nn.Parameter(torch.ones(3, 2))) == 6
