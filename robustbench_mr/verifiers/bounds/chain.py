"""Sound per-neuron bounds on the pre-activations of a chain ``Network`` over an input box,
computed by the one bound engine (``engine.py``) on the chain's graph (``form/from_chain.py``).

Methods:

* ``interval``: interval arithmetic (the paper's setup, Tjeng et al.'s cheapest bound).
* ``crown``: symbolic back-substitution to the input (CROWN / DeepPoly): each
  pre-activation is bounded by a linear function of the input, pushed back through every
  earlier layer with the triangle relaxation of unstable ReLUs (upper: chord; lower: slope 0
  or 1, whichever has the smaller area), then concretized on the box; only the neurons that
  interval arithmetic leaves unstable, and every output. Never looser than interval bounds
  (the engine intersects them, and recomputes the interval bounds of later layers from the
  tightened ones).
* ``lp`` (the verifier's default, ``DEFAULT_BOUNDS``): CROWN, then an LP (triangle
  relaxation, HiGHS) per bound of each neuron CROWN leaves unstable, layer by layer, within a
  time budget (``bounds/lp_tighten.py``); never looser than CROWN.
* ``alpha``: alpha-CROWN (``bounds/chain_alpha.py``): CROWN with the lower slope of each
  unstable ReLU optimized per bound; never looser than CROWN. ``alpha-lp``: the LP tightening,
  then alpha-CROWN on top of its bounds.

Soundness under floating point (the engine's rule, ``engine.py``): every bound is widened by
``SLACK`` times the *magnitude* of the sum that produced it (interval arithmetic:
``|W| (|center| + radius) + |b|``; back-substitution: |every bias and relaxation term| plus
``|A| max(|lower|, |upper|)`` over the box). Float64 round-off of such a sum is about
``n * 1.1e-16`` times its magnitude per layer, orders of magnitude below ``SLACK``. The margin
has no absolute part: it scales with the weights, so a function-preserving rescaling of a layer
(ReLU is positively homogeneous) rescales every bound and margin with it and cannot change a
verdict. Looser bounds only make the big-M MILP weaker, never wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robustbench_mr.verifiers.bounds.engine import GraphBounds, crown_rows, interval_boxes, node_bounds, spec_lower, unit_rows_lower
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.form.from_chain import affine_node, chain_boxes, chain_graph
from robustbench_mr.verifiers.form.ops import SLACK, Box  # noqa: F401 - SLACK re-exported: one widening constant

__all__ = ["SLACK", "Bounds", "interval_bounds", "crown_bounds", "spec_lower_bounds", "layer_crown", "graph_boxes"]


@dataclass(frozen=True, eq=False)
class Bounds:
    """Pre-activation bounds: ``lower[k]``, ``upper[k]`` for the k-th affine layer's outputs
    (the last entry is the network output)."""

    lower: tuple[np.ndarray, ...]
    upper: tuple[np.ndarray, ...]
    method: str

    @property
    def hidden(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Bounds of the inputs of each ReLU layer."""
        return list(zip(self.lower[:-1], self.upper[:-1]))

    def unstable_counts(self) -> list[int]:
        return [int(np.sum((l < 0) & (u > 0))) for l, u in self.hidden]

    @property
    def num_unstable(self) -> int:
        return sum(self.unstable_counts())


def _check_box(network: Network, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lo.shape[0] != network.num_inputs or hi.shape[0] != network.num_inputs:
        raise ValueError(f"input box has {lo.shape[0]} entries, the network takes {network.num_inputs}")
    if np.any(lo > hi):
        raise ValueError("input box has lower > upper")
    return lo, hi


def _t(v: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(v, dtype=np.float64)).reshape(1, -1)


def graph_boxes(network: Network, lo: np.ndarray, hi: np.ndarray, lower: list[np.ndarray] | tuple[np.ndarray, ...],
                upper: list[np.ndarray] | tuple[np.ndarray, ...]) -> list[Box]:
    """The engine's per-node boxes (batch of one) from per-layer pre-activation bounds: the
    input box, then each layer's bounds and the ReLU of them (exact). ``lower`` may hold
    fewer layers than the network (the first ones)."""
    return chain_boxes((_t(lo), _t(hi)), [(_t(l), _t(u)) for l, u in zip(lower, upper)], len(network.affines))


def _from_boxes(network: Network, boxes: list[Box], method: str) -> Bounds:
    K = len(network.affines)
    los = tuple(boxes[affine_node(k)][0][0].numpy().copy() for k in range(K))
    his = tuple(boxes[affine_node(k)][1][0].numpy().copy() for k in range(K))
    return Bounds(los, his, method)


def interval_bounds(network: Network, lower: np.ndarray, upper: np.ndarray) -> Bounds:
    lo, hi = _check_box(network, lower, upper)
    with torch.no_grad():
        return _from_boxes(network, interval_boxes(chain_graph(network), _t(lo), _t(hi)), "interval")


def crown_bounds(network: Network, lower: np.ndarray, upper: np.ndarray) -> Bounds:
    """Back-substitution bounds of every hidden neuron interval arithmetic leaves unstable and
    of every output, intersected with interval bounds (both are sound)."""
    lo, hi = _check_box(network, lower, upper)
    g = chain_graph(network)
    with torch.no_grad():
        boxes = list(node_bounds(g, _t(lo), _t(hi), "crown").boxes)
        out = crown_rows(g, g.output, boxes, every_row=True)
        if out is not None:
            boxes[g.output] = out
    return _from_boxes(network, boxes, "crown")


def layer_crown(network: Network, k: int, lower: list[np.ndarray], upper: list[np.ndarray], lo: np.ndarray, hi: np.ndarray,
                rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CROWN bounds (lower, upper) of the ``rows`` of affine layer k, back-substituted through
    the relaxations of the given bounds of layers < k (``lower[:k]``, ``upper[:k]``)."""
    g = chain_graph(network)
    boxes = graph_boxes(network, lo, hi, lower[:k], upper[:k])
    r = rows.size
    with torch.no_grad():
        low = unit_rows_lower(g, affine_node(k), torch.as_tensor(rows, dtype=torch.long), 1, boxes, None)[0].numpy()
    return low[:r], -low[r:]


def spec_lower_bounds(network: Network, bounds: Bounds, lower: np.ndarray, upper: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """Sound lower bounds of ``spec @ y`` (rows, outputs) over the box, by back-substitution
    with the relaxations of ``bounds`` (tighter than bounding y first; the bound from the output
    box is taken where it is better)."""
    lo, hi = _check_box(network, lower, upper)
    g = chain_graph(network)
    S = torch.as_tensor(np.atleast_2d(np.asarray(spec, dtype=np.float64)))
    gb = GraphBounds(graph_boxes(network, lo, hi, bounds.lower, bounds.upper), bounds.method)
    with torch.no_grad():
        return spec_lower(g, gb, S, "crown")[0].numpy().copy()
