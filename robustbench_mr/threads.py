"""CPU threads per process: one rule, so that torch threads x parallel workers never exceed the
cores that are free.

The default is ``max(1, idle // jobs)``, where ``idle`` is the usable cores (this process's CPU
affinity) minus the 1-minute load average, rounded, and ``jobs`` the worker processes of the
command (``--jobs``; 1 for commands without it). An explicit ``--threads`` wins; so does an
``OMP_NUM_THREADS`` already in the environment when ``--threads`` is not given. On a busy
shared machine the default is 1: OpenMP threads that wait for a descheduled sibling cost far
more than they gain (AutoAttack on 20 digits inputs, 2 cores shared with other jobs: no batch
done in 600 s at torch's default of 2 threads, 82 s at 1; ``bench/attacks.py``).

:func:`apply_threads` sets torch's thread count in this process and the OpenMP / MKL /
OpenBLAS variables that child processes (joblib's loky workers, the verifier's forked
children) start with; :func:`worker_threads` is what a worker reads back. Nothing here imports
torch (the CLIs resolve threads before any engine is loaded).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

THREADS_ENV = "ROBUSTBENCH_MR_THREADS"  # what workers read back (worker_threads)
NATIVE_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average() -> float:
    """The 1-minute load average (0 where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def default_threads(jobs: int = 1, cores: int | None = None, load: float | None = None, environ: dict[str, str] | None = None) -> int:
    """Threads per worker when ``--threads`` is not given (see the module docstring).

    ``cores``, ``load`` and ``environ`` default to this machine's; tests pass their own."""
    env = os.environ if environ is None else environ
    text = env.get("OMP_NUM_THREADS", "").strip()
    # the user's own setting (not one that apply_threads left for child processes)
    if text.isdigit() and int(text) > 0 and THREADS_ENV not in env:
        return int(text)
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    idle = max(1, cores - round(max(0.0, load)))
    return max(1, idle // max(1, jobs))


def apply_threads(threads: int) -> None:
    """Use ``threads`` CPU threads: torch in this process (when loaded; otherwise torch reads
    ``OMP_NUM_THREADS`` when it is imported) and every native thread pool of child processes."""
    value = str(max(1, int(threads)))
    os.environ[THREADS_ENV] = value
    for name in NATIVE_THREAD_ENV:
        os.environ[name] = value
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(value))


@contextmanager
def using_threads(threads: int) -> Iterator[None]:
    """:func:`apply_threads` for the duration of a command; the environment and torch's thread
    count (where torch was loaded before) are put back afterwards."""
    names = (THREADS_ENV, *NATIVE_THREAD_ENV)
    saved = {name: os.environ.get(name) for name in names}
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    apply_threads(threads)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if torch is not None and torch_before is not None:
            torch.set_num_threads(torch_before)


def worker_threads(default: int = 1) -> int:
    """The thread count a worker process should use: what the command chose (``apply_threads``
    in the parent, inherited through the environment), else ``default``."""
    text = os.environ.get(THREADS_ENV, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else default
