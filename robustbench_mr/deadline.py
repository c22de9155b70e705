"""One wall-clock deadline per instance or input, started at its first byte.

Every stage (reading and parsing the property, loading the model, attacks, bounds, search, the
final write) asks the same object how much time is left, so the limit holds for the whole
instance, not for the solver alone. Stages that loop over their input (the VNN-LIB parser) call
``check`` now and then and stop with ``DeadlineExceeded``; ``run_with_hard_deadline`` ends a
child process that has not answered shortly after the deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


class DeadlineExceeded(Exception):
    """The instance's time is up (becomes a ``timeout`` answer, never an error)."""


@dataclass
class Deadline:
    """``seconds`` of wall-clock time from ``start`` (``time.perf_counter()``, default: now)."""

    seconds: float
    start: float = field(default_factory=time.perf_counter)

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left (<= 0 once expired)."""
        return self.end - time.perf_counter()

    def expired(self) -> bool:
        return self.left() <= 0.0

    def check(self, what: str = "") -> None:
        """Raise ``DeadlineExceeded`` if the time is up (``what``: the stage, for the message)."""
        if self.expired():
            raise DeadlineExceeded(f"time limit of {self.seconds:g} s reached{' while ' + what if what else ''}")


def mark_program_start() -> None:
    """Called by the command-line entry points when they run as a program: from then on
    ``program_start`` is this process's own start (interpreter start-up and imports count)."""
    global _AS_PROGRAM
    _AS_PROGRAM = True


def running_as_program() -> bool:
    """True when a command-line entry point marked this process as its program (``mark_program_start``)."""
    return _AS_PROGRAM


def program_start() -> float:
    """Where a command's limits start: the process's start when it runs as a program
    (``mark_program_start``), else now (a command called from Python, e.g. in a test)."""
    return process_start() if _AS_PROGRAM else time.perf_counter()


_AS_PROGRAM = False


def process_start() -> float:
    """This process's start as a ``time.perf_counter()`` value (Linux: from /proc, so the
    interpreter's own start-up and every import count); elsewhere, the first call's time."""
    global _PROCESS_START
    if _PROCESS_START is None:
        _PROCESS_START = time.perf_counter()
        try:
            import os

            with open("/proc/self/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            start_ticks = int(fields[19])  # field 22 (starttime), counted after the ")" of the name
            with open("/proc/uptime") as fh:
                uptime = float(fh.read().split()[0])
            age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
            if 0.0 <= age < 3600.0:
                _PROCESS_START = time.perf_counter() - age
        except (OSError, ValueError, IndexError):
            pass
    return _PROCESS_START


_PROCESS_START: float | None = None


def run_with_hard_deadline(fn, args: tuple, deadline: Deadline, grace: float = 0.5):  # noqa: ANN001,ANN201 - any picklable result
    """``fn(*args)`` in a forked child process, killed if it has not answered ``grace`` seconds
    after ``deadline``: a stage that cannot be interrupted (a huge ONNX import, a native solver
    call) cannot make the instance overrun its limit. Returns ``(True, result)``, or
    ``(False, None)`` when the child was killed at the deadline. An exception in the child is
    re-raised here (as itself when it pickles, else as RuntimeError with its text). Where
    ``fork`` is not available, ``fn`` runs in this process (soft deadline only)."""
    import multiprocessing as mp

    try:
        ctx = mp.get_context("fork")
    except ValueError:
        return True, fn(*args)
    recv, send = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            out = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - sent to the parent, which decides
            try:
                import pickle

                pickle.dumps(exc)
                out = (False, exc)
            except Exception:  # noqa: BLE001
                out = (False, RuntimeError(f"{type(exc).__name__}: {exc}"))
        send.send(out)
        send.close()

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    try:
        if recv.poll(max(0.0, deadline.left() + grace)):
            try:
                ok, value = recv.recv()
            except EOFError:  # the child died without an answer (killed, out of memory)
                proc.join(1.0)
                raise RuntimeError(f"the solver process died (exit code {proc.exitcode})") from None
            proc.join(1.0)
            if not ok:
                raise value
            return True, value
        return False, None
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
        recv.close()
