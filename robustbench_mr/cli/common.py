"""What every CLI shares: the one-line error policy and exit codes, and the options of every
run command (``-v``/``-q``, ``--threads``, ``--config``, ``--print-config``: :class:`RunOptions`).

Exit codes: 0 ok, 1 failure (one line on stderr, traceback only with --debug), 2 usage
error (argparse), 130 interrupted by Ctrl-C and 143 by SIGTERM (both unwind the same way:
results already written are kept), 141 stdout closed early (``mr-eval info ckpt.pt | head -1``:
nothing printed on stderr). A bad ``--config`` file (unreadable, malformed, an unknown key or
value) is a usage error too: one line, exit 2. 130, 141 and 143 are the shell's 128 + SIGINT /
SIGPIPE / SIGTERM, so ``set -o pipefail`` scripts see the same code as for any other tool cut
off by ``head``. SIGTERM is turned into ``Terminated`` (a KeyboardInterrupt) for the whole
command, config merging included; forked solver children inherit that handler, so they unwind
the same way and the parent reports 143.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import ModuleType

from robustbench_mr.errors import UserError
from robustbench_mr.options import (  # noqa: F401 - the argparse types every command uses, re-exported
    ConfigError,
    add_options,
    eps_arg,
    nonneg_int,
    option,
    positive_float,
    positive_int,
    radius_arg,
)


def add_solver_options(p: argparse.ArgumentParser) -> None:
    """``--bounds``, ``--solver`` and ``--branching``, shared by every command that runs the exact verifier
    (declared once, on :class:`~robustbench_mr.verifiers.runs.options.VerifyOptions`)."""
    from robustbench_mr.verifiers.runs.options import VerifyOptions

    add_options(p, VerifyOptions, only=("bounds", "solver", "branching"))


@dataclass(frozen=True)
class RunOptions:
    """The options of every run command (train, verify, attack, vnnlib, vnncomp)."""

    verbose: int = option(0, flag="-v", aliases=("--verbose",), action="count",
                          help="more log lines: -v our debug lines and other libraries' info (AutoAttack's), -vv everything")
    quiet: int = option(0, flag="-q", aliases=("--quiet",), action="count", help="fewer: -q no progress bar or status lines, -qq no warnings")
    threads: int | None = option(None, type=positive_int, metavar="N", default_text="max(1, idle cores // jobs); OMP_NUM_THREADS if set",
                                 help="CPU threads per process (torch, OpenMP, MKL, OpenBLAS; for parallel workers: each)")
    config: str | None = option(None, metavar="FILE", help="read options from FILE (.yaml, .yml or .toml): each option's name is a key, "
                                "e.g. data_dir: data; flags on the command line win over the file")
    print_config: bool = option(False, help="print the effective options (in --config's format, YAML without it) and exit")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Add :class:`RunOptions` to a run command's parser (and remember the parser, for
    ``--config``). ``-v``/``-q`` also work before the command (``mr-eval -v verify ...``)."""
    add_options(p, RunOptions, defaults={"verbose": argparse.SUPPRESS, "quiet": argparse.SUPPRESS})
    p.set_defaults(_parser=p)


def build_parser(prog: str, description: str, commands: Sequence[ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    add_options(parser, RunOptions, only=("verbose", "quiet"))  # also after the command name
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


def _prepare(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None, args: argparse.Namespace,
             stack: ExitStack) -> tuple[argparse.Namespace, bool]:
    """Merge ``--config``, check required options, set up logging and threads (for as long as
    ``stack`` is open). Returns the final arguments and whether the command is done already
    (``--print-config``)."""
    from robustbench_mr import options as opt

    sub: argparse.ArgumentParser | None = getattr(args, "_parser", None)
    if sub is not None and getattr(args, "config", None):
        args = opt.merge_config(parser, sub, None if argv is None else list(argv), args.config)
    if sub is not None and getattr(args, "print_config", False):
        fmt = opt.config_format(args.config) if args.config else "yaml"
        sys.stdout.write(opt.dump_config(opt.effective_config(sub, args), fmt))
        return args, True
    if sub is not None:
        opt.check_required(sub, args)
    from robustbench_mr.logging_setup import configure_logging

    stack.callback(configure_logging(prog, getattr(args, "verbose", 0) or 0, getattr(args, "quiet", 0) or 0))
    if hasattr(args, "threads"):
        from robustbench_mr.threads import default_threads, using_threads

        jobs = getattr(args, "jobs", None) or 1
        chosen = "--threads" if args.threads is not None else "the default"
        if args.threads is None:
            args.threads = default_threads(jobs)
        stack.enter_context(using_threads(args.threads))
        import logging

        logging.getLogger("robustbench_mr.cli").debug("threads %d per process (%s; jobs %d)", args.threads, chosen, jobs)
    return args, False


def end_process_now(code: int) -> int:
    """For a command whose whole process is timed (``mr-eval vnnlib``: a harness's limit counts
    until the process exits): when it runs as a program, flush what it wrote and leave without
    the interpreter's finalization (with torch, HiGHS and onnxruntime loaded, 0.4-0.6 s after the
    answer on the 2-core machine). Called after everything the command computed is written and
    closed; skips only the exit-time cleanup. Called from Python (tests, the API), it returns
    ``code``."""
    from robustbench_mr.deadline import running_as_program

    if not running_as_program():
        return code
    import logging

    sys.stdout.flush()  # a closed pipe raises here, for run_main to report
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def run_main(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        with _sigterm_as_interrupt(), ExitStack() as stack:
            try:
                args, done = _prepare(prog, parser, argv, args, stack)
            except ConfigError as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return 2
            if done:
                sys.stdout.flush()
                return 0
            handler: Callable[[argparse.Namespace], int] = args.handler
            code = int(handler(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, inside the handlers below, not at exit
        return code
    except BrokenPipeError:
        # the reader of stdout went away (`| head -1`): nothing more to say to anyone
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except UserError as exc:
        if getattr(args, "debug", False):
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
        if getattr(args, "debug", False):
            traceback.print_exc()
        else:
            print(f"{prog}: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
