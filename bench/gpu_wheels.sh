#!/usr/bin/env bash
# Download the wheels bench/gpu_check.sh installs on the GPU machine (Python 3.12, no
# network, no index; torch, transformers, peft and accelerate are there): pydantic and its
# dependencies, the versions this lab is tested with. Into .whl/ (gitignored).
#   bash bench/gpu_wheels.sh
set -eu
cd "$(dirname "$0")/.."
mkdir -p .whl
for spec in pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5 typing_extensions==4.16.0; do
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$spec"
done
ls -l .whl
