#!/usr/bin/env bash
# The main job on the embedded digits data set, from a fresh clone:
#   install into .venv -> train the paper's `small` model with manifold regularization ->
#   verify it exactly (MILP) at eps 8/255 -> attack it (PGD, AutoAttack, Wasserstein) -> report.
# Idempotent: a finished training run is reused and decided inputs are skipped on a rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
export PATH="$PWD/.venv/bin:$PATH"

OUT=${QUICKSTART_DIR:-runs/quickstart}
N=${QUICKSTART_N:-100}          # test inputs to verify and attack (digits has 297)
CKPT=$OUT/small_digits_mr.pt
DB=$OUT/results.sqlite
mkdir -p "$OUT"

# gamma_H 50 instead of the CIFAR-10 preset 9000: digits' layers are 16-32x smaller and the
# layer-size-normalized Hamming term would otherwise switch off every ReLU (docs: training).
RESUME=""
[ -f "$CKPT" ] && RESUME="--resume"   # continues a killed run; a finished one is kept as is
mr-train small --dataset digits --gamma-h 50 --seed 0 --out "$CKPT" $RESUME
mr-eval verify "$CKPT" --eps 8/255 --n "$N" --timeout 60 --db "$DB"
# 50 Sinkhorn iterations per projection instead of the reference 400: ~2 min instead of 15+ on
# 2 CPU cores for the Wasserstein attack; the radius schedule and steps are the paper's.
mr-eval attack "$CKPT" --attack all --eps 8/255 --n "$N" --db "$DB" --wasserstein-sinkhorn-iters 50
mr-eval report --db "$DB"
# one table: verified, PGD, AutoAttack, Wasserstein and clean accuracy of the digits model
mr-eval leaderboard --db "$DB" --out-dir "$OUT"
