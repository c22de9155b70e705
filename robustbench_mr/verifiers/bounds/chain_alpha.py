"""alpha-CROWN bounds (``--bounds alpha`` / ``alpha-lp``): CROWN back-substitution where the
lower linear bound ``relu(z) >= alpha z`` of every unstable ReLU has its own slope alpha in
[0, 1], chosen per bound (per target neuron or spec row, per ReLU) by projected gradient
descent (torch float64, Adam) on the bound itself.

Any alpha in [0, 1] gives a sound lower bound of relu on [l, u] with l < 0 < u (z >= 0:
relu z = z >= alpha z; z < 0: relu z = 0 >= alpha z), so the optimization needs no care for
soundness: it only picks slopes. The bounds themselves are recomputed afterwards with the
final slopes (clamped to [0, 1], NaN replaced by CROWN's slope) by the numpy back-substitution
of ``bounds/chain.py`` (``backsubstitute``, which takes a per-row slope matrix as well as a vector),
widened by ``SLACK`` like every other bound, and intersected with CROWN's: never looser than
CROWN, whatever the optimizer did.

Layer by layer: the unstable neurons of hidden layer k (both bounds, as 2m rows) are
optimized with the already-tightened bounds of layers < k fixed (they give the upper chords
and which neurons are unstable), then the network outputs, then (``alpha_spec_lower_bounds``)
the rows of a property's clauses. The optimization keeps, per row, the best slopes seen (Adam
is not monotone); it starts from CROWN's slopes, so it is never worse than CROWN before the
final float64 recomputation either. A time budget stops it (CROWN's bounds for what is left).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robustbench_mr.verifiers.bounds.chain import Bounds, _check_box, _relu_relaxation, _unit_rows, _widen, backsubstitute, crown_bounds, spec_lower_bounds
from robustbench_mr.verifiers.form.chain import Network

ALPHA_ITERATIONS = 30
ALPHA_LR = 0.2
STALL_WINDOW, STALL_TOL = 5, 1e-3  # stop when the summed bounds improved < 0.1% over 5 steps
DEFAULT_ALPHA_BUDGET = 5.0  # seconds for the whole pass when the caller gives none

torch: Any = None  # imported on first use: importing torch takes seconds


def _load_torch() -> Any:
    global torch
    if torch is None:
        import torch as _torch

        torch = _torch
    return torch


class _TorchNet:
    """The network's affine maps as torch float64 tensors (built once per bounds pass)."""

    def __init__(self, network: Network) -> None:
        t = _load_torch()
        self.W = [t.from_numpy(a.weight) for a in network.affines]
        self.b = [t.from_numpy(a.bias) for a in network.affines]


def _backsub_torch(tn: _TorchNet, k: int, S: Any, relax: list[tuple[Any, Any, Any, Any, Any]], lo: Any, hi: Any) -> Any:
    """Upper bounds of ``S @ z_k`` (torch): ``relax[j] = (CROWN's lower slopes, unstable
    columns, their per-row slopes alpha (rows, len(columns)) or None, up_slope, up_icpt)``
    for ReLU layer j."""
    A = S
    c = torch.zeros(S.shape[0], dtype=S.dtype)
    for i in range(k, -1, -1):
        c = c + A @ tn.b[i]
        A = A @ tn.W[i]
        if i > 0:
            base, cols, alpha, up_slope, up_icpt = relax[i - 1]
            pos, neg = A.clamp(min=0.0), A.clamp(max=0.0)
            c = c + pos @ up_icpt
            A = pos * up_slope + neg * base
            if alpha is not None:
                A = A.index_add(1, cols, neg[:, cols] * (alpha - base[cols]))
    return c + A.clamp(min=0.0) @ hi + A.clamp(max=0.0) @ lo


class _OneThread:
    """torch on one thread while optimizing: the matrices are small, and on a shared
    2-core machine torch's thread pool oversubscribed slows each step ~10x."""

    def __enter__(self) -> None:
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.n)


def _unstable(up_slope: np.ndarray) -> np.ndarray:
    """Unstable neurons of a relaxation: chord slope u / (u - l) strictly inside (0, 1)."""
    return (up_slope > 0) & (up_slope < 1)


def _optimized_slopes(network: Network, k: int, S: np.ndarray, relax: list[tuple[np.ndarray, np.ndarray, np.ndarray]], lo: np.ndarray, hi: np.ndarray,
                      iterations: int, deadline: float, lr: float = ALPHA_LR) -> list[np.ndarray]:
    """Per-row lower slopes (a (rows, n_j) matrix per ReLU layer j < k) that minimize the upper
    bounds of ``S @ z_k`` (projected Adam from CROWN's slopes; the best slopes seen per row).
    Only a heuristic: the caller recomputes the bounds soundly with them."""
    t = _load_torch()
    rows = S.shape[0]
    out = [np.repeat(r[0][None, :], rows, axis=0) for r in relax[:k]]
    if iterations <= 0 or time.perf_counter() >= deadline or not any(_unstable(r[1]).any() for r in relax[:k]):
        return out
    tn = _TorchNet(network)
    with _OneThread():
        lo_t, hi_t = t.from_numpy(lo), t.from_numpy(hi)
        S_t = t.from_numpy(np.ascontiguousarray(S))
        params, trelax = [], []
        for lo_slope, up_slope, up_icpt in relax[:k]:
            cols = np.nonzero(_unstable(up_slope))[0]
            a = None
            if cols.size:
                a = t.tensor(np.repeat(lo_slope[cols][None, :], rows, axis=0), dtype=t.float64, requires_grad=True)
                params.append(a)
            trelax.append((t.from_numpy(lo_slope), t.from_numpy(cols), a, t.from_numpy(up_slope), t.from_numpy(up_icpt)))
        opt = t.optim.Adam(params, lr=lr)
        best_val = t.full((rows,), t.inf, dtype=t.float64)
        best = [None if r[2] is None else r[2].detach().clone() for r in trelax]
        history: list[float] = []
        for it in range(iterations + 1):
            val = _backsub_torch(tn, k, S_t, trelax, lo_t, hi_t)
            with t.no_grad():
                better = val < best_val
                if better.any():
                    best_val = t.where(better, val.detach(), best_val)
                    for j, r in enumerate(trelax):
                        if r[2] is not None:
                            best[j][better] = r[2].detach()[better]
            history.append(float(best_val.sum()))
            if it == iterations or time.perf_counter() >= deadline:
                break
            if it >= 2 * STALL_WINDOW and history[-STALL_WINDOW - 1] - history[-1] <= STALL_TOL * (1.0 + abs(history[-1])):
                break  # the bounds stopped improving
            opt.zero_grad(set_to_none=True)
            val.sum().backward()
            opt.step()
            with t.no_grad():
                for a in params:
                    a.clamp_(0.0, 1.0)
    for j, r in enumerate(trelax):
        if best[j] is not None:
            cols = r[1].numpy()
            a = best[j].numpy()
            out[j][:, cols] = np.where(np.isfinite(a), np.clip(a, 0.0, 1.0), out[j][:, cols])  # any slope in [0, 1] is sound
    return out


def _sound_upper(network: Network, k: int, S: np.ndarray, relax: list[tuple[np.ndarray, np.ndarray, np.ndarray]], slopes: list[np.ndarray],
                 lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds of ``S @ z_k`` by the float64 numpy back-substitution with the given lower
    slopes (each entry in [0, 1] on unstable neurons, CROWN's elsewhere), not yet widened, and
    their magnitudes (``backsubstitute``)."""
    for s, (base, up_slope, _) in zip(slopes, relax):
        unstable = _unstable(up_slope)
        if not (np.all((s >= 0.0) & (s <= 1.0)) and np.all(s[:, ~unstable] == base[~unstable])):
            raise AssertionError("alpha slopes outside [0, 1] or changed on a stable neuron")
    ar = [(s, up_slope, up_icpt) for s, (_, up_slope, up_icpt) in zip(slopes, relax)]
    return backsubstitute(network, k, S, np.zeros(S.shape[0]), ar, lo, hi, magnitude=True)


def alpha_bounds(network: Network, lower: np.ndarray, upper: np.ndarray, time_budget: float | None = None, base: Bounds | None = None,
                 iterations: int = ALPHA_ITERATIONS) -> Bounds:
    """CROWN bounds (``base`` if given), then alpha-optimized bounds of each neuron still
    unstable and of the outputs, layer by layer, within ``time_budget`` seconds; never looser
    than ``base``."""
    start = time.perf_counter()
    deadline = start + (DEFAULT_ALPHA_BUDGET if time_budget is None else max(float(time_budget), 0.0))
    lo, hi = _check_box(network, lower, upper)
    cb = base if base is not None else crown_bounds(network, lo, hi)
    affines = network.affines
    los, his = [cb.lower[0].copy()], [cb.upper[0].copy()]
    for k in range(1, len(affines)):
        l, u = cb.lower[k].copy(), cb.upper[k].copy()
        rows = np.arange(l.size) if k == len(affines) - 1 else np.nonzero((l < 0) & (u > 0))[0]
        if rows.size and time.perf_counter() < deadline:
            relax = [_relu_relaxation(a, b) for a, b in zip(los, his)]
            eye = _unit_rows(l.size, rows)
            S = np.vstack([eye, -eye])  # upper bounds of z and of -z, each row its own slopes
            slopes = _optimized_slopes(network, k, S, relax, lo, hi, iterations, deadline)
            v, mag = _sound_upper(network, k, S, relax, slopes, lo, hi)
            _, v = _widen(v, v, mag)  # every row an upper bound: widened upward
            l_new, u_new = -v[rows.size:], v[:rows.size]
            l[rows] = np.maximum(l[rows], l_new)
            u[rows] = np.minimum(u[rows], u_new)
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
    deadline = time.perf_counter() + (DEFAULT_ALPHA_BUDGET if time_budget is None else max(float(time_budget), 0.0))
    relax = [_relu_relaxation(l, u) for l, u in bounds.hidden]
    k = len(network.affines) - 1
    slopes = _optimized_slopes(network, k, -S, relax, lo, hi, iterations, deadline)
    up, mag = _sound_upper(network, k, -S, relax, slopes, lo, hi)
    _, up = _widen(up, up, mag)
    v = -up
    return np.maximum(plain, v)
