#!/usr/bin/env bash
# GPU benchmark: resnet50 at 224x224, bf16, channels-last, cnnkit loader from a warm cache vs
# synthetic tensors on the GPU. Prints a table and writes bench/out/gpu.md (see bench/perf/gpu_bench.py).
#
#   bench/gpu.sh                 # on a machine with an NVIDIA GPU; extra arguments go to gpu_bench.py
#   bench/gpu.sh --quick         # anywhere: the same code path on the CPU, tiny
#   PYTHON=/path/to/python bench/gpu.sh   # use this interpreter (CUDA torch + cnnkit's dependencies)
#
# Python: $PYTHON if set; else bench/.venv-gpu if it exists; else a python3 whose torch sees
# CUDA; else it creates bench/.venv-gpu with `pip install -e .` (PyPI's default Linux torch
# wheel is the CUDA build; NOT constraints.txt, which pins the CPU wheel). One run stays
# under 8 minutes (hard limit: GPU_BENCH_TIMEOUT seconds, default 480).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv-gpu
has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
quick=0
for a in "$@"; do [[ "$a" == "--quick" ]] && quick=1; done

if [[ $quick == 0 && -z "${PYTHON:-}" ]] && ! command -v nvidia-smi >/dev/null; then
  # Checked before any venv is made: no driver, no point downloading a CUDA torch.
  echo "gpu.sh: no nvidia-smi on PATH: this machine has no NVIDIA GPU/driver. Nothing was installed." >&2
  echo "        Use --quick to test the script on the CPU." >&2
  exit 2
fi

if [[ -n "${PYTHON:-}" ]]; then
  py=$PYTHON
elif [[ -x $VENV/bin/python ]]; then
  py=$VENV/bin/python
elif has_cuda python3 || { [[ $quick == 1 ]] && [[ -x .venv/bin/python ]]; }; then
  py=$( [[ $quick == 1 && -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )
else
  echo "gpu.sh: creating $VENV (pip install -e . with PyPI's CUDA torch)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -e .
  py=$VENV/bin/python
fi

if [[ $quick == 0 ]] && ! has_cuda "$py"; then
  echo "gpu.sh: $py has no CUDA GPU (torch.cuda.is_available() is False); needs an NVIDIA GPU + driver." >&2
  echo "        Use --quick to test the script on the CPU." >&2
  exit 2
fi
echo "gpu.sh: using $py" >&2
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${GPU_BENCH_TIMEOUT:-480}" "$py" bench/perf/gpu_bench.py "$@"
