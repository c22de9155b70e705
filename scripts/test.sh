#!/usr/bin/env bash
# Install robustbench_mr with its test extras into .venv (idempotent) and run the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# pyproject.toml declares version ranges; constraints.txt pins the exact versions CI tests.
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
# torchattacks is a test-only cross-check for PGD; it pins requests~=2.25.1, which it never
# imports, so it is not in the `test` extra (resolving it would downgrade requests, urllib3, idna
# and chardet) and is installed here without its dependencies (it needs torch, numpy and scipy,
# installed above); its version comes from constraints.txt.
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt --no-deps torchattacks
.venv/bin/python -c "import robustbench_mr, torch, highspy, pyautoattack; print('robustbench_mr', robustbench_mr.__version__, '| torch', torch.__version__)"
exec .venv/bin/python -m pytest "$@"
