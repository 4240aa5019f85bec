#!/usr/bin/env bash
# The GPU check: one prepared run on a single H100/H200, no network, no package index.
#   bash bench/gpu_check.sh 2>&1 | tee $OUT/log      (GPU; figures -> bench/RESULTS.md)
#   bash bench/gpu_check.sh --cpu                    (the tiny model on the CPU; CI)
#   bash bench/gpu_check.sh compare [ARGS]           (bench/gpu_compare.py: the lab vs HF
#                                                     Trainer, TRL, lm-eval; its own call)
#   bash bench/gpu_check.sh compare --smoke          (its tiny CPU run)
#   bash bench/gpu_check.sh --sharded                (ZeRO-3, FSDP LoRA, FSDP resume:
#                                                     bench/gpu_sharded.py; needs DeepSpeed)
# Needs torch, transformers, peft, accelerate, numpy, pyyaml, tqdm, jinja2, matplotlib; the
# small wheels the lab needs beyond those (pydantic and its three dependencies) are
# installed from .whl/ when it exists (bench/gpu_wheels.sh fills it); `compare` also
# installs .whl/compare/ (TRL, lm-eval and their dependencies: `bench/gpu_wheels.sh
# compare`) when trl or lm_eval is missing. Writes a summary table to stdout and
# $OUT/gpu_check.json ($OUT/gpu_compare.json) when $OUT is set. At most 8 minutes (killed at
# 480 s; `compare`: 540 s).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
wheels() {  # wheels DIR: install DIR/*.whl into /tmp/site (no index, no dependencies)
  compgen -G "$1/*.whl" >/dev/null &&
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$1"/*.whl &&
    export PYTHONPATH=/tmp/site:$PYTHONPATH
}
if ! "$PY" -c "import pydantic" 2>/dev/null; then
  wheels .whl
fi
# DeepSpeed for --sharded: the wheel bench/gpu_wheels.sh builds without compiled ops (pure
# Python; ops are JIT-built if ever used) and its small dependencies, from .whl/.
if [[ " $* " == *" --sharded "* ]] && ! "$PY" -c "import deepspeed" 2>/dev/null &&
   compgen -G ".whl/deepspeed-*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-ds \
    .whl/deepspeed-*.whl .whl/hjson-*.whl .whl/ninja-*.whl .whl/msgpack-*.whl \
    .whl/einops-*.whl .whl/py_cpuinfo-*.whl &&
    export PYTHONPATH=/tmp/site-ds:$PYTHONPATH DS_BUILD_OPS=0
fi
export TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_DATASETS_OFFLINE=1
if [ "${1:-}" = compare ]; then
  shift
  if ! "$PY" -c "import trl, lm_eval" 2>/dev/null; then
    wheels .whl/compare
  fi
  exec timeout -k 10 540 "$PY" bench/gpu_compare.py "$@"
fi
exec timeout -k 10 480 "$PY" bench/gpu_check.py "$@"
