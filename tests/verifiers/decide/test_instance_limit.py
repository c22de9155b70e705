"""decide/instance_limit.instance_in_child: the answer comes back from the forked child, a child
that overruns is ended at the deadline (a timeout, never a verdict), and the child runs under the
verifier's allocator policy."""

from __future__ import annotations

import os
import time

import pytest

from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.decide import instance_limit
from robustbench_mr.verifiers.decide.instance import InstanceResult, InstanceStatus

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the hard limit needs fork")


def _report_policy(onnx: str, vnnlib: str, seconds: float, **options: object) -> InstanceResult:
    # runs in the child: says whether the allocator policy was set there, and in which process
    kept = os.environ.get("RBMR_TEST_KEPT") == str(os.getpid())
    return InstanceResult(InstanceStatus.UNSAT, 0.0, message=f"kept={kept} pid={os.getpid()} seconds={seconds:.2f} {options}")


def test_child_answers_under_the_allocator_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    import robustbench_mr.utils.allocator as allocator

    def mark() -> bool:
        os.environ["RBMR_TEST_KEPT"] = str(os.getpid())
        return True

    monkeypatch.setattr(allocator, "keep_freed_memory", mark)
    monkeypatch.delenv("RBMR_TEST_KEPT", raising=False)
    r = instance_limit.instance_in_child(_report_policy, "a.onnx", "b.vnnlib", Deadline(10.0), bounds="crown")
    assert r.status is InstanceStatus.UNSAT
    assert "kept=True" in r.message and f"pid={os.getpid()}" not in r.message  # set in the child, not here
    assert "'bounds': 'crown'" in r.message
    seconds = float(r.message.split("seconds=")[1].split()[0])
    assert 9.0 < seconds <= 10.0 - instance_limit.HANDBACK_SECONDS  # the child's own limit leaves the hand-back time
    assert "RBMR_TEST_KEPT" not in os.environ  # this process's policy is untouched


def _overrun(onnx: str, vnnlib: str, seconds: float, **options: object) -> InstanceResult:
    time.sleep(30.0)
    return InstanceResult(InstanceStatus.UNSAT, 30.0, message="too late")


def test_overrunning_child_is_ended_at_the_deadline() -> None:
    deadline = Deadline(0.5)
    r = instance_limit.instance_in_child(_overrun, "a.onnx", "b.vnnlib", deadline)
    assert r.status is InstanceStatus.TIMEOUT
    assert deadline.elapsed() < 0.5 + instance_limit.GRACE_SECONDS + 1.0
