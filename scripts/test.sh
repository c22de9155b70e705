#!/usr/bin/env bash
# Install robustbench_mr with its test extras into .venv (idempotent) and run the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# torchattacks is a test-only cross-check for PGD; it pins an old `requests` it never imports,
# so it is installed without its dependencies (it needs torch, numpy and scipy, present above).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps torchattacks==3.5.1
.venv/bin/python -c "import robustbench_mr, torch, highspy, pyautoattack; print('robustbench_mr', robustbench_mr.__version__, '| torch', torch.__version__)"
exec .venv/bin/python -m pytest "$@"
