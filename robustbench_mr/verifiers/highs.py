"""The in-process HiGHS handle every LP and MILP here uses (``bounds/lp_tighten.py``,
``milp/``): a stdout-quiet instance, status checks that never ignore a rejected row, and the
sound folding of coefficients HiGHS would drop. A leaf: it imports no stage of the verifier."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import highspy
import numpy as np
import scipy.sparse as sp

# HiGHS's small_matrix_value: it drops |a_ij| <= this from the matrix (and answers kWarning),
# so we fold such entries into the row bounds ourselves (``drop_tiny_coefficients``).
TINY_COEFF = 1e-9


class MilpError(RuntimeError):
    """HiGHS rejected part of the model (never ignored: a missing row would be unsound)."""


def _ok(status: highspy.HighsStatus, what: str) -> None:
    if status != highspy.HighsStatus.kOk:
        raise MilpError(f"HiGHS rejected {what}: {status}")


@contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM held back while HiGHS runs, delivered after it.

    A Python signal handler that raises (KeyboardInterrupt, the CLI's ``Terminated``) runs in
    whatever Python code the main thread executes next: during a solve, highspy's callback
    dispatch, from where the exception enters HiGHS's C++ and comes back as ``run() == kError``
    (the interrupt lost: one input recorded as an error, the run going on). Here the handlers
    only record the signal (the yielded list: a MIP callback reads it to stop the solve); on
    exit the previous handlers come back and the first recorded signal is delivered to them.
    Outside the main thread (no handlers can be set there): a no-op."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in wanted}
    for s in wanted:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)  # raises KeyboardInterrupt / Terminated here, after the solve
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])  # the default action (SIGTERM: exit) as if never deferred


def quiet_highs() -> highspy.Highs:
    """A ``highspy.Highs`` that never writes to stdout.

    highspy's constructor registers its callback hook (``enableCallbacks``) while HiGHS's
    ``output_flag`` is still at its default (on), and that prints the "Running HiGHS ..."
    banner on file descriptor 1 (once per process). Turning the flag off first, inside that
    hook, keeps stdout clean (``mr-eval vnnlib`` prints exactly one word there).
    """
    return _QuietHighs()


class _QuietHighs(highspy.Highs):
    def enableCallbacks(self) -> None:  # noqa: N802 - highspy's name
        highspy._Highs.setOptionValue(self, "output_flag", False)
        super().enableCallbacks()


def drop_tiny_coefficients(A: sp.csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray, col_lb: np.ndarray, col_ub: np.ndarray,
                           tol: float = TINY_COEFF) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, int]:
    """Remove entries with ``|a_ij| <= tol`` and widen each row's bounds by what they can contribute.

    HiGHS silently drops matrix values at or below its ``small_matrix_value`` (1e-9) and
    answers ``kWarning``; real networks (e.g. VNN-COMP oval21's wide net) have weights of
    1e-14. We drop them ourselves, soundly: the dropped part of row i lies in
    ``[-R_i, R_i]`` with ``R_i = sum |a_ij| max(|lb_j|, |ub_j|)``, so ``lo_i - R_i <= kept part
    <= hi_i + R_i`` holds for every point of the original model (a relaxation: a proof on it
    is a proof on the original; a point it finds is re-checked by a forward pass anyway).
    """
    tiny = np.abs(A.data) <= tol
    if not tiny.any():
        return A, row_lo, row_hi, 0
    reach = np.maximum(np.abs(col_lb), np.abs(col_ub))
    row_of = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    contrib = np.abs(A.data[tiny]) * reach[A.indices[tiny]]
    if not np.all(np.isfinite(contrib)):
        raise MilpError("a coefficient below HiGHS's small_matrix_value sits on an unbounded column")
    R = np.bincount(row_of[tiny], weights=contrib, minlength=A.shape[0])
    grow = R > 0
    eps = 4.0 * np.finfo(np.float64).eps
    lo, hi = row_lo.copy(), row_hi.copy()
    lo[grow] = lo[grow] - (R[grow] * (1.0 + 1e-9) + eps * np.abs(lo[grow]))  # -inf stays -inf
    hi[grow] = hi[grow] + (R[grow] * (1.0 + 1e-9) + eps * np.abs(hi[grow]))
    keep = ~tiny
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=A.shape[0]))])
    B = sp.csr_matrix((A.data[keep], A.indices[keep], indptr), shape=A.shape)
    return B, lo, hi, int(tiny.sum())
