#!/usr/bin/env bash
# Reproduce Jin & Rinard 2020, Tables 1 and 2 (CIFAR-10), with the paper's settings, ending in
# the report beside the published rows.
#
#   bash scripts/reproduce_paper.sh --data-dir data            # data/cifar-10-batches-py/, CUDA device
#   bash scripts/reproduce_paper.sh --data-dir data --jobs 8 --out runs/paper
#   bash scripts/reproduce_paper.sh --smoke                    # every step on tiny synthetic data, < 2 min on 2 cores
#
# Table 1: `small` (the verification net): exact MILP verified / PGD-20x10 / clean accuracy on the
#          10,000 test images at eps 8/255 (120 s per input, as the paper); `large`
#          (PreActResNet18): PGD / clean, and the two ablations (intrinsic-only, hamming-only).
# Table 2: `large`: AutoAttack+ (the full AA+ the paper used) at L2 0.5 and L-inf 8/255, and
#          the Wasserstein attack at 0.1.
# Settings (Appendix B, the presets of `mr-train small|large` on cifar10): 100 epochs, SGD momentum
# 0.9, weight decay 5e-4, LR 0 -> 0.1 (40%) -> 0.005 (80%) -> 0, eps 2/255 -> 8/255 over 10%-35%,
# gamma_I 0.4 / 0.8 and gamma_H 9000 / 2400 (small / large), both x10 over 20%-80%, alpha 8.
# Every step resumes: a finished training run is kept, decided inputs are skipped on a rerun.
#
# --smoke runs exactly the same steps on a few synthetic images in the official CIFAR-10 format
# (written to <out>/data/cifar-10-batches-py/: latin-1 pickles, uint8 N x 3072 CHW + labels),
# with 1 epoch, a handful of inputs and cut-down attacks. Its numbers mean nothing; it checks
# that the pipeline runs end to end (tests/test_reproduce_smoke.py runs it).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=""
OUT=""
DEVICE=cuda
JOBS=8
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) DATA=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "reproduce_paper.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ -x .venv/bin/python ] && export PATH="$PWD/.venv/bin:$PATH"
PY=$(command -v python)
step() { echo; echo "== [${SECONDS}s] $*"; }

if [ "$SMOKE" = 1 ]; then
    OUT=${OUT:-runs/paper_smoke}
    DATA=$OUT/data
    DEVICE=cpu
    JOBS=1
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    mkdir -p "$DATA"
    step "smoke: writing synthetic CIFAR-10 files to $DATA/cifar-10-batches-py (numbers below mean nothing)"
    "$PY" - "$DATA" <<'EOF'
import pickle, sys
from pathlib import Path
import numpy as np

folder = Path(sys.argv[1]) / "cifar-10-batches-py"
folder.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 8)]:
    # the official layout: a latin-1 pickle of a dict with uint8 'data' (N x 3072, channel-major) and 'labels'
    entry = {"batch_label": name, "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             "labels": [int(v) for v in rng.integers(0, 10, n)], "filenames": [f"{name}_{i}.png" for i in range(n)]}
    with open(folder / name, "wb") as fh:
        pickle.dump(entry, fh, protocol=2)
EOF
    # 1 epoch, tiny batches; verification and attacks on a few inputs, attacks cut down
    TRAIN=(--epochs 1 --batch-size 10 --device cpu --threads 1 --quiet)
    VERIFY=(--n 2 --timeout 2 --jobs 1)
    PGD=(--n 4 --pgd-steps 2 --pgd-restarts 1)
    AA=(--n 2 --autoattack-iters 2 --autoattack-queries 5 --batch-size 2)
    WASS=(--n 2 --wasserstein-iterations 2 --wasserstein-sinkhorn-iters 5)
else
    if [ -z "$DATA" ]; then
        echo "reproduce_paper.sh: --data-dir DIR is required (DIR/cifar-10-batches-py/ from cifar-10-python.tar.gz), or --smoke" >&2
        exit 2
    fi
    OUT=${OUT:-runs/paper}
    # the paper's settings: the presets' defaults (100 epochs ...), all 10,000 test inputs
    TRAIN=(--device "$DEVICE" --quiet)
    VERIFY=(--n 10000 --timeout 120 --jobs "$JOBS")            # Appendix B: MIP verifier, 120 s, 8 cores
    PGD=(--pgd-steps 20 --pgd-restarts 10 --pgd-step-size 2/255 --device "$DEVICE")   # 20 steps x 10 restarts, step 2/255
    AA=(--device "$DEVICE")                                     # the full AA+ (pyautoattack, version plus)
    WASS=(--device "$DEVICE")                                   # Wong et al.: 400 iterations, radius grown x1.17
fi
mkdir -p "$OUT"
DB=$OUT/results.sqlite
D=(--data-dir "$DATA")
t0=$(date +%s)

train() {  # train NAME METHOD: resumable, a finished run is kept as it is
    local ckpt=$OUT/$1_cifar10_$2.pt resume=()
    [ -f "$ckpt" ] && resume=(--resume)
    step "mr-train $1 --method $2 (cifar10)"
    mr-train "$1" --dataset cifar10 "${D[@]}" --method "$2" --out "$ckpt" "${TRAIN[@]}" "${resume[@]}" >/dev/null
}

# --- Table 1 ---------------------------------------------------------------------------------
train small mr
train large mr
train large intrinsic-only
train large hamming-only

step "Table 1, small: exact verification at 8/255"
mr-eval verify "$OUT/small_cifar10_mr.pt" --eps 8/255 "${D[@]}" --db "$DB" "${VERIFY[@]}"
step "Table 1, small: PGD-20x10 at 8/255"
mr-eval attack "$OUT/small_cifar10_mr.pt" --attack pgd --eps 8/255 "${D[@]}" --db "$DB" "${PGD[@]}"
for m in mr intrinsic-only hamming-only; do
    step "Table 1, large ($m): PGD-20x10 at 8/255"
    mr-eval attack "$OUT/large_cifar10_$m.pt" --attack pgd --eps 8/255 "${D[@]}" --db "$DB" "${PGD[@]}"
done

# --- Table 2 ---------------------------------------------------------------------------------
step "Table 2, large: AutoAttack+ L-inf 8/255"
mr-eval attack "$OUT/large_cifar10_mr.pt" --attack autoattack-plus --norm linf --eps 8/255 "${D[@]}" --db "$DB" "${AA[@]}"
step "Table 2, large: AutoAttack+ L2 0.5"
mr-eval attack "$OUT/large_cifar10_mr.pt" --attack autoattack-plus --norm l2 --eps 0.5 "${D[@]}" --db "$DB" "${AA[@]}"
step "Table 2, large: Wasserstein 0.1"
mr-eval attack "$OUT/large_cifar10_mr.pt" --attack wasserstein --eps 0.1 "${D[@]}" --db "$DB" "${WASS[@]}"

# --- the report, beside the published rows --------------------------------------------------
step "report: Tables 1-2 beside the paper's rows"
[ "$SMOKE" = 1 ] && echo "(smoke run on synthetic images: the figures below are meaningless)"
mr-eval report --db "$DB" --dataset cifar10
mr-eval leaderboard --db "$DB" --out-dir "$OUT" >/dev/null
echo
echo "reproduce_paper.sh: done in $(( $(date +%s) - t0 )) s; results in $DB, leaderboard in $OUT/leaderboard.md"
