#!/usr/bin/env bash
# On a machine with a CUDA GPU, in under 5 minutes: the GPU-marked tests (cuDNN against the CPU, a bf16
# training on the GPU, pinned-memory loaders, checkpoints loaded onto the GPU) and the char LM throughput
# benchmark at a GPU size through the Lightning module; the figures go to metrics/bench_gpu.json.
#   benchmarks/gpu_check.sh            (after ./run install, or with the project's .venv in place)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check: no CUDA device (torch " + torch.__version__ + ")")'
"$PY" -m pytest -m gpu -q -p no:cacheprovider
"$PY" benchmarks/bench_charlm.py --batch-size 256 --hidden-size 1024 --steps 40 --warmup 10 --rounds 2 \
  --precisions 32-true,bf16-mixed --no-compare --equal-time 0 --out metrics/bench_gpu.json
