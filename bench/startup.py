"""Start-up time of the command line: ``mr-eval --help``, ``mr-eval vnnlib --help`` and trivial
VNN-LIB instances (../shared/data/vnncomp/test), as whole processes, median of several runs,
next to an older checkout of the project (``--old DIR``, e.g. a ``git worktree`` of the
previous commit) measured in the same run, interleaved.

    .venv/bin/python bench/startup.py --old /tmp/base --runs 5

The target: every row <= 1.5 s of wall time (VNN-COMP counts start-up in each instance's time).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _time(cwd: Path, args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "robustbench_mr.cli.eval", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t0, (p.stdout.strip().splitlines() or [""])[-1][:12]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", help="an older checkout to compare with (run with the same interpreter)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    args = ap.parse_args()
    test = Path(args.shared) / "data" / "vnncomp" / "test"
    cases = {"mr-eval --help": ["--help"], "mr-eval vnnlib --help": ["vnnlib", "--help"]}
    for onnx, prop in (("test_nano.onnx", "test_nano.vnnlib"), ("test_sat.onnx", "test_prop.vnnlib"), ("test_unsat.onnx", "test_prop.vnnlib")):
        if (test / onnx).is_file():
            cases[f"vnnlib {onnx} {prop}"] = ["vnnlib", str(test / onnx), str(test / prop), "--timeout", "60"]
    trees = {"new": REPO} | ({"old": Path(args.old).resolve()} if args.old else {})
    times: dict[tuple[str, str], list[float]] = {}
    answers: dict[tuple[str, str], str] = {}
    for tree in trees.values():  # warm-up: the file cache
        _time(tree, ["--help"])
    for _ in range(args.runs):
        for name, argv in cases.items():
            for label, tree in trees.items():  # interleaved, so drift hits both alike
                s, out = _time(tree, argv)
                times.setdefault((name, label), []).append(s)
                answers[name, label] = out
    print(f"# start-up, median of {args.runs} runs, wall seconds (whole process)")
    header = "| command | new s |" + (" old s | old/new |" if args.old else "") + " answer |"
    print(header)
    print("|---|---|" + ("---|---|" if args.old else "") + "---|")
    for name in cases:
        new = statistics.median(times[name, "new"])
        row = f"| {name} | {new:.2f} |"
        if args.old:
            old = statistics.median(times[name, "old"])
            row += f" {old:.2f} | {old / new:.1f}x |"
        ans = answers[name, "new"] if not name.endswith("--help") else ""
        print(row + f" {ans} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
