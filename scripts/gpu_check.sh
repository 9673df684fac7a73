#!/usr/bin/env bash
# The device check, one command for a machine with a GPU (about 8 minutes on one GPU): the tests
# marked gpu, a short antlr-train device=cuda per task (data from $ANTLR_EXP_DATA) and the bench
# rows (Triton fused, Triton per layer, the PyTorch CUDA path, snntorch), written as JSON and a
# markdown table into OUTDIR; exit status 1 where a test or a run failed. Without CUDA it runs its
# dry-run parts and says what it skipped. Details: benchmarks/gpu_check.py.
#
# Usage: scripts/gpu_check.sh OUTDIR        (the Python of the installed package: $PYTHON, else python)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m benchmarks.gpu_check "$@"
