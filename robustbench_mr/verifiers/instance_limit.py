"""One VNN-LIB instance under a hard wall-clock limit: the instance is decided in a forked child
process with the time left (its own soft limit), and the child is ended if it has not answered
shortly after the deadline, so no stage (a huge ONNX import, a native solver call that ignores
its time limit) can make the answer late. A killed child gives ``timeout``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from robustbench_mr.deadline import Deadline, run_with_hard_deadline
from robustbench_mr.verifiers.vnnlib import InstanceResult, InstanceStatus

HANDBACK_SECONDS = 0.2  # of the time left, kept for sending the answer back and writing it
GRACE_SECONDS = 0.5  # after the deadline, before the child is ended


def instance_in_child(check: Callable[..., InstanceResult], onnx: str | Path, vnnlib: str | Path, deadline: Deadline,
                      **options: object) -> InstanceResult:
    """``check(onnx, vnnlib, seconds_left, **options)`` (``vnnlib.check_instance``) in a child
    process, ended at ``deadline`` + GRACE_SECONDS."""
    left = max(deadline.left() - HANDBACK_SECONDS, 0.01)
    ok, result = run_with_hard_deadline(functools.partial(check, onnx, vnnlib, left, **options), (), deadline, grace=GRACE_SECONDS)
    if ok:
        return result
    return InstanceResult(InstanceStatus.TIMEOUT, deadline.elapsed(), message=f"ended at the time limit of {deadline.seconds:g} s")
