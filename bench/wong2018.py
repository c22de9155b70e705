"""Exact figures on published weights: Wong et al.'s provably trained nets (../shared/data/wong2018),
decided by the real command lines (``mr-eval import-torch``, then ``mr-eval verify``).

    .venv/bin/python bench/wong2018.py --shared ../shared                     # both, full size
    .venv/bin/python bench/wong2018.py --shared ../shared --mnist-n 500       # MNIST: the first 500 inputs only

* **MNIST**: ``mnist_wk2017_0_1.pth`` (Wong & Kolter 2018, 4,804 ReLUs) at eps 0.1 on the official
  10,000 MNIST test images (``../shared/data/mnist``), next to Tjeng et al. 2019's exact 4.38%
  adversarial error (MIPVerify + Gurobi) and MIPVerify.jl + HiGHS's 1.93 s per input (first 500
  inputs, 1 thread) on the sibling weights ``WK17a`` (same architecture and training, not the
  same file: references, not targets).
* **CIFAR-10**: ``cifar_small_8px.pth`` (cascade element 0, inputs normalized as the source
  says) at eps 8/255 on the 100 CIFAR-10 test images of ``../shared/data/eran_test_images``.
  The official CIFAR-10 files are not here, so the script writes those 100 images as an
  official-format ``test_batch`` (``cifar-10-batches-py``) and the runner reads them as CIFAR-10.

Every input's row (status, seconds, eps, seed, timeout, solver and its version, the package
version) lands in ``WORK/results.sqlite``; a rerun resumes. The summary (counts, the exact
adversarial error when nothing timed out, seconds per input, verified <= PGD <= clean checked,
provenance) goes to ``--results`` (``.md`` and ``.csv``).
"""

from __future__ import annotations

import argparse
import csv
import os
import pickle
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from robustbench_mr.cli.eval import main; sys.argv[0] = 'mr-eval'; sys.exit(main())"]


@dataclass(frozen=True)
class Case:
    name: str
    weights: str  # under data/wong2018
    import_args: tuple[str, ...]
    dataset: str
    eps: str
    reference: str  # the published figure printed beside ours


CASES = {
    "mnist": Case("mnist_wk2017_0_1 (MNIST, eps 0.1)", "mnist_wk2017_0_1.pth", ("--arch", "small(hidden=100)", "--dataset", "mnist"), "mnist", "0.1",
                  "Tjeng et al. 2019 (sibling weights WK17a, Gurobi): adversarial error 4.38%, 3.52 s per input; "
                  "MIPVerify.jl + HiGHS (1 thread, 120 s, first 500 inputs): 1.93 s per input"),
    "cifar": Case("cifar_small_8px (CIFAR-10, eps 8/255)", "cifar_small_8px.pth",
                  ("--element", "0", "--arch", "small(hidden=100)", "--dataset", "cifar10", "--mean", "0.485,0.456,0.406", "--std", "0.225,0.225,0.225"),
                  "cifar10", "8/255", "Wong et al. 2018 train this net for eps 8/255; no exact figure for this file is published"),
}


FIRST_N = 500  # MIPVerify.jl + HiGHS's per-input figure is over the first 500 MNIST test inputs


def write_eran_cifar(csv_path: Path, root: Path) -> int:
    """The ERAN CIFAR-10 test images (label, then 32x32x3 pixels per row) as an official test batch."""
    rows = np.loadtxt(csv_path, delimiter=",")
    data = rows[:, 1:].astype(np.uint8).reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2).reshape(len(rows), -1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": np.ascontiguousarray(data), "labels": rows[:, 0].astype(int).tolist()}, fh)
    return len(rows)


def run(cmd: list[str]) -> None:
    print("$ mr-eval " + " ".join(cmd), flush=True)
    subprocess.run(CLI + cmd, check=True, cwd=ROOT)


def summarize(db: Path, ckpt_sha_prefix: str, eps: float, n: int) -> dict:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT status, seconds, timeout, seed, solver, solver_version, package_version, json_extract(details, '$.search') FROM results "
                       "WHERE kind = 'verify' AND ckpt_sha LIKE ? AND abs(eps - ?) < 1e-12 ORDER BY idx LIMIT ?",
                       (ckpt_sha_prefix + "%", eps, n)).fetchall()
    con.close()
    status = [r[0] for r in rows]
    secs = [r[1] for r in rows]
    count = {s: status.count(s) for s in sorted(set(status))}
    undecided = sum(v for k, v in count.items() if k not in ("verified", "falsified", "misclassified"))
    m = len(rows)
    clean = m - count.get("misclassified", 0)
    verified = count.get("verified", 0)
    robust_upper = verified + undecided  # PGD and the MILP broke the others
    assert verified <= robust_upper <= clean, (verified, robust_upper, clean)
    searches = [r[7] or "-" for r in rows if r[0] in ("verified", "falsified")]
    first = secs[:FIRST_N]
    return {"n": m, "counts": count, "searches": {k: searches.count(k) for k in sorted(set(searches))},
            "first_mean_s": statistics.fmean(first) if first else 0.0, "undecided": undecided, "clean": clean, "verified": verified,
            "adv_error": None if undecided else (m - verified) / m, "mean_s": statistics.fmean(secs) if secs else 0.0,
            "median_s": statistics.median(secs) if secs else 0.0, "max_s": max(secs, default=0.0),
            "timeouts": sorted({r[2] for r in rows}), "seeds": sorted({r[3] for r in rows}),
            "solver": sorted({f"{r[4]} {r[5]}" for r in rows}), "version": sorted({r[6] for r in rows})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "wong2018", help="checkpoints, the CIFAR batch and results.sqlite")
    ap.add_argument("--cases", default="mnist,cifar")
    ap.add_argument("--mnist-n", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "wong2018")
    ap.add_argument("--note", action="append", default=[], help="a provenance line to add (e.g. which commit computed the rows a resumed run reuses)")
    args = ap.parse_args()
    data = args.shared / "data"
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    db = work / "results.sqlite"
    t0, c0 = time.time(), time.process_time()
    out = []
    for key in args.cases.split(","):
        case = CASES[key]
        if key == "mnist":
            data_dir, n = data / "mnist", args.mnist_n
        else:
            data_dir = work / "cifar_eran"
            n = write_eran_cifar(data / "eran_test_images" / "cifar10_test.csv", data_dir)
        ckpt = work / f"{key}.pt"
        if not ckpt.exists():
            run(["import-torch", str(data / "wong2018" / case.weights), *case.import_args, "-o", str(ckpt), "--data-dir", str(data_dir)])
        run(["verify", str(ckpt), "--eps", case.eps, "--n", str(n), "--timeout", f"{args.timeout:g}", "--jobs", str(args.jobs),
             "--data-dir", str(data_dir), "--db", str(db), "-q"])
        import hashlib

        sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
        num, _, den = case.eps.partition("/")
        out.append((key, case, summarize(db, sha, float(num) / float(den or 1), n)))
    write(args, out, time.time() - t0, time.process_time() - c0)


def write(args: argparse.Namespace, out: list, wall: float, cpu: float) -> None:
    from importlib.metadata import version

    import torch

    import robustbench_mr

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() or "unknown"
    lines = ["# Exact verification of Wong et al.'s published nets", "",
             f"Written by `bench/wong2018.py {' '.join(sys.argv[1:])}`.", "",
             "| net | inputs | verified | falsified | misclassified | undecided | exact adversarial error | verified acc | s/input mean | first 500 | median | max | reference |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, case, s in out:
        c = s["counts"]
        err = "-" if s["adv_error"] is None else f"{100 * s['adv_error']:.2f}%"
        lines.append(f"| {case.name} | {s['n']} | {c.get('verified', 0)} | {c.get('falsified', 0)} | {c.get('misclassified', 0)} | {s['undecided']} | {err} | "
                     f"{100 * s['verified'] / max(s['n'], 1):.2f}% | {s['mean_s']:.3f} | {s['first_mean_s']:.3f} | {s['median_s']:.3f} | {s['max_s']:.2f} | {case.reference} |")
    lines += ["", "Checked on every row set: verified <= robust (PGD / MILP counterexamples replayed on the torch model) <= clean.", "",
              "Decided by (the search that ran last, `details.search`; misclassified inputs need none):", "",
              *[f"- {case.name}: " + ", ".join(f"{k} {v}" for k, v in s["searches"].items()) for _, case, s in out], "",
              "## Provenance", "",
              f"- commit {commit}, robustbench_mr {robustbench_mr.__version__}, torch {torch.__version__}, highspy {version('highspy')}, Python {platform.python_version()}",
              f"- machine: {platform.machine()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; this invocation's wall {wall:.0f} s "
              f"(a resumed run counts only what it computed), CPU {cpu:.0f} s in the parent",
              *[f"- {line}" for line in args.note],
              *[f"- {case.name}: timeouts {s['timeouts']} s, seeds {s['seeds']}, solver {', '.join(s['solver'])}, package {', '.join(s['version'])}" for _, case, s in out]]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    with open(args.results.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["net", "eps", "inputs", "verified", "falsified", "misclassified", "undecided", "adv_error", "mean_s", "first500_mean_s", "median_s", "max_s", "timeout_s", "commit"])
        for key, case, s in out:
            c = s["counts"]
            w.writerow([key, case.eps, s["n"], c.get("verified", 0), c.get("falsified", 0), c.get("misclassified", 0), s["undecided"],
                        "" if s["adv_error"] is None else f"{s['adv_error']:.4f}", f"{s['mean_s']:.4f}", f"{s['first_mean_s']:.4f}", f"{s['median_s']:.4f}", f"{s['max_s']:.3f}",
                        "/".join(f"{t:g}" for t in s["timeouts"]), commit])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
