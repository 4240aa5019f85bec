"""DeepSpeed ZeRO-3 under the lab: which models load partitioned, and the DeepSpeed config of
each training run, filled from the recipe.

- Loading. accelerate registers its DeepSpeed config with transformers (`HfDeepSpeedConfig`)
  whatever `zero3_init_flag` says, and while it is registered every `from_pretrained`
  partitions the weights it loads over the processes (`deepspeed.zero.Init`). Evaluation
  shards the *examples* over the processes, each with the whole model, and nothing gathers a
  partitioned model's pieces: its first forward ran on empty weights ("Padding_idx must be
  within num_embeddings"), and its parameter counts read 0. So every evaluation model loads
  inside `whole_weights()` (the registration lifted for the load), and the training model
  loads partitioned only with `zero3_init_flag: true` (`training_load`): DeepSpeed
  partitions a whole model itself when it prepares it.
- Config. accelerate fills a DeepSpeed config's "auto" values once, at the first `prepare`,
  in place: the first cell then fixed the micro-batch for every later cell, and the
  accumulation steps and clipping came from accelerate's defaults, not the recipe
  (DeepSpeed steps and clips by its own config). `configure` rebuilds the config for each
  run from the user's (kept as first seen) and the recipe's values; a user value that
  contradicts the recipe is refused with one line (LabError: exit 2).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lab.core.errors import LabError
from lab.core.recipe import TrainCfg

_USER_CONFIG: dict[int, dict[str, Any]] = {}  # id(plugin) -> its config as first seen


def is_deepspeed(acc: Any) -> bool:
    from accelerate.utils import DistributedType

    return getattr(acc, "distributed_type", None) == DistributedType.DEEPSPEED


def _registration() -> Any:
    """The weak reference transformers keeps to the registered DeepSpeed config (or None).
    transformers has setters for it but no getter that returns the object itself."""
    from transformers.integrations import deepspeed as hf_deepspeed

    return hf_deepspeed._hf_deepspeed_config_weak_ref


@contextmanager
def whole_weights() -> Iterator[None]:
    """`from_pretrained` inside loads every weight whole in this process, even while a ZeRO-3
    config is registered with transformers; the registration is restored after."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = _registration()
    if ref is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = ref


@contextmanager
def training_load(acc: Any) -> Iterator[None]:
    """The training model's load: partitioned at load only under DeepSpeed with
    `zero3_init_flag: true` (for a model too big for one process's memory), else whole."""
    plugin = getattr(getattr(acc, "state", None), "deepspeed_plugin", None)
    if is_deepspeed(acc) and plugin is not None and plugin.zero3_init_flag:
        yield
    else:
        with whole_weights():
            yield


def _get(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def wanted(cfg: TrainCfg, micro: int, processes: int, precision: str) -> dict[str, Any]:
    """The DeepSpeed values one training run needs, by dotted key, and the recipe setting
    each comes from (for the refusal message)."""
    return {
        "gradient_accumulation_steps": (cfg.grad_accum, "train.grad_accum"),
        "gradient_clipping": (cfg.max_grad_norm, "train.max_grad_norm"),
        "train_micro_batch_size_per_gpu": (
            micro,
            "train.batch_size / (train.grad_accum x processes)",
        ),
        "train_batch_size": (micro * cfg.grad_accum * processes, "train.batch_size"),
        "bf16.enabled": (precision == "bf16", "precision"),
        "fp16.enabled": (False, "precision (the lab never trains in fp16)"),
        # the saved checkpoints are gathered from the partitions (accelerate.get_state_dict)
        "zero_optimization.stage3_gather_16bit_weights_on_model_save": (
            True,
            "the lab's saved checkpoints (set zero3_save_16bit_model: true)",
        ),
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, bool) or isinstance(a, bool):
        return str(a).lower() == str(b).lower()
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def _filled(acc: Any, cfg: TrainCfg, micro: int, precision: str) -> dict[str, Any]:
    """The user's config (as first seen) with one run's recipe values; LabError when the
    user's config sets one of them to another value (not "auto")."""
    plugin = acc.state.deepspeed_plugin
    user = _USER_CONFIG.setdefault(id(plugin), copy.deepcopy(plugin.deepspeed_config))
    config = copy.deepcopy(user)
    stage = _get(config, "zero_optimization.stage")
    for key, (value, source) in wanted(cfg, micro, acc.num_processes, precision).items():
        if key.startswith("zero_optimization.stage3") and stage != 3:
            continue
        have = _get(config, key)
        if have is not None and have != "auto" and not _same(have, value):
            raise LabError(
                f"the DeepSpeed config sets {key}={have} but the recipe needs {value} "
                f"(from {source}); remove it from the DeepSpeed/accelerate config or set it "
                '"auto": the lab fills it per cell from the recipe'
            )
        _set(config, key, value)
    return config


def check(acc: Any, cfgs: list[TrainCfg], precision: str) -> None:
    """Before a study writes anything: LabError if the user's DeepSpeed config contradicts
    the training settings of any of its fine-tuning arms (`cfgs`)."""
    if is_deepspeed(acc):
        for cfg in cfgs:
            _filled(acc, cfg, cfg.batch_size // (cfg.grad_accum * acc.num_processes), precision)


def configure(acc: Any, cfg: TrainCfg, micro: int, precision: str) -> dict[str, Any] | None:
    """Before `prepare` of one training run under DeepSpeed: the plugin's config rebuilt
    from the user's (as first seen) with the recipe's accumulation, clipping, micro-batch
    and precision; returns it (None when not under DeepSpeed). Raises LabError when the
    user's config sets one of them to another value (not "auto")."""
    if not is_deepspeed(acc):
        return None
    config = _filled(acc, cfg, micro, precision)
    plugin = acc.state.deepspeed_plugin
    plugin.deepspeed_config = config  # what accelerate's prepare reads ...
    plugin.hf_ds_config.config = config  # ... (the same dict, as accelerate keeps it)
    acc.gradient_accumulation_steps = cfg.grad_accum
    return config


def load_state_kwargs(acc: Any) -> dict[str, Any]:
    """`accelerator.load_state` keywords that load a LoRA run's state (which holds the
    trainable weights only): `strict=False` for torch modules; DeepSpeed's engine names it
    `load_module_strict`."""
    return {"load_module_strict": False} if is_deepspeed(acc) else {"strict": False}
