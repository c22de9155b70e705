"""One VNN-COMP instance (an ONNX network + a VNN-LIB file) decided under one wall-clock
``Deadline`` that starts at the call (loading and parsing included): sampling, then PGD on the
property margin (``decide/falsify.py``), then the exact decision of the chain or graph form
(``chain.check_property`` / ``graph.check_graph_property``). Every ``sat`` is replayed with
onnxruntime on the original file before it is reported."""

from __future__ import annotations

import time
import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robustbench_mr.verifiers.decide import DEFAULT_BRANCHING
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.spec.property import Property
from robustbench_mr.verifiers.spec.vnnlib import read_vnnlib
from robustbench_mr.verifiers.status import PropertyStatus

if TYPE_CHECKING:
    from robustbench_mr.verifiers.decide.stages import StageClock

# An instance's answer has the same five values as one property's (status.PropertyStatus);
# here ``sat`` additionally means onnxruntime confirmed the counterexample.
InstanceStatus = PropertyStatus


@dataclass(frozen=True, eq=False)
class InstanceResult:
    status: InstanceStatus
    seconds: float
    counterexample: np.ndarray | None = None  # flat input, exactly the values onnxruntime was run on
    output: np.ndarray | None = None  # onnxruntime's outputs at the counterexample
    message: str = ""
    num_properties: int = 0
    property_statuses: tuple[str, ...] = ()
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, all properties (``stages.py``)
    search: str = ""  # the last search that ran (attack, bounds, input-split, relu-bab, relu-bab+milp, milp)
    domains: int = 0
    max_depth: int = 0


BOX_TOLERANCE = 1e-6  # a counterexample may leave the box by this much (after the cast to the model dtype)


def confirm_counterexample(onnx_path: str | Path, prop: Property, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Clip ``x`` into the box, cast it to the model's input dtype, run onnxruntime on the
    original file, and return (input, output) if the input is in the box (within
    ``BOX_TOLERANCE``) and the output lies in the unsafe set (no tolerance); else None."""
    from robustbench_mr.verifiers.form.chain_from_onnx import onnx_input_dtype, onnxruntime_forward

    x = np.clip(np.asarray(x, dtype=np.float64).reshape(-1), prop.lower, prop.upper)
    x = x.astype(onnx_input_dtype(onnx_path)).astype(np.float64)
    if not prop.contains_input(x, tol=BOX_TOLERANCE):
        return None
    y = onnxruntime_forward(onnx_path, x)
    if not prop.is_violated_by(y):
        return None
    return x, y


def _file_stamp(path: str | Path) -> tuple[int, int]:
    try:
        st = Path(path).stat()
    except OSError:
        return (0, 0)  # load_onnx reports the missing file
    return (st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _load_network_cached(path: str, mtime_ns: int, size: int) -> Network:
    """Benchmarks reuse a few networks for many properties: import each once per process
    (keyed by the file's modification time and size, so an edited file is read again)."""
    from robustbench_mr.errors import UnsupportedLayerError
    from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx

    try:
        return load_onnx(path)
    except UnsupportedLayerError:
        # not a chain (residual adds, pooling): the graph form, decided by decide/graph.py
        from robustbench_mr.verifiers.form.from_onnx import load_onnx_graph

        return load_onnx_graph(path)


FALSIFY_SAMPLES = 256  # random points tried before the MILP (cheap; a hit is confirmed by onnxruntime)


def _violation_margin(prop: Property, y: np.ndarray) -> np.ndarray:
    """Per row of ``y`` (N, outputs): min over clauses of max over rows of C y - d (<= 0: unsafe)."""
    margins = [np.max(y @ c.C.T - c.d, axis=1) if c.C.shape[0] else np.full(len(y), -np.inf) for c in prop.clauses]
    return np.min(np.stack(margins), axis=0) if margins else np.full(len(y), np.inf)


def _falsify(onnx_path: str | Path, net: Network, prop: Property, seed: int, samples: int) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray]:
    """Try the box centre and random points: (confirmed counterexample or None, the point
    closest to violating, as a warm start for the solver)."""
    rng = np.random.default_rng(seed)
    pts = np.vstack([(prop.lower + prop.upper) / 2, rng.uniform(prop.lower, prop.upper, size=(samples, prop.lower.size))])
    margin = _violation_margin(prop, net.forward(pts))
    order = np.argsort(margin)
    for k in order[:3]:
        if margin[k] <= 0:
            confirmed = confirm_counterexample(onnx_path, prop, pts[k])
            if confirmed is not None:
                return confirmed, pts[k]
    return None, pts[order[0]]


def check_instance(onnx_path: str | Path, vnnlib_path: str | Path, timeout: float, falsify_samples: int = FALSIFY_SAMPLES, **solver_options: object) -> InstanceResult:
    """Decide one VNN-COMP instance with the exact verifier (``verifiers.solve.check_property``).

    sat if some Property has a counterexample that onnxruntime confirms on the original file;
    unsat only if every Property is unsat; a sat the check does not confirm gives unknown
    (never sat). Bad files raise :class:`UserError`; solver failures give ``error``.
    ``timeout`` counts from the call (loading the model and parsing the property included); a
    hard limit around the whole process is ``instance_limit.instance_in_child``. The result's
    ``stages`` add up where the time went (load, attack, bounds, input_split, bab, milp).
    """
    from robustbench_mr.verifiers.decide.stages import StageClock

    clock = StageClock()
    r = _check_instance(onnx_path, vnnlib_path, timeout, falsify_samples, clock, **solver_options)
    clock.pause()
    return dataclasses.replace(r, stages=dict(clock.seconds), search=clock.search, domains=clock.domains, max_depth=clock.max_depth)


def _check_instance(onnx_path: str | Path, vnnlib_path: str | Path, timeout: float, falsify_samples: int, clock: "StageClock",
                    **solver_options: object) -> InstanceResult:
    from robustbench_mr.deadline import Deadline, DeadlineExceeded

    start = time.perf_counter()
    deadline = Deadline(timeout, start=start)
    clock.enter("load")
    try:
        net = _load_network_cached(str(onnx_path), *_file_stamp(onnx_path))
        deadline.check("loading the ONNX model")
        props = read_vnnlib(vnnlib_path, net.num_inputs, net.num_outputs, deadline=deadline)
    except DeadlineExceeded as exc:
        return InstanceResult(InstanceStatus.TIMEOUT, time.perf_counter() - start, message=str(exc))
    from robustbench_mr.verifiers.decide.chain import check_property  # after the inputs are known to be good
    statuses: list[str] = []
    messages: list[str] = []
    for k, prop in enumerate(props):
        remaining = timeout - (time.perf_counter() - start)
        if remaining <= 0:
            statuses.append("timeout")
            messages.append(f"property {k}: no time left")
            continue
        warm = None
        clock.enter("attack", "attack")
        if falsify_samples > 0:
            confirmed, warm = _falsify(onnx_path, net, prop, k, falsify_samples)
            if confirmed is not None:
                statuses.append("sat")
                messages.append(f"property {k}: counterexample found by sampling")
                return InstanceResult(InstanceStatus.SAT, time.perf_counter() - start, confirmed[0], confirmed[1], "; ".join(messages), len(props), tuple(statuses))
            # then PGD on the property's own margin (verifiers/decide/falsify.py), confirmed by onnxruntime;
            # not for low-dimensional inputs, where the input split searches the box itself
            from robustbench_mr.verifiers.decide.falsify import PGD_MIN_INPUTS, spec_pgd, torch_forward_of

            hit = spec_pgd(torch_forward_of(net), prop, deadline, seed=k) \
                if prop.lower.size >= PGD_MIN_INPUTS else None
            confirmed = confirm_counterexample(onnx_path, prop, hit[0]) if hit is not None else None
            if confirmed is not None:
                statuses.append("sat")
                messages.append(f"property {k}: counterexample found by PGD on the property margin")
                return InstanceResult(InstanceStatus.SAT, time.perf_counter() - start, confirmed[0], confirmed[1], "; ".join(messages), len(props), tuple(statuses))
        clock.pause()
        try:  # the instance's one deadline (from its first byte), asked by every stage
            if isinstance(net, Network):
                r = check_property(net, prop, timeout=deadline, warm_start=warm, **solver_options)
            else:
                from robustbench_mr.verifiers.decide.graph import check_graph_property

                r = check_graph_property(net, prop, deadline, bounds=str(solver_options.get("bounds", "alpha")),
                                         solver=str(solver_options.get("solver", "highs")),
                                         branching=str(solver_options.get("branching", DEFAULT_BRANCHING)))
        except Exception as exc:  # noqa: BLE001 - one instance's failure must not stop a benchmark
            statuses.append("error")
            messages.append(f"property {k}: {type(exc).__name__}: {exc}")
            continue
        clock.absorb(r)
        status = getattr(r.status, "value", str(r.status))
        if status == "sat":
            if r.counterexample is None:
                statuses.append("unknown")
                messages.append(f"property {k}: sat without a counterexample")
                continue
            confirmed = confirm_counterexample(onnx_path, prop, r.counterexample)
            if confirmed is None:
                statuses.append("unknown")
                messages.append(f"property {k}: counterexample not confirmed by onnxruntime")
                continue
            x, y = confirmed
            statuses.append("sat")
            return InstanceResult(InstanceStatus.SAT, time.perf_counter() - start, x, y, "; ".join(messages), len(props), tuple(statuses))
        statuses.append(status)
        if status != "unsat" and getattr(r, "message", ""):
            messages.append(f"property {k}: {r.message}")
    seconds = time.perf_counter() - start
    if all(s == "unsat" for s in statuses):
        final = InstanceStatus.UNSAT
    elif "unknown" in statuses:
        final = InstanceStatus.UNKNOWN
    elif "error" in statuses:
        final = InstanceStatus.ERROR
    elif "timeout" in statuses:
        final = InstanceStatus.TIMEOUT
    else:
        final = InstanceStatus.UNKNOWN
    return InstanceResult(final, seconds, None, None, "; ".join(messages), len(props), tuple(statuses))
