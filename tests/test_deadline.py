"""The one deadline object and the hard limit around a child process."""

from __future__ import annotations

import time

import pytest

from robustbench_mr.deadline import Deadline, DeadlineExceeded, program_start, run_with_hard_deadline
from robustbench_mr.errors import UserError


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _fail() -> None:
    raise UserError("bad.vnnlib:3:1: unexpected ')'")


def test_deadline_counts_down_and_raises() -> None:
    d = Deadline(0.2)
    assert 0 < d.left() <= 0.2 and not d.expired()
    d.check("a stage")
    time.sleep(0.25)
    assert d.expired() and d.left() <= 0
    with pytest.raises(DeadlineExceeded, match="while a stage"):
        d.check("a stage")


def test_an_answer_in_time_comes_back() -> None:
    assert run_with_hard_deadline(_sleep, (0.05,), Deadline(5.0)) == (True, 0.05)


def test_a_late_child_is_ended_at_the_deadline() -> None:
    t0 = time.perf_counter()
    ok, value = run_with_hard_deadline(_sleep, (30.0,), Deadline(0.5), grace=0.2)
    assert (ok, value) == (False, None)
    assert time.perf_counter() - t0 < 3.0  # 0.5 s + 0.2 s grace, on a loaded machine


def test_an_error_in_the_child_is_raised_here() -> None:
    with pytest.raises(UserError, match="bad.vnnlib:3:1"):
        run_with_hard_deadline(_fail, (), Deadline(5.0))


def test_program_start_is_now_when_called_from_python() -> None:
    assert abs(program_start() - time.perf_counter()) < 0.5  # not the (long-lived) test process's start
