"""``mr-eval verify ckpt.pt --eps 8/255``: exact L-inf robustness verification (big-M MILP,
HiGHS) of a checkpoint on a dataset slice; results go to a SQLite database and re-runs resume."""

from __future__ import annotations

import argparse
import sys

from robustbench_mr.cli.common import add_solver_options, eps_arg, nonneg_int, positive_float, positive_int, scheduler_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    from robustbench_mr.verifiers.choices import BACKENDS, default_jobs

    p = sub.add_parser("verify", help="exact robustness verification (MILP)", description=__doc__)
    p.add_argument("checkpoint", help="a .pt file written by mr-train")
    p.add_argument("--eps", type=eps_arg, required=True, help="L-inf radius in pixel units, e.g. 8/255 or 0.1")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--n", type=positive_int, default=1000, help="number of inputs (default 1000)")
    p.add_argument("--start", type=nonneg_int, default=0, help="index of the first input")
    p.add_argument("--jobs", type=positive_int, default=default_jobs(), help="parallel solves (default min(8, cores))")
    p.add_argument("--timeout", type=positive_float, default=120.0, help="seconds per input (default 120)")
    add_solver_options(p)
    p.add_argument("--backend", choices=BACKENDS, default="loky", help="joblib backend: loky (this machine) or dask (a cluster)")
    p.add_argument("--scheduler", type=scheduler_arg, default=None, help="Dask scheduler address tcp://HOST:PORT (with --backend dask)")
    p.add_argument("--db", default="runs/results.sqlite", help="SQLite results database (default runs/results.sqlite)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_mr import verify
    from robustbench_mr.verifiers.runner import VerifyOptions

    options = VerifyOptions(
        checkpoint=args.checkpoint, eps=args.eps, dataset=args.dataset, data_dir=args.data_dir, split=args.split, n=args.n,
        start=args.start, jobs=args.jobs, timeout=args.timeout, bounds=args.bounds, db=args.db, seed=args.seed, solver=args.solver,
        backend=args.backend, scheduler=args.scheduler, progress=sys.stderr.isatty(),
    )
    summary = verify(options)
    for line in summary.lines():
        print(line)
    return 0
