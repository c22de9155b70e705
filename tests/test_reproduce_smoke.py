"""scripts/reproduce_paper.sh --smoke: every step of the paper's reproduction (train small and
large and the ablations, verify, PGD, AutoAttack+ L-inf and L2, Wasserstein, the report) on a few
synthetic images in the official CIFAR-10 format."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_reproduce_paper_smoke_runs_every_step(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this interpreter's mr-train / mr-eval
    t0 = time.perf_counter()
    p = subprocess.run(["bash", str(REPO / "scripts" / "reproduce_paper.sh"), "--smoke", "--out", str(out)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=480)
    seconds = time.perf_counter() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    # the synthetic files are in the official layout: latin-1 pickles, uint8 N x 3072, labels
    with open(out / "data" / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        batch = pickle.load(fh, encoding="latin1")
    assert batch["data"].dtype == np.uint8 and batch["data"].shape[1] == 3072 and len(batch["labels"]) == len(batch["data"])
    for name in ("small_cifar10_mr", "large_cifar10_mr", "large_cifar10_intrinsic-only", "large_cifar10_hamming-only"):
        assert (out / f"{name}.pt").is_file() and (out / f"{name}.csv").is_file()
    from robustbench_mr.results_db import ResultsDB

    with ResultsDB(out / "results.sqlite") as db:
        rows = db.rows()
    made = {(r.kind, r.method.split("-")[0] if r.kind == "verify" else r.method, r.norm) for r in rows}
    assert {("verify", "milp", "linf"), ("attack", "pgd", "linf"), ("attack", "autoattack-plus", "linf"),
            ("attack", "autoattack-plus", "l2"), ("attack", "wasserstein", "wasserstein")} <= made, made
    assert {r.dataset for r in rows} == {"cifar10"} and {r.split for r in rows} == {"test"}
    assert "Manifold Regularization (small)" in p.stdout and "meaningless" in p.stdout  # the report beside the paper's rows
    assert "leaderboard" in p.stdout
    print(f"smoke reproduction: {seconds:.0f} s")
