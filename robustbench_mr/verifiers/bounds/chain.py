"""Sound per-neuron bounds on the pre-activations of a ``Network`` over an input box.

Methods:

* ``interval``: interval arithmetic (the paper's setup, Tjeng et al.'s cheapest bound).
* ``crown``: symbolic back-substitution to the input (CROWN / DeepPoly): each
  pre-activation is bounded by a linear function of the input, pushed back through every
  earlier layer with the triangle relaxation of unstable ReLUs (upper: chord; lower: slope 0
  or 1, whichever has the smaller area), then concretized on the box. Never looser than
  interval bounds (we take the intersection).
* ``lp`` (the verifier's default, ``DEFAULT_BOUNDS``): CROWN, then an LP (triangle
  relaxation, HiGHS) per bound of each neuron CROWN leaves unstable, layer by layer, within a
  time budget (``bounds/lp_tighten.py``); never looser than CROWN.
* ``alpha``: alpha-CROWN (``bounds/chain_alpha.py``): CROWN with the lower slope of each unstable ReLU
  optimized per bound by projected gradient descent, the bounds recomputed in float64 with the
  final slopes; never looser than CROWN. ``alpha-lp``: the LP tightening, then alpha-CROWN on
  top of its bounds.

Soundness under floating point: every bound is widened by ``SLACK`` times the *magnitude* of
the sum that produced it: for interval arithmetic ``|W| max(|l|, |u|) + |b|`` of the layer's
inputs, for back-substitution the sum of |every bias and relaxation-intercept term| plus
``|A| max(|lower|, |upper|)`` of the final linear form over the box. Float64 round-off of such
a sum is about ``n * 1.1e-16`` times its magnitude per layer, four orders of magnitude below
``SLACK`` for the widths and depths here, so no true value falls outside [lower, upper]. The
margin has no absolute part: it scales with the weights, so a function-preserving rescaling of
a layer (ReLU is positively homogeneous) rescales every bound and margin with it and cannot
change a verdict. Looser bounds only make the big-M MILP weaker, never wrong.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from robustbench_mr.verifiers.form.chain import Affine, Network

SLACK = 1e-9  # widening of every bound, relative to the magnitude of the sum that produced it, against float64 round-off


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


# Convolutions become dense affine maps that are mostly zeros (cifar_small_8px's first layer:
# 4096 x 3072, 1.6% nonzero); their products go through scipy.sparse (same float64 sums of the
# same nonzero terms, so the widening below covers their round-off as before).
SPARSE_DENSITY = 0.25
_SPARSE: "weakref.WeakKeyDictionary[Affine, tuple[sp.csr_matrix, sp.csr_matrix] | None]" = weakref.WeakKeyDictionary()


def _sparse(layer: Affine) -> tuple[sp.csr_matrix, sp.csr_matrix] | None:
    """(W, |W|) as CSR when the weight is sparse enough to gain from it, else None (cached)."""
    try:
        return _SPARSE[layer]
    except KeyError:
        pass
    W = layer.weight
    out = None
    if W.size >= 4096 and np.count_nonzero(W) <= SPARSE_DENSITY * W.size:
        Ws = sp.csr_matrix(W)
        out = (Ws, abs(Ws))
    _SPARSE[layer] = out
    return out


def _right_mul(A: np.ndarray, layer: Affine) -> np.ndarray:
    """A @ layer.weight (sparse when that pays)."""
    s = _sparse(layer)
    if s is None:
        return A @ layer.weight
    return np.asarray((s[0].T @ A.T).T)


def _unit_rows(n: int, rows: np.ndarray) -> np.ndarray:
    """``np.eye(n)[rows]`` without building the n x n identity."""
    E = np.zeros((rows.size, n))
    E[np.arange(rows.size), rows] = 1.0
    return E


def _widen(lo: np.ndarray, hi: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] widened by ``SLACK * scale`` (scale: the magnitude of the terms that were summed)."""
    m = SLACK * np.asarray(scale, dtype=np.float64)
    return lo - m, hi + m


def _abs_mul(layer: Affine, v: np.ndarray) -> np.ndarray:
    """|W| @ v (sparse when that pays)."""
    s = _sparse(layer)
    return np.abs(layer.weight) @ v if s is None else s[1] @ v


def _affine_interval(layer: Affine, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center, radius = (hi + lo) / 2.0, (hi - lo) / 2.0
    s = _sparse(layer)
    if s is None:
        c = layer.weight @ center + layer.bias
        r = np.abs(layer.weight) @ radius
    else:
        c = s[0] @ center + layer.bias
        r = s[1] @ radius
    scale = _abs_mul(layer, np.abs(center) + radius) + np.abs(layer.bias)  # |every term| of both sums
    return _widen(c - r, c + r, scale)


def _check_box(network: Network, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lo.shape[0] != network.num_inputs or hi.shape[0] != network.num_inputs:
        raise ValueError(f"input box has {lo.shape[0]} entries, the network takes {network.num_inputs}")
    if np.any(lo > hi):
        raise ValueError("input box has lower > upper")
    return lo, hi


def interval_bounds(network: Network, lower: np.ndarray, upper: np.ndarray) -> Bounds:
    lo, hi = _check_box(network, lower, upper)
    los, his = [], []
    for k, layer in enumerate(network.affines):
        if k > 0:
            lo, hi = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        lo, hi = _affine_interval(layer, lo, hi)
        los.append(lo)
        his.append(hi)
    return Bounds(tuple(los), tuple(his), "interval")


def _relu_relaxation(l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear bounds of relu(z) for z in [l, u]:  lo_slope*z <= relu(z) <= up_slope*z + up_icpt."""
    active = l >= 0
    unstable = (l < 0) & (u > 0)
    up_slope = np.where(active, 1.0, 0.0)
    up_icpt = np.zeros_like(l)
    denom = np.where(unstable, u - l, 1.0)
    chord = u / denom
    up_slope = np.where(unstable, chord, up_slope)
    up_icpt = np.where(unstable, -l * chord, up_icpt)
    # lower line through the origin: slope 1 if the active part is larger (smaller area), else 0
    lo_slope = np.where(active, 1.0, np.where(unstable & (u > -l), 1.0, 0.0))
    return lo_slope, up_slope, up_icpt


def backsubstitute(network: Network, k: int, A: np.ndarray, c: np.ndarray, relax: list[tuple[np.ndarray, np.ndarray, np.ndarray]], lo: np.ndarray, hi: np.ndarray,
                   magnitude: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Upper bounds of ``A @ z_k + c`` over the box, z_k = output of affine layer k, as a
    linear function of the input pushed back through layers k..0 (relaxations of ReLUs
    0..k-1 in ``relax``). ``magnitude``: also return the magnitude of the sum (|every constant
    term| + |A_final| max(|lo|, |hi|)), the scale of its round-off (``SLACK``)."""
    affines = network.affines
    c_abs = np.abs(c)
    for i in range(k, -1, -1):
        layer = affines[i]
        c = c + A @ layer.bias
        if magnitude:
            c_abs = c_abs + np.abs(A) @ np.abs(layer.bias)
        A = _right_mul(A, layer)
        if i > 0:
            lo_slope, up_slope, up_icpt = relax[i - 1]
            pos = np.maximum(A, 0.0)
            neg = np.minimum(A, 0.0)
            gap = pos @ up_icpt  # >= 0 term by term
            c = c + gap
            c_abs = c_abs + gap
            A = pos * up_slope + neg * lo_slope
    value = c + np.maximum(A, 0.0) @ hi + np.minimum(A, 0.0) @ lo
    if not magnitude:
        return value
    return value, c_abs + np.abs(A) @ np.maximum(np.abs(lo), np.abs(hi))


def crown_bounds(network: Network, lower: np.ndarray, upper: np.ndarray) -> Bounds:
    """Back-substitution bounds, intersected with interval bounds (both are sound)."""
    lo, hi = _check_box(network, lower, upper)
    ib = interval_bounds(network, lo, hi)
    los, his = [], []
    relax: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    affines = network.affines
    for k, layer in enumerate(affines):
        n = layer.out_features
        if k == 0:
            l, u = ib.lower[0], ib.upper[0]  # exact for one affine layer
        else:
            # Back-substitute only the neurons that interval arithmetic leaves unstable (and
            # every output): a neuron stable by intervals stays stable, and this is most of the cost.
            l, u = ib.lower[k].copy(), ib.upper[k].copy()
            rows = np.arange(n) if k == len(affines) - 1 else np.nonzero((l < 0) & (u > 0))[0]
            if rows.size:
                eye = _unit_rows(n, rows)
                u_sym, u_mag = backsubstitute(network, k, eye, np.zeros(rows.size), relax, lo, hi, magnitude=True)
                neg_up, l_mag = backsubstitute(network, k, -eye, np.zeros(rows.size), relax, lo, hi, magnitude=True)
                l_sym, _ = _widen(-neg_up, -neg_up, l_mag)
                _, u_sym = _widen(u_sym, u_sym, u_mag)
                l[rows] = np.maximum(l_sym, l[rows])
                u[rows] = np.minimum(u_sym, u[rows])
            l = np.minimum(l, u)  # never cross (both are sound; equal means a constant)
        los.append(l)
        his.append(u)
        if k < len(affines) - 1:
            relax.append(_relu_relaxation(l, u))
    return Bounds(tuple(los), tuple(his), "crown")


def spec_lower_bounds(network: Network, bounds: Bounds, lower: np.ndarray, upper: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """Sound lower bounds of ``spec @ y`` (rows, outputs) over the box, by back-substitution
    with the relaxations of ``bounds`` (tighter than bounding y first)."""
    lo, hi = _check_box(network, lower, upper)
    relax = [_relu_relaxation(l, u) for l, u in bounds.hidden]
    S = np.atleast_2d(np.asarray(spec, dtype=np.float64))
    k = len(network.affines) - 1
    up, mag = backsubstitute(network, k, -S, np.zeros(S.shape[0]), relax, lo, hi, magnitude=True)
    lo_sym, _ = _widen(-up, -up, mag)
    # also the interval bound on spec @ y from the output box
    ylo, yhi = bounds.lower[-1], bounds.upper[-1]
    box = np.maximum(S, 0.0) @ ylo + np.minimum(S, 0.0) @ yhi
    lo_box, _ = _widen(box, box, np.abs(S) @ np.maximum(np.abs(ylo), np.abs(yhi)))
    return np.maximum(lo_sym, lo_box)
