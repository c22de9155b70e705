"""What every CLI shares: the one-line error policy and exit codes.

Exit codes: 0 ok, 1 failure (one line on stderr, traceback only with --debug), 2 usage
error (argparse), 130 interrupted (results already written are kept).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

from robustbench_mr.errors import UserError
from robustbench_mr.utils.eps import parse_eps


def eps_arg(text: str) -> float:
    """argparse type for radii: ``8/255``, ``0.031``; a bad value is a usage error (exit 2)."""
    try:
        return parse_eps(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def radius_arg(text: str) -> float:
    """argparse type for radii that may exceed 1 (L2, Wasserstein)."""
    try:
        return parse_eps(text, max_value=None)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def add_solver_options(p: argparse.ArgumentParser) -> None:
    """``--bounds`` and ``--solver``, shared by every command that runs the exact verifier."""
    from robustbench_mr.verifiers.bounds import BOUND_METHODS, DEFAULT_BOUNDS
    from robustbench_mr.verifiers.milp import SOLVERS

    p.add_argument("--bounds", choices=BOUND_METHODS, default=DEFAULT_BOUNDS, help=f"neuron bounds (default {DEFAULT_BOUNDS})")
    p.add_argument("--solver", choices=SOLVERS, default="highs",
                   help="MILP solver: highs (default, in-process) or cbc / gurobi / cplex through PuLP (cbc ships with PuLP)")


def build_parser(prog: str, description: str, commands: Sequence[ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    from robustbench_mr import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in commands:
        module.add_parser(sub)
    return parser


def run_main(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; results written so far are kept", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if args.debug:
            traceback.print_exc()
        else:
            print(f"{prog}: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
