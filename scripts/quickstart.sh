#!/usr/bin/env bash
# Install robustbench_mr into .venv and run the main job on the embedded digits data:
# train the small model with manifold regularization, verify it exactly, attack it, report.
# Idempotent: a finished training run is not repeated and decided inputs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
export PATH="$PWD/.venv/bin:$PATH"
OUT=runs/quickstart
mkdir -p "$OUT"
echo "== robustbench_mr quickstart: checkpoint and results in $OUT/" >&2
mr-eval --help >/dev/null
