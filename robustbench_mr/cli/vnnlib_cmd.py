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

from dataclasses import dataclass

from robustbench_mr.cli.common import add_run_options, add_solver_options, end_process_now, positive_float
from robustbench_mr.errors import UserError
from robustbench_mr.options import add_options, option


@dataclass(frozen=True)
class VnnlibOptions:
    """The flags of ``mr-eval vnnlib`` (each field: flag, default, help, config key); ``--bounds``,
    ``--solver`` and ``--branching`` are :class:`~robustbench_mr.verifiers.runs.options.VerifyOptions`' own."""

    onnx: str = option(positional=True, help="the network (.onnx)")
    vnnlib: str = option(positional=True, help="the property (.vnnlib; sat = a counterexample exists)")
    timeout: float = option(300.0, type=positive_float, help="seconds for the whole instance (the solver's limit is soft)")
    out: str | None = option(None, help="write VNN-COMP's result file here (status, then the counterexample when sat)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vnnlib", help="decide one ONNX + VNN-LIB instance (VNN-COMP semantics)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, VnnlibOptions, exclude=("out",))
    add_solver_options(p)
    add_options(p, VnnlibOptions, only=("out",))
    add_run_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_mr.deadline import Deadline, program_start
    from robustbench_mr.verifiers.spec.export import check_output_path, write_result
    from robustbench_mr.verifiers.decide.instance_limit import instance_in_child
    from robustbench_mr.verifiers.decide.instance import check_instance

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
        result = instance_in_child(check_instance, args.onnx, args.vnnlib, deadline, bounds=args.bounds, solver=args.solver,
                                   branching=args.branching)
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    # the four VNN-COMP answers; a solver error is "unknown" on stdout and explained on stderr
    shown = result.status.value if result.status.value != "error" else "unknown"
    if result.message:
        # seconds since this process started (the limit's clock), not the deciding child's own
        print(f"mr-eval vnnlib: {result.status.value} after {deadline.elapsed():.2f}s of {args.timeout:g}s: {result.message}", file=sys.stderr)
    print(shown, flush=True)  # the verdict first: it is printed even if writing the file fails
    if args.out:
        try:
            write_result(args.out, shown, result.counterexample, result.output)
        except OSError as exc:
            raise UserError(f"--out {args.out}: could not write the result file ({exc.strerror or exc}); the answer was {shown}") from None
    # the harness's clock runs until this process exits: no interpreter finalization after the answer
    return end_process_now(0)
