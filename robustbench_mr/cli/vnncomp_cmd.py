"""``mr-eval vnncomp BENCH_DIR``: run VNN-COMP benchmark folders into the results database.

BENCH_DIR is one benchmark (a folder with ``instances.csv``: onnx, vnnlib, timeout per row,
paths relative to the folder, as VNN-COMP publishes them) or a folder of such benchmarks.
Each instance is decided by the exact verifier (see ``mr-eval vnnlib``; ``--bounds``,
``--solver`` and ``--branching`` as there) in parallel (``--jobs``) and written at once to the
results database as a ``vnncomp`` row (dataset = benchmark, split = the vnnlib path, ckpt_sha =
sha256 of the onnx file, method ``milp`` with the default bounds and solver, else
``milp-BOUNDS[-SOLVER]``). Where an ``expected.csv`` (benchmark, onnx, vnnlib, expected) lies
in BENCH_DIR or its parent, each row records the expected answer and whether ours was wrong.
A rerun skips instances already decided (sat/unsat) and timeouts that had at least the
current time limit and the same branching rule.

Prints per benchmark: instances, sat, unsat, timeout, unknown, error, wrong answers, total and
median seconds (median over the instances we decided).
"""

from __future__ import annotations

import argparse
import sys

from robustbench_mr.cli.common import add_run_options
from robustbench_mr.options import add_options, from_args
from robustbench_mr.verifiers.runs.vnncomp import VnncompOptions, format_summary, run_vnncomp, summarize


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vnncomp", help="run VNN-COMP benchmark folders into the results database", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, VnncompOptions)  # every flag, its default and help: the fields of VnncompOptions
    add_run_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    opts = from_args(VnncompOptions, args, progress=not getattr(args, "quiet", 0))
    outcomes = run_vnncomp(opts)
    summaries = summarize(outcomes)
    print(format_summary(summaries))
    wrong = sum(b.wrong for b in summaries)
    if wrong:
        print(f"mr-eval vnncomp: {wrong} WRONG answer(s) (opposite of the expected answer); see the database rows with details.wrong", file=sys.stderr)
        return 1
    return 0
