"""``mr-eval verify ckpt.pt --eps 8/255``: exact L-inf robustness verification (big-M MILP,
HiGHS) of a checkpoint on a dataset slice; results go to a SQLite database and re-runs resume."""

from __future__ import annotations

import argparse

from robustbench_mr.cli.common import add_run_options
from robustbench_mr.options import add_options, from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from robustbench_mr.verifiers.runs.options import VerifyOptions

    p = sub.add_parser("verify", help="exact robustness verification (MILP)", description=__doc__)
    add_options(p, VerifyOptions)  # every flag, its default and help: the fields of VerifyOptions
    add_run_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_mr import verify
    from robustbench_mr.verifiers.runs.options import VerifyOptions

    summary = verify(from_args(VerifyOptions, args, progress=not getattr(args, "quiet", 0)))
    for line in summary.lines():
        print(line)
    return 0
