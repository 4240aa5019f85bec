"""The study's numeric precision: the recipe's `precision: auto | bf16 | fp32`, resolved once.

- `bf16`: models are loaded for evaluation in bfloat16 (weights, activations, KV cache;
  log-probabilities are still taken in fp32). Training keeps fp32 master weights and
  optimizer states and runs the forward (and so the backward) under bf16 autocast (the
  lab's own `torch.autocast`; an accelerate config with `mixed_precision: bf16` adds the
  same, and under FSDP its bf16 parameter policy over fp32 shards). LoRA: the frozen base is
  loaded in bf16, the trainable adapter stays fp32 (peft upcasts adapter weights of a
  half-precision base), its optimizer states fp32.
- `fp32`: everything in float32 (the lab's behaviour before the setting existed).
- `auto`: bf16 where the hardware runs it fast: a CUDA GPU with bf16 support, or a CPU with
  AVX-512 BF16 or AMX (flags `avx512_bf16` / `amx_bf16` in /proc/cpuinfo); fp32 elsewhere.
  `--smoke` pins fp32 (tests and CI stay deterministic on any CPU) unless the recipe's
  `smoke:` section says otherwise.

Every arm of a study runs at the one resolved precision, recorded in study.json and in every
results row (`precision`).

Evaluation loads its models at `eval.precision` (`for_eval`): `study` (the default) is the
precision above; `bf16` or `fp32` set it apart from training's. Whichever it is, `eval.invariant`
(default true, eval/invariant.py) makes every score independent of batch size, grouping and
process count; the README's "Crashes, resume and reproducibility" gives the costs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

PRECISIONS = ("auto", "bf16", "fp32")
EVAL_PRECISIONS = ("study", "bf16", "fp32")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first processor ('' where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    return bool(cpu_flags() & set(CPU_BF16_FLAGS))


def cuda_bf16() -> bool:
    """Whether a CUDA GPU that runs bf16 natively is visible to this process."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve(setting: str, use_cpu: bool | None = None) -> str:
    """'bf16' or 'fp32' for a recipe's `precision` on this machine. `use_cpu`: the run is
    on the CPU even if a GPU is visible (None: read ACCELERATE_USE_CPU as accelerate does)."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {setting!r}")
    if setting != "auto":
        return setting
    if use_cpu is None:
        from accelerate.utils import parse_flag_from_env

        use_cpu = parse_flag_from_env("ACCELERATE_USE_CPU")
    if not use_cpu and cuda_bf16():
        return "bf16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def for_eval(setting: str, study: str) -> str:
    """'bf16' or 'fp32': the precision evaluation loads models at, for a recipe's
    `eval.precision` and the study's resolved precision."""
    if setting not in EVAL_PRECISIONS:
        raise ValueError(f"eval.precision must be one of {EVAL_PRECISIONS}, got {setting!r}")
    return study if setting == "study" else setting


def dtype(precision: str) -> Any:
    """The torch dtype models are loaded in for evaluation (and LoRA's frozen base)."""
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]


def autocast(precision: str, device_type: str) -> Any:
    """The context a training forward runs in: bf16 autocast at 'bf16' (fp32 master weights
    stay fp32), nothing at 'fp32'. The lab's own, so that one process can run studies of
    either precision (accelerate's mixed precision is fixed once per process)."""
    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def check_launch(accelerate_mixed_precision: str, precision: str) -> None:
    """A launch config whose `mixed_precision` contradicts the recipe's precision is a
    user's mistake: 'no' is always fine (the lab autocasts itself), 'bf16' only at bf16."""
    if accelerate_mixed_precision not in ("no", "bf16" if precision == "bf16" else "no"):
        from lab.core.errors import LabError

        raise LabError(
            f"the accelerate config runs mixed_precision={accelerate_mixed_precision} but the "
            f"study's precision is {precision}; set `precision: bf16` in the recipe or "
            "mixed_precision: 'no' in the accelerate config (the lab autocasts itself)"
        )
