"""What every CLI shares: the one-line error policy and exit codes.

Exit codes: 0 ok, 1 failure (one line on stderr, traceback only with --debug), 2 usage
error (argparse), 130 interrupted by Ctrl-C and 143 by SIGTERM (both unwind the same way:
results already written are kept), 141 stdout closed early (``mr-eval info ckpt.pt | head -1``:
nothing printed on stderr). 130, 141 and 143 are the shell's 128 + SIGINT / SIGPIPE / SIGTERM,
so ``set -o pipefail`` scripts see the same code as for any other tool cut off by ``head``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from urllib.parse import urlsplit

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


# Address schemes the Dask client understands (distributed.comm); a bare HOST:PORT means tcp.
SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")


def scheduler_address_problem(address: str) -> str | None:
    """Why ``address`` is not a Dask scheduler address (``tcp://HOST:PORT``, another scheme of
    ``SCHEDULER_SCHEMES``, or a bare ``HOST:PORT``), or None when it is well-formed. Only the
    form is checked (no connection is made), so a typo is caught before any work."""
    text = address.strip()
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    if parts.scheme not in SCHEDULER_SCHEMES:
        return f"unknown scheme {parts.scheme + '://'!r}"
    if parts.scheme == "inproc":
        return None if parts.netloc else "nothing after inproc://"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number in 1-65535"
    if not parts.hostname:
        return "no host"
    if not port:
        return "no port"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "extra text after the port"
    return None


def scheduler_usage(address: str, problem: str) -> str:
    """The usage message for a malformed ``--scheduler`` (after the option name)."""
    return f"{address!r} is not a Dask scheduler address ({problem}); expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786"


def scheduler_arg(text: str) -> str:
    """argparse type for ``--scheduler``: a malformed address is a usage error (exit 2)."""
    problem = scheduler_address_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(scheduler_usage(text, problem))
    return text.strip()


def add_solver_options(p: argparse.ArgumentParser) -> None:
    """``--bounds`` and ``--solver``, shared by every command that runs the exact verifier."""
    from robustbench_mr.verifiers.choices import BOUND_METHODS, DEFAULT_BOUNDS, SOLVERS

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by ``run_main``'s handler. A KeyboardInterrupt, so it
    unwinds exactly like Ctrl-C: ``except Exception`` blocks (a worker's "one input failed ->
    error row") do not swallow it, rows already committed stay, joblib stops its workers."""


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` while a command runs; the previous handler comes back
    afterwards. Signal handlers can only be set from the main thread: elsewhere, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stdout_to_devnull() -> None:
    """After a broken pipe: point stdout at /dev/null, so the interpreter's final flush of what is
    still buffered fails neither (Python's documented recipe, see the ``signal`` module's notes
    on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (replaced by a test harness)
        pass


def run_main(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with _sigterm_as_interrupt():
            code = int(handler(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, inside the handlers below, not at exit
        return code
    except BrokenPipeError:
        # the reader of stdout went away (`| head -1`): nothing more to say to anyone
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); results written so far are kept", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; results written so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if args.debug:
            traceback.print_exc()
        else:
            print(f"{prog}: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
