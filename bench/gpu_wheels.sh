#!/usr/bin/env bash
# Download the wheels bench/gpu_check.sh installs on the GPU machine (Python 3.12, no
# network, no index; torch, transformers, peft and accelerate are there): pydantic and its
# dependencies, the versions this lab is tested with; for `gpu_check.sh --sharded`, DeepSpeed
# built into a pure-Python wheel without its compiled ops (DS_BUILD_OPS=0; built against this
# machine's torch: its setup.py imports torch) and its small dependencies. Into .whl/ (gitignored).
#   bash bench/gpu_wheels.sh
set -eu
cd "$(dirname "$0")/.."
mkdir -p .whl
for spec in pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5 typing_extensions==4.16.0; do
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$spec"
done
for spec in hjson==3.1.0 msgpack==1.2.4 einops==0.8.2 py-cpuinfo==9.0.0 ninja==1.13.2; do
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$spec"
done
PY=${PYTHON:-.venv/bin/python}  # has torch (deepspeed's setup.py imports it)
DS_BUILD_OPS=0 "$PY" -m pip wheel --no-deps --no-build-isolation -w .whl deepspeed==0.19.8
ls -l .whl
