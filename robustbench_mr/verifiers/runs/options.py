"""``VerifyOptions``: everything one ``mr-eval verify`` run needs, each option declared once
(its field is the flag, the default, the help text and the config key; ``robustbench_mr.options``).

Importing this loads no engine (torch, HiGHS, scipy): the CLI builds its parser from it.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from robustbench_mr.errors import UserError
from robustbench_mr.options import eps_arg, nonneg_int, option, positive_float, positive_int
from robustbench_mr.utils.splits import split_arg
from robustbench_mr.verifiers.bounds.methods import BOUND_METHODS, DEFAULT_BOUNDS
from robustbench_mr.verifiers.decide import BRANCHING, DEFAULT_BRANCHING
from robustbench_mr.verifiers.milp.solvers import SOLVERS

METHOD_PREFIX = "milp"

BACKENDS = ("loky", "dask")


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


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


def device_arg(text: str) -> str:
    """argparse type for ``--device``: auto, cpu, cuda or cuda:N (availability is checked when the run starts)."""
    v = text.strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; expected auto, cpu, cuda or cuda:N")
    return v


# --bounds, --solver and --branching: declared here once, fields of every options class that
# runs the exact verifier (VerifyOptions, the vnncomp runner's; mr-eval vnnlib adds VerifyOptions')
def bounds_option() -> str:
    return option(DEFAULT_BOUNDS, choices=BOUND_METHODS, help="neuron bounds")


def solver_option() -> str:
    return option("highs", choices=SOLVERS, help="MILP solver: highs (in-process) or cbc / gurobi / cplex through PuLP (cbc ships with PuLP)")


def branching_option() -> str:
    return option(DEFAULT_BRANCHING, choices=BRANCHING, help="ReLU-split branch and bound's branching rule: babsr (Bunel et al. "
                  "2020) or fsb (filtered smart branching: both children of the 3 best BaBSR candidates bounded, the best split kept)")


def check_solver_choices(bounds: str, solver: str, branching: str) -> None:
    """One line naming a bad ``--bounds`` / ``--solver`` / ``--branching`` (options built from a
    config file or by a caller bypass argparse's choices), or a solver that is not installed."""
    if bounds not in BOUND_METHODS:
        raise UserError(f"--bounds {bounds!r}: choose one of {', '.join(BOUND_METHODS)}")
    if solver not in SOLVERS:
        raise UserError(f"--solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    if branching not in BRANCHING:
        raise UserError(f"--branching {branching!r}: choose one of {', '.join(BRANCHING)}")
    from robustbench_mr.verifiers.milp.pulp_solver import check_available

    check_available(solver)  # a one-line error when cbc / gurobi / cplex is not installed


def verifier_method(bounds: str, solver: str) -> str:
    """The results database's ``method`` of an exact-verifier row: ``milp-BOUNDS``, with
    ``-SOLVER`` unless highs (highs keeps the historical key; other solvers get their own rows,
    and resume separately)."""
    return f"{METHOD_PREFIX}-{bounds}" + ("" if solver == "highs" else f"-{solver}")


@dataclass(frozen=True)
class VerifyOptions:
    checkpoint: str = option(positional=True, help="a .pt checkpoint (mr-train, mr-eval import-torch) or an .onnx file")
    eps: float = option(type=eps_arg, help="L-inf radius in pixel units, e.g. 8/255 or 0.1")
    dataset: str | None = option(None, default_text="the checkpoint's", help="dataset")
    data_dir: str | None = option(None, help="folder holding the dataset files")
    split: str | None = option(None, type=split_arg, default_text="the split the checkpoint's training held out, usually test",
                               help="train, test or a slice such as test[5000:]")
    n: int = option(1000, type=positive_int, help="number of inputs")
    start: int = option(0, type=nonneg_int, help="index of the first input")
    jobs: int = option(default_factory=default_jobs, type=positive_int, default_text="min(8, cores)", help="inputs solved in parallel")
    timeout: float = option(120.0, type=positive_float, help="seconds per input")
    bounds: str = bounds_option()
    db: str = option("runs/results.sqlite", help="SQLite results database")
    seed: int = option(0, type=nonneg_int, help="seed of the PGD falsification and the MILP")
    solver: str = solver_option()
    branching: str = branching_option()
    device: str = option("auto", type=device_arg, help="where the bound engine runs for graph-form networks (residual, pooled): "
                         "auto (CUDA when present), cpu, cuda, cuda:N; float64 on every device; chain networks stay on the CPU")
    backend: str = option("loky", choices=BACKENDS, help="joblib backend: loky (this machine) or dask (a cluster)")
    scheduler: str | None = option(None, type=scheduler_arg, help="Dask scheduler address tcp://HOST:PORT (with --backend dask)")
    pgd_steps: int = option(20, cli=False, help="steps of the cheap PGD falsification before any MILP")
    pgd_restarts: int = option(1, cli=False, help="restarts of that PGD")
    progress: bool = option(True, cli=False, help="a bar on a terminal, status lines (logging) elsewhere")

    def __post_init__(self) -> None:
        check_solver_choices(self.bounds, self.solver, self.branching)
        if self.backend not in BACKENDS:
            raise UserError(f"--backend {self.backend!r}: choose loky or dask")
        if self.backend == "dask" and not self.scheduler:
            raise UserError("--backend dask needs --scheduler tcp://HOST:PORT (the Dask scheduler address)")
        if self.scheduler is not None:

            if problem := scheduler_address_problem(self.scheduler):
                raise UserError(f"--scheduler {scheduler_usage(self.scheduler, problem)}")
        from robustbench_mr.utils.eps import parse_eps

        try:  # the command line's validator (eps_arg): a radius in (0, 1]
            parse_eps(self.eps)
        except UserError as exc:
            raise UserError(f"--eps: {exc}") from None
        if self.timeout <= 0 or self.n <= 0 or self.start < 0 or self.jobs <= 0:
            raise UserError("--timeout, --n and --jobs must be positive and --start non-negative")

    @property
    def method(self) -> str:
        return verifier_method(self.bounds, self.solver)
