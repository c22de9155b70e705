"""``mr-eval vnnlib NET.onnx PROP.vnnlib``: decide one VNN-COMP instance exactly.

Prints exactly one of ``sat`` (a counterexample exists; it was confirmed by onnxruntime on
the original file), ``unsat`` (the property holds), ``timeout`` or ``unknown`` on stdout;
details go to stderr. ``--out FILE`` writes VNN-COMP's result file (the status line, then
the counterexample ``((X_0 v) ... (Y_0 v) ...)`` when sat).
"""

from __future__ import annotations

import argparse
import os
import sys

from robustbench_mr.cli.common import add_solver_options, positive_float
from robustbench_mr.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vnnlib", help="decide one ONNX + VNN-LIB instance (VNN-COMP semantics)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("onnx", help="the network (.onnx)")
    p.add_argument("vnnlib", help="the property (.vnnlib; sat = a counterexample exists)")
    p.add_argument("--timeout", type=positive_float, default=300.0, help="seconds for the whole instance (default 300; the solver's limit is soft)")
    add_solver_options(p)
    p.add_argument("--out", help="write VNN-COMP's result file here (status, then the counterexample when sat)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_mr.deadline import Deadline, program_start
    from robustbench_mr.verifiers.export import check_output_path, write_result
    from robustbench_mr.verifiers.instance_limit import instance_in_child
    from robustbench_mr.verifiers.vnnlib import check_instance

    # the limit counts from this process's start: interpreter, imports, parsing, loading all count
    deadline = Deadline(args.timeout, start=program_start())
    if args.out:
        check_output_path(args.out)  # before solving: a bad --out must not cost the solve

    # stdout carries exactly the answer: native libraries (HiGHS prints a banner when a solver
    # is created) write to file descriptor 1, so point it at stderr while solving
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = instance_in_child(check_instance, args.onnx, args.vnnlib, deadline, bounds=args.bounds, solver=args.solver)
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    # the four VNN-COMP answers; a solver error is "unknown" on stdout and explained on stderr
    shown = result.status.value if result.status.value != "error" else "unknown"
    if result.message:
        print(f"mr-eval vnnlib: {result.status.value} after {result.seconds:.2f}s: {result.message}", file=sys.stderr)
    print(shown, flush=True)  # the verdict first: it is printed even if writing the file fails
    if args.out:
        try:
            write_result(args.out, shown, result.counterexample, result.output)
        except OSError as exc:
            raise UserError(f"--out {args.out}: could not write the result file ({exc.strerror or exc}); the answer was {shown}") from None
    return 0
