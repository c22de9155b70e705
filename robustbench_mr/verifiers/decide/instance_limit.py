"""One VNN-LIB instance under a hard wall-clock limit: the instance is decided in a forked child
process with the time left (its own soft limit), and the child is ended if it has not answered
shortly after the deadline, so no stage (a huge ONNX import, a native solver call that ignores
its time limit) can make the answer late. A killed child gives ``timeout``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from robustbench_mr.deadline import Deadline, run_with_hard_deadline
from robustbench_mr.verifiers.decide.instance import InstanceResult, InstanceStatus

# of the time left, kept for sending the answer back, writing it and exiting (a MILP's soft time
# limit overshoots by up to ~0.2 s: 10 s instances answered at 9.97 s with 0.2)
HANDBACK_SECONDS = 0.3
GRACE_SECONDS = 0.5  # after the deadline, before the child is ended


def preload_engines() -> None:
    """Import, once in a long-lived parent (a benchmark worker), every module a child may need,
    so each forked child inherits them instead of importing them again (torch, HiGHS, scipy,
    onnxruntime: a second or more per instance otherwise)."""
    import robustbench_mr.verifiers.bounds.chain_alpha  # noqa: F401
    import robustbench_mr.verifiers.bounds.lp_tighten  # noqa: F401
    import robustbench_mr.verifiers.decide.chain  # noqa: F401
    from robustbench_mr.verifiers.decide.input_split import _load_torch

    _load_torch()
    try:
        import onnxruntime  # noqa: F401 - confirms counterexamples
    except ImportError:
        pass


_WARM: set[tuple[str, int, int]] = set()


def warm_network(onnx: str | Path) -> None:
    """Load ``onnx`` into this (parent) process's network cache after an instance, off the
    instance's clock: the next instances of the same network fork with it already imported, as
    they would reuse it without the child. Loading still counts for the first instance."""
    from robustbench_mr.verifiers.decide.instance import _file_stamp, _load_network_cached

    key = (str(onnx), *_file_stamp(onnx))
    if key not in _WARM:
        try:
            _load_network_cached(*key)
        except Exception:  # noqa: BLE001 - a bad file was already reported by the instance itself
            return
        _WARM.add(key)


def _decide(check: Callable[..., InstanceResult], onnx: str | Path, vnnlib: str | Path, seconds: float, **options: object) -> InstanceResult:
    """The child's work: the allocator policy of every verifying process (freed buffers reused,
    no page faults per bound pass: ``utils/allocator.py``; speed only), then ``check``."""
    from robustbench_mr.utils.allocator import keep_freed_memory

    keep_freed_memory()
    return check(onnx, vnnlib, seconds, **options)


def instance_in_child(check: Callable[..., InstanceResult], onnx: str | Path, vnnlib: str | Path, deadline: Deadline,
                      **options: object) -> InstanceResult:
    """``check(onnx, vnnlib, seconds_left, **options)`` (``instance.check_instance``) in a child
    process, ended at ``deadline`` + GRACE_SECONDS."""
    left = max(deadline.left() - HANDBACK_SECONDS, 0.01)
    ok, result = run_with_hard_deadline(functools.partial(_decide, check, onnx, vnnlib, left, **options), (), deadline, grace=GRACE_SECONDS)
    if ok:
        return result
    return InstanceResult(InstanceStatus.TIMEOUT, deadline.elapsed(), message=f"ended at the time limit of {deadline.seconds:g} s")
