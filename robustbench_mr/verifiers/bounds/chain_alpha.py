"""alpha-CROWN bounds of a chain ``Network`` (``--bounds alpha`` / ``alpha-lp``), computed by
the one bound engine (``engine.alpha_lower``) on the chain's graph: CROWN back-substitution
where the lower linear bound ``relu(z) >= alpha z`` of every unstable ReLU has its own slope
alpha in [0, 1] per bound (per target neuron or spec row, per neuron), chosen by projected Adam
on the bound itself.

Any alpha in [0, 1] gives a sound lower bound of relu on [l, u] with l < 0 < u (z >= 0:
relu z = z >= alpha z; z < 0: relu z = 0 >= alpha z), and the engine clamps the slopes' values
into [0, 1] inside the ReLU's backward, so every iterate's bound is sound (widened by ``SLACK``
like every other bound); the best per row is kept and intersected with CROWN's: never looser
than CROWN, whatever the optimizer did.

Layer by layer: the unstable neurons of hidden layer k (both bounds, as 2m rows) are optimized
with the already-tightened bounds of layers < k fixed (they give the upper chords and which
neurons are unstable), then the network outputs, then (``alpha_spec_lower_bounds``) the rows of
a property's clauses. A time budget stops it (CROWN's bounds for what is left).
"""

from __future__ import annotations

import numpy as np
import torch

from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.bounds.chain import Bounds, _check_box, crown_bounds, graph_boxes, spec_lower_bounds
from robustbench_mr.verifiers.bounds.engine import alpha_lower, spec_coefficients, unit_rows
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.form.from_chain import affine_node, chain_graph

ALPHA_ITERATIONS = 30
ALPHA_LR = 0.2
DEFAULT_ALPHA_BUDGET = 5.0  # seconds for the whole pass when the caller gives none


class _OneThread:
    """torch on one thread while optimizing: the matrices are small, and on a shared
    2-core machine torch's thread pool oversubscribed slows each step ~10x."""

    def __enter__(self) -> None:
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.n)


def alpha_bounds(network: Network, lower: np.ndarray, upper: np.ndarray, time_budget: float | None = None, base: Bounds | None = None,
                 iterations: int = ALPHA_ITERATIONS) -> Bounds:
    """CROWN bounds (``base`` if given), then alpha-optimized bounds of each neuron still
    unstable and of the outputs, layer by layer, within ``time_budget`` seconds; never looser
    than ``base``."""
    deadline = Deadline(DEFAULT_ALPHA_BUDGET if time_budget is None else max(float(time_budget), 0.0))
    lo, hi = _check_box(network, lower, upper)
    cb = base if base is not None else crown_bounds(network, lo, hi)
    g = chain_graph(network)
    K = len(network.affines)
    los, his = [cb.lower[0].copy()], [cb.upper[0].copy()]
    with _OneThread():
        for k in range(1, K):
            l, u = cb.lower[k].copy(), cb.upper[k].copy()
            rows = np.arange(l.size) if k == K - 1 else np.nonzero((l < 0) & (u > 0))[0]
            if rows.size and not deadline.expired():
                boxes = graph_boxes(network, lo, hi, los, his)
                r = rows.size
                E = unit_rows(torch.as_tensor(rows, dtype=torch.long), 1, (l.size,), torch.float64, "cpu")  # z and -z, each row its own slopes
                low = alpha_lower(g, affine_node(k), E, boxes, deadline, iterations, ALPHA_LR)[0].numpy()
                l[rows] = np.maximum(l[rows], low[:r])
                u[rows] = np.minimum(u[rows], -low[r:])
                l = np.minimum(l, u)
            los.append(l)
            his.append(u)
    return Bounds(tuple(los), tuple(his), "alpha")


def alpha_spec_lower_bounds(network: Network, bounds: Bounds, lower: np.ndarray, upper: np.ndarray, spec: np.ndarray,
                            time_budget: float | None = None, iterations: int = ALPHA_ITERATIONS) -> np.ndarray:
    """Sound lower bounds of ``spec @ y`` over the box: the alpha-optimized back-substitution
    through the relaxations of ``bounds``, never below ``spec_lower_bounds`` (fixed slopes)."""
    lo, hi = _check_box(network, lower, upper)
    S = np.atleast_2d(np.asarray(spec, dtype=np.float64))
    plain = spec_lower_bounds(network, bounds, lo, hi, S)
    deadline = Deadline(DEFAULT_ALPHA_BUDGET if time_budget is None else max(float(time_budget), 0.0))
    g = chain_graph(network)
    boxes = graph_boxes(network, lo, hi, bounds.lower, bounds.upper)
    with _OneThread():
        low = alpha_lower(g, g.output, spec_coefficients(g, torch.as_tensor(S), 1), boxes, deadline, iterations, ALPHA_LR)[0].numpy()
    return np.maximum(plain, low)
