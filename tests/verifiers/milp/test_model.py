"""The chain MILP's HiGHS call and interrupts: Ctrl-C / SIGTERM arrive in Python inside HiGHS's
MIP callback; they must stop the solve and propagate (a KeyboardInterrupt), never come back as
one input's "HiGHS run() returned kError" while the run goes on."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from robustbench_mr.verifiers.bounds.compute import compute_bounds
from robustbench_mr.verifiers.milp.model import build_clause_milp, solve_clause_milp
from robustbench_mr.verifiers.spec.property import robustness_property

from tests.verifiers.decide.test_exactness import random_net


def _hard_milp():
    rng = np.random.default_rng(0)
    net = random_net(rng, [10, 60, 60, 60, 5], bias_scale=0.1)
    x = rng.uniform(0.3, 0.7, size=10)
    prop = robustness_property(x, int(np.argmax(net.forward(x))), 0.3, 5)
    b = compute_bounds(net, prop.lower, prop.upper, "crown")
    return build_clause_milp(net, b, prop.lower, prop.upper, prop.clauses[0])


def test_an_interrupt_during_the_solve_propagates() -> None:
    probe = solve_clause_milp(_hard_milp(), 3.0, early_stop=False)
    assert probe.seconds >= 1.0, "the MILP must outlast the alarm for this test to mean anything"

    def send_ctrl_c(signum: int, frame: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, half a second into the solve

    previous = signal.signal(signal.SIGALRM, send_ctrl_c)
    # Python's own Ctrl-C handler, whatever this process inherited: a shell that starts a job in
    # the background (``cmd &``, no job control) has it ignore SIGINT, and then nothing is raised
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            solve_clause_milp(_hard_milp(), 30.0, early_stop=False)
        assert time.perf_counter() - t0 < 10.0  # stopped, not solved to the end
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signal.SIGINT, previous_int)
