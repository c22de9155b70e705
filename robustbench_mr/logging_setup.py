"""Python ``logging`` for the CLIs, configured once at entry (``run_main``) from ``-v`` / ``-q``.

=========  ====================================  =====================================
flags      robustbench_mr (progress lines, ...)  other libraries
=========  ====================================  =====================================
(none)     INFO                                  WARNING
-q         WARNING (no progress lines or bars)   WARNING
-qq        ERROR                                 ERROR
-v         DEBUG                                 INFO; AutoAttack's ``auto-attack`` DEBUG
-vv        DEBUG                                 DEBUG
=========  ====================================  =====================================

Records go to the current ``sys.stderr`` (looked up per record, so a test's captured stderr
works). The library itself never configures logging: used from Python, nothing is printed
unless the caller configures logging.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

OURS = "robustbench_mr"
# third-party loggers that log only at DEBUG and are worth seeing with -v
VERBOSE_THIRD_PARTY = ("auto-attack",)


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stderr`` is when a record is written."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


class _Formatter(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        mine = record.name == OURS or record.name.startswith(OURS + ".")
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prog}: {level}{msg}" if mine else f"{self.prog} [{record.name}]: {level}{msg}"


def levels(verbose: int = 0, quiet: int = 0) -> tuple[int, int]:
    """``(ours, third_party)`` log levels for ``-v`` x verbose and ``-q`` x quiet."""
    if quiet >= 2:
        return logging.ERROR, logging.ERROR
    if quiet:
        return logging.WARNING, logging.WARNING
    if verbose >= 2:
        return logging.DEBUG, logging.DEBUG
    if verbose:
        return logging.DEBUG, logging.INFO
    return logging.INFO, logging.WARNING


def configure_logging(prog: str, verbose: int = 0, quiet: int = 0) -> Callable[[], None]:
    """Install the one stderr handler on the root logger (replacing ours from an earlier call
    in the same process) and set the levels of the table above. Returns the function that puts
    the handlers and levels back as they were (``run_main`` calls it when the command ends)."""
    ours, others = levels(verbose, quiet)
    root = logging.getLogger()
    touched = [root, logging.getLogger(OURS), *(logging.getLogger(n) for n in VERBOSE_THIRD_PARTY)]
    saved_levels = [(lg, lg.level) for lg in touched]
    saved_handlers = list(root.handlers)
    for h in list(root.handlers):
        if getattr(h, "_robustbench_mr", False):
            root.removeHandler(h)
    handler = _StderrHandler()
    handler._robustbench_mr = True  # type: ignore[attr-defined]
    handler.setFormatter(_Formatter(prog))
    root.addHandler(handler)
    root.setLevel(others)
    logging.getLogger(OURS).setLevel(ours)
    for name in VERBOSE_THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose and not quiet else logging.NOTSET)

    def restore() -> None:
        root.removeHandler(handler)
        for h in saved_handlers:
            if h not in root.handlers:
                root.addHandler(h)
        for lg, level in saved_levels:
            lg.setLevel(level)

    return restore
