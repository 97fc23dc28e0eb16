#!/usr/bin/env bash
# The GPU check: CUDA training with and without AMP (softmax, triplet, Magnet on CIFAR-10;
# images/s and test errors against CPU runs and seed noise) and exact evaluation at 1M
# references, with a table at the end. Sized to finish in about 8 minutes on one GPU; every
# part is in benchmarks/gpu_check.py (its docstring says what is compared).
#
#   benchmarks/gpu_check.sh                               # on a GPU machine, from the repo root
#   benchmarks/gpu_check.sh --data-root /data --out gpu_check_results
#   benchmarks/gpu_check.sh --device cpu --tiny           # the whole script on a CPU (tests)
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3), MAGNETDML_DATA
# (the data root, default ../shared/data), GPU_CHECK_LIMIT (seconds before the check is
# stopped, default 480).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
args=("$@")
if [[ -n "${MAGNETDML_DATA:-}" ]]; then args=(--data-root "$MAGNETDML_DATA" "${args[@]}"); fi
exec timeout "${GPU_CHECK_LIMIT:-480}" "$python" "$here/gpu_check.py" "${args[@]}"
