#!/usr/bin/env bash
# GPU check (issue 14), under 8 minutes on one GPU: img/s of clean evaluation of
# timm:vit_base_patch16_224 vs timm's own eval loop, corruption throughput, PGD-10 vs bare,
# an end-to-end run with --amp bf16; writes the "GPU" section of BENCHMARKS.md.
#
#   benchmarks/gpu_check.sh                        # on a machine with a GPU
#   benchmarks/gpu_check.sh --small                # CPU, small sizes (CI); or PROBE_GPU_CHECK_SMALL=1
#   benchmarks/gpu_check.sh --out /tmp/B.md --device cuda:1
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then PYTHON=python3; fi
exec timeout 480 "$PYTHON" -m benchmarks.gpu_check "$@"
