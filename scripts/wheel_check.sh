#!/usr/bin/env bash
# Build the wheel with `python -m build`, install it (not editable) into a fresh venv with the
# tested pins, and run the quickstart's report and leaderboard from outside the checkout, so
# that only the installed package (and its package data) can be used. By hand, ~1-2 min from
# the local package cache; the fast in-process part of this check runs in the test suite
# (tests/reports/test_packaging.py).
#   bash scripts/wheel_check.sh [results.sqlite]
# With no argument it reports on runs/quickstart/results.sqlite when that exists (the
# quickstart's own database), else on a small database it plants with the installed package
# (a real checkpoint, verify and attack rows at the quickstart's settings; no training).
# WHEEL_CHECK_DIR=DIR keeps the venv, wheel and outputs there (default: a new /tmp folder).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
WORK=${WHEEL_CHECK_DIR:-$(mktemp -d /tmp/wheel_check.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
DB=${1:-}
[ -z "$DB" ] && [ -f runs/quickstart/results.sqlite ] && DB=$ROOT/runs/quickstart/results.sqlite
[ -n "$DB" ] && DB=$(cd "$(dirname "$DB")" && pwd)/$(basename "$DB")

echo "== build (python -m build: sdist, then the wheel from the sdist) -> $WORK/dist"
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt build
rm -rf "$WORK/dist"
.venv/bin/python -m build --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/robustbench_mr-*.whl)
ls -l "$WORK"/dist
.venv/bin/python - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print("in the wheel:", *[n for n in names if "/reports/data/" in n])
sys.exit(0 if "robustbench_mr/reports/data/published.csv" in names else "published.csv is missing from the wheel")
PY

echo "== fresh venv, non-editable install with constraints.txt"
rm -rf "$WORK/venv"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt "$WHEEL"

cd "$WORK"  # away from the checkout: nothing can be imported from it
export PATH="$WORK/venv/bin:$PATH"
python - <<'PY'
import robustbench_mr, robustbench_mr.reports.published as p
print("robustbench_mr", robustbench_mr.__version__, "from", robustbench_mr.__file__)
assert "/venv/" in robustbench_mr.__file__, "imported from outside the fresh venv"
print("published.csv:", p.published_resource(), "->", len(p.load_published()), "rows")
PY
if [ -z "$DB" ]; then
    DB=$WORK/planted/results.sqlite
    python - "$DB" <<'PY'
import random, sys
from pathlib import Path
from robustbench_mr.checkpoint import file_sha256, metadata_for, model_kwargs, save_checkpoint
from robustbench_mr.models.registry import build_model
from robustbench_mr.results_db import ResultRow, ResultsDB

db_path = Path(sys.argv[1]); db_path.parent.mkdir(parents=True, exist_ok=True)
meta = metadata_for("small", "digits", {}, train_config={"method": "mr"})
ck = db_path.parent / "small_digits_mr.pt"
save_checkpoint(ck, build_model("small", **model_kwargs(meta)), meta)
sha, rng, rows = file_sha256(ck), random.Random(0), []
for i in range(100):
    y = rng.randrange(10); p = y if rng.random() < 0.95 else (y + 1) % 10
    r = rng.uniform(0, 12 / 255)  # the input's robust radius; the verifier proves a bit less
    base = dict(ckpt_sha=sha, ckpt_path=str(ck), dataset="digits", split="test", idx=i, label=y, prediction=p)
    ok = p == y
    v = "misclassified" if not ok else "verified" if 8 / 255 <= 0.8 * r else "timeout" if 8 / 255 <= r else "falsified"
    rows.append(ResultRow(kind="verify", norm="linf", eps=8 / 255, method="milp", status=v, seconds=rng.random(), timeout=60.0, **base))
    for m in ("pgd", "autoattack"):
        rows.append(ResultRow(kind="attack", norm="linf", eps=8 / 255, method=m, status="misclassified" if not ok else "robust" if 8 / 255 <= r else "broken", **base))
    rows.append(ResultRow(kind="attack", norm="l2", eps=0.5, method="autoattack", status="misclassified" if not ok else "robust" if r > 6 / 255 else "broken", **base))
    rows.append(ResultRow(kind="attack", norm="wasserstein", eps=0.1, method="wasserstein", status="misclassified" if not ok else "robust" if r > 4 / 255 else "broken", **base))
with ResultsDB(db_path) as db:
    db.put_many(rows)
print("planted", len(rows), "rows in", db_path)
PY
fi
echo "== mr-eval report --db $DB"
mr-eval report --db "$DB" --strict
echo "== mr-eval leaderboard --db $DB --out-dir $WORK/leaderboard"
mr-eval leaderboard --db "$DB" --out-dir "$WORK/leaderboard" > /dev/null
head -5 "$WORK/leaderboard/leaderboard.csv"
echo "wheel check OK: $WHEEL"
