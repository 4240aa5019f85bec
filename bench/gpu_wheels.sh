#!/usr/bin/env bash
# Download the wheels bench/gpu_check.sh installs on the GPU machine (Python 3.12, no
# network, no index; torch, transformers, peft and accelerate are there), the versions this
# lab is tested with. Into .whl/ (gitignored; never committed).
#   bash bench/gpu_wheels.sh           # .whl/: pydantic and its dependencies (the GPU check);
#                                      # for `gpu_check.sh --sharded`, DeepSpeed built into a pure-Python
#                                      # wheel without its compiled ops (DS_BUILD_OPS=0; its setup.py
#                                      # imports this machine's torch) and its small dependencies
#   bash bench/gpu_wheels.sh compare   # also .whl/compare/: TRL, lm-evaluation-harness and
#                                      # their dependencies (bench/gpu_compare.py), 48 wheels, 131 MB
# The compare set was resolved with `pip install --dry-run --report` against the lab's
# environment (constraints.txt), plus `datasets` and its dependencies in case the GPU
# machine lacks them. Three of lm-eval's dependencies are sdists only (rouge_score,
# sqlitedict, word2number: pure Python): they are built into wheels here (`pip wheel`).
set -eu
cd "$(dirname "$0")/.."
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
get() {  # get DIR SPEC...: binary wheels for the GPU machine, else a wheel built from the sdist
  local dir=$1
  shift
  mkdir -p "$dir"
  for spec in "$@"; do
    python3 -m pip download --no-deps "${PLATFORM[@]}" -d "$dir" "$spec" ||
      python3 -m pip wheel --no-deps -w "$dir" "$spec"
  done
}
get .whl pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5 typing_extensions==4.16.0
get .whl hjson==3.1.0 msgpack==1.2.4 einops==0.8.2 py-cpuinfo==9.0.0 ninja==1.13.2
PY=${PYTHON:-.venv/bin/python}  # has torch (deepspeed's setup.py imports it)
DS_BUILD_OPS=0 "$PY" -m pip wheel --no-deps --no-build-isolation -w .whl deepspeed==0.19.8
if [ "${1:-}" = compare ]; then
  get .whl/compare trl==1.16.0 lm_eval==0.4.13 evaluate==0.4.6 rouge_score==0.1.2 \
    sacrebleu==2.6.0 scikit-learn==1.9.1 more-itertools==11.2.1 pytablewriter==1.2.1 \
    sqlitedict==2.1.0 word2number==1.1 DataProperty==1.1.1 joblib==1.6.0 mbstrdecoder==1.1.5 \
    narwhals==2.29.0 pathvalidate==3.3.1 scipy==1.17.1 six==1.17.0 tabledata==1.3.5 \
    tabulate==0.10.0 tcolorpy==0.1.7 threadpoolctl==3.8.0 python-dateutil==2.9.0.post0 \
    absl-py==2.5.1 colorama==0.4.6 lxml==6.2.1 nltk==3.10.4 portalocker==4.4.2 \
    aiohttp==3.14.5 chardet==6.0.0.post1 cloudpickle==3.1.3 pytz==2026.6 typepy==1.3.5 \
    defusedxml==0.7.1 aiohappyeyeballs==2.7.1 aiosignal==1.4.0 attrs==26.1.0 \
    frozenlist==1.8.0 multidict==7.2.1 propcache==0.5.4 yarl==1.25.1 \
    datasets==5.2.0 pyarrow==26.0.1 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 \
    pandas==3.1.1 fsspec==2026.9.0 tzdata==2026.6
fi
ls -l .whl .whl/compare 2>/dev/null
