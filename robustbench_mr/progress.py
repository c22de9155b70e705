"""Progress of a long per-input loop: counts by status, rate and ETA.

On a terminal: a tqdm bar (a plain live line where tqdm is not installed). Elsewhere (a pipe,
a log file, a batch job): one status line through ``logging`` (logger
``robustbench_mr.progress``, level INFO, so ``-q`` hides it) at least every ``interval``
seconds, also while no input finishes (a background thread keeps the beat), and a last line
at the end::

    verify: 40/100 (verified 31, falsified 8, timeout 1), 1.30 inputs/s, elapsed 31s, ETA 46s

The clock is injectable (``clock=``) so tests drive the interval without sleeping.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TextIO

LOGGER = "robustbench_mr.progress"
DEFAULT_INTERVAL = 10.0  # seconds between status lines off a terminal


def format_duration(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """``update(status)`` once per finished input (or ``update(status, n)`` / ``add(statuses)``
    per batch); ``close()`` at the end (also a context manager). ``enabled=False``: silent."""

    def __init__(self, total: int, desc: str, *, unit: str = "input", enabled: bool = True, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, stream: TextIO | None = None, logger: logging.Logger | None = None,
                 heartbeat: bool | None = None, tty: bool | None = None) -> None:
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.interval = float(interval)
        self.clock = clock
        self.stream = stream if stream is not None else sys.stderr
        self.log = logger or logging.getLogger(LOGGER)
        self.counts: Counter[str] = Counter()
        self.done = 0
        self.postfix: dict[str, Any] = {}
        self.start = clock()
        self._last_line = self.start
        self._lock = threading.Lock()
        self._closed = False
        self._bar: Any = None
        self._live = False  # the plain live line (a terminal without tqdm)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tty = False
        if not enabled:
            return
        if tty is None:
            try:
                tty = bool(self.stream.isatty())
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        if tty:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, leave=False, dynamic_ncols=True)
            except ImportError:
                self._live = True
        elif heartbeat if heartbeat is not None else clock is time.monotonic:
            self._thread = threading.Thread(target=self._beat, name=f"progress {desc}", daemon=True)
            self._thread.start()

    # --- figures ---------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return max(0.0, self.clock() - self.start)

    @property
    def rate(self) -> float | None:
        """Units finished per second in this run (None before the first)."""
        e = self.elapsed
        return self.done / e if self.done and e > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None while unknown)."""
        r = self.rate
        if r is None:
            return None
        return max(0, self.total - self.done) / r

    def line(self, final: bool = False) -> str:
        parts = [f"{self.done}/{self.total}"]
        if self.counts:
            parts[0] += " (" + ", ".join(f"{k} {v}" for k, v in self.counts.most_common()) + ")"
        r = self.rate
        units = self.unit + ("es" if self.unit.endswith(("s", "x", "ch", "sh")) else "s")
        parts.append(f"{r:.2f} {units}/s" if r is not None else f"0 {units}/s")
        parts.append(f"elapsed {format_duration(self.elapsed)}")
        if not final:
            eta = self.eta
            parts.append(f"ETA {format_duration(eta)}" if eta is not None else "ETA unknown")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        head = ("done " if self.done >= self.total else "stopped at ") if final else ""
        return f"{self.desc}: {head}" + ", ".join(parts)

    # --- events ----------------------------------------------------------------------------
    def update(self, status: str | None = None, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if status is not None:
                self.counts[str(status)] += n
        if self._bar is not None:
            self._bar.update(n)
            if self.counts:
                self._bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in self.counts.most_common()), refresh=False)
        self._tick()

    def add(self, statuses: Iterable[Any]) -> None:
        """One batch: ``update`` each status (an enum's ``value`` is used)."""
        batch = Counter(str(getattr(s, "value", s)) for s in statuses)
        with self._lock:
            self.done += sum(batch.values())
            self.counts.update(batch)
        if self._bar is not None:
            self._bar.update(sum(batch.values()))
            self._bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in self.counts.most_common()), refresh=False)
        self._tick()

    def set_postfix(self, **fields: Any) -> None:
        """Extra figures at the end of the line (e.g. ``loss=0.41``)."""
        self.postfix.update(fields)
        if self._bar is not None:
            self._bar.set_postfix(refresh=False, **fields)

    def echo(self, message: str) -> None:
        """A plain line on the stream (e.g. an epoch's summary), printed above the bar."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
            return
        if self._live:
            self.stream.write("\r\033[K")
        print(message, file=self.stream, flush=True)

    def write(self, message: str) -> None:
        """A message that must not be lost under the bar (e.g. a wrong answer): a warning."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            if self._live:
                self.stream.write("\r\033[K")
            self.log.warning(message)

    def _tick(self) -> None:
        if not self.enabled or self._bar is not None:
            return
        now = self.clock()
        if self._live:
            if now - self._last_line >= 0.5 or self.done >= self.total:
                self._last_line = now
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
            return
        if now - self._last_line >= self.interval:
            self.emit()

    def emit(self, final: bool = False) -> None:
        """Log the status line now (off a terminal)."""
        with self._lock:
            self._last_line = self.clock()
            text = self.line(final)
        self.log.info(text)

    def _beat(self) -> None:
        """Off a terminal: the line also comes while nothing finishes (one slow input)."""
        while not self._stop.wait(min(1.0, self.interval)):
            if self.clock() - self._last_line >= self.interval:
                self.emit()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._live:
            self.stream.write("\r\033[K")
            self.stream.flush()
        elif self.total or self.done:
            self.emit(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
