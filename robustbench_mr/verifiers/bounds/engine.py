"""Sound bounds over a ``Graph``, batched over B input boxes and R spec rows at once.

* ``interval`` (IBP): each op's interval transfer, node by node.
* ``crown``: the bounds of every input of a nonlinear op (ReLU, MaxPool) by linear
  back-substitution to the input box through the relaxations of the earlier nonlinear ops
  (CROWN / DeepPoly), intersected with IBP; rows only for the neurons IBP leaves unstable,
  in chunks that fit ``memory_floats``; a node with more than ``max_rows`` unstable neurons
  (or when the deadline is near) keeps its IBP bounds, which is sound, only looser. After a
  node is tightened, the interval bounds of the nodes after it are recomputed and intersected.
* ``alpha``: CROWN, then the lower bound of the spec rows (or of any node's rows:
  ``alpha_lower``) with the lower slope of every unstable ReLU optimized per (box, row, neuron)
  by projected Adam (alpha-CROWN); the ReLU's backward clamps each slope's value into [0, 1],
  so every iterate's bound is sound and the best one per row is kept.

Soundness: float64 throughout, on every device (no float32 path: an H200 runs float64 at
full speed, and float64 keeps one rounding argument for CPU and CUDA). Every bound is widened
outward by ``SLACK`` (1e-9) times the magnitude of the sum that produced it (the ops' interval
transfers widen themselves; a back-substituted bound is widened by the magnitude of its
constant terms plus |A| max(|lo|, |hi|) over the box). No absolute tolerance: a
function-preserving rescaling of the weights rescales every margin with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from math import prod

from robustbench_mr.deadline import Deadline, DeadlineExceeded
from robustbench_mr.verifiers.form.graph import Graph
from robustbench_mr.verifiers.bounds.methods import BoundMethod
from robustbench_mr.verifiers.form.ops import SLACK, Box, ReLU

# float64 values of one back-substitution chunk's widest coefficient tensor (16 MiB): below
# glibc's 32 MiB mmap ceiling, so a process that keeps freed memory (utils/allocator.py, the
# verify workers) reuses each chunk's buffers instead of page-faulting 64 MiB ones in every pass
# (W&K MNIST, 40 inputs under load: 3.0 s -> 0.12 s of system time, 0.297 -> 0.185 s per input)
MEMORY_FLOATS = 2 ** 21
INTERMEDIATE_SHARE = 0.5  # of the time left: the most the intermediate CROWN bounds may take
MAX_ROWS = 20_000  # unstable neurons of one node beyond which it keeps its interval bounds
ALPHA_ITERS = 20
ALPHA_LR = 0.1


def resolve_device(device: str | None) -> str:
    """``auto`` -> cuda when available, else cpu."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from robustbench_mr.errors import UserError

        raise UserError(f"--device {device}: no CUDA device is available here; use --device cpu or auto")
    return device


@dataclass(frozen=True, eq=False)
class GraphBounds:
    """Bounds of every node over each of B boxes: ``boxes[i]`` = (lower, upper), (B, *shape)."""

    boxes: list[Box]
    method: str

    def unstable(self, graph: Graph) -> torch.Tensor:
        """(B,) number of unstable ReLU inputs per box."""
        B = self.boxes[0][0].shape[0]
        total = torch.zeros(B, dtype=torch.long, device=self.boxes[0][0].device)
        for n in graph.nodes[1:]:
            if isinstance(n.op, ReLU):
                l, u = self.boxes[n.inputs[0]]
                total += ((l < 0) & (u > 0)).flatten(1).sum(1)
        return total


def _as_batch(graph: Graph, lo: torch.Tensor, hi: torch.Tensor) -> Box:
    lo = torch.as_tensor(lo, dtype=torch.float64, device=graph.device)
    hi = torch.as_tensor(hi, dtype=torch.float64, device=graph.device)
    if lo.dim() == 1 or tuple(lo.shape) == tuple(graph.input_shape):
        lo, hi = lo.reshape(1, -1), hi.reshape(1, -1)
    lo = lo.reshape(lo.shape[0], *graph.input_shape)
    hi = hi.reshape(hi.shape[0], *graph.input_shape)
    if torch.any(lo > hi):
        raise ValueError("input box has lower > upper")
    return lo, hi


def interval_boxes(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, start: int = 1, boxes: list[Box] | None = None) -> list[Box]:
    """IBP boxes of every node (from node ``start`` on, intersected with ``boxes`` if given)."""
    lo, hi = _as_batch(graph, lo, hi)
    out: list[Box] = list(boxes) if boxes is not None else [(lo, hi)]
    for i in range(start, len(graph.nodes)):
        n = graph.nodes[i]
        l, u = n.op.interval(*[out[j] for j in n.inputs])
        if boxes is not None and i < len(boxes):
            l, u = torch.maximum(l, boxes[i][0]), torch.minimum(u, boxes[i][1])
            l = torch.minimum(l, u)
            out[i] = (l, u)
        else:
            out.append((l, u))
    return out


def backward_lower(graph: Graph, start: int, A: torch.Tensor, boxes: list[Box], slopes: dict[int, torch.Tensor] | None = None,
                   deadline: Deadline | None = None, taps: dict[int, torch.Tensor] | None = None,
                   extra: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Sound lower bounds (B, R) of ``A . node_start`` (A: (B, R, *shape)) over the input box,
    by back-substitution through every op between the input and ``start`` (raises
    ``DeadlineExceeded`` between ops once ``deadline`` has passed). ``taps``: for each node
    index given as a key, the coefficients on that node's output are stored there (the branching
    heuristics read them; key 0: the final coefficients on the input). ``extra``: coefficients
    (B, R, *shape) added on a node's output before it is substituted: beta-CROWN's Lagrangian
    terms ``-beta * sign * z`` of split constraints ``sign * z >= 0`` (with beta >= 0 the bound
    is then sound only on inputs that satisfy those constraints: the caller's domain)."""
    B, R = A.shape[:2]
    acc: dict[int, torch.Tensor] = {start: A}
    const = torch.zeros(B, R, dtype=A.dtype, device=A.device)
    mag = torch.zeros_like(const)
    for i in range(start, 0, -1):
        Ai = acc.pop(i, None)
        if extra is not None and i in extra:
            Ai = extra[i] if Ai is None else Ai + extra[i]
        if Ai is None:
            continue
        if deadline is not None:
            deadline.check("back-substituting")
        if taps is not None and i in taps:
            taps[i] = Ai
        n = graph.nodes[i]
        bw = n.op.backward(Ai, *[boxes[j] for j in n.inputs], slope=None if slopes is None else slopes.get(i))
        const = const + bw.const
        mag = mag + bw.const_abs
        for j, Aj in zip(n.inputs, bw.inputs):
            acc[j] = acc[j] + Aj if j in acc else Aj
    lo, hi = boxes[0]
    A0 = acc.get(0)
    if taps is not None and 0 in taps:  # the input coefficients of the linear bound
        taps[0] = torch.zeros(B, R, *lo.shape[1:], dtype=A.dtype, device=A.device) if A0 is None else A0
    if A0 is None:  # the form does not depend on the input
        return const - SLACK * mag
    A0 = A0.flatten(2)
    l, h = lo.flatten(1).unsqueeze(1), hi.flatten(1).unsqueeze(1)
    value = const + (A0.clamp(min=0) * l).sum(-1) + (A0.clamp(max=0) * h).sum(-1)
    mag = mag + (A0.abs() * torch.maximum(l.abs(), h.abs())).sum(-1)
    return value - SLACK * mag


def unit_rows(idx: torch.Tensor, B: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """The coefficients ``[e_idx; -e_idx]`` (B, 2 r, *shape) on a node of that shape: the lower
    bounds of the neurons ``idx`` and of their negations (upper bounds)."""
    r, n = idx.numel(), prod(shape)
    E = torch.zeros(B, 2 * r, n, dtype=dtype, device=device)
    ar = torch.arange(r, device=device)
    E[:, ar, idx] = 1.0
    E[:, r + ar, idx] = -1.0
    return E.reshape(B, 2 * r, *shape)


def unit_rows_lower(graph: Graph, p: int, idx: torch.Tensor, B: int, boxes: list[Box], deadline: Deadline | None) -> torch.Tensor:
    """``backward_lower`` of the forms ``[e_idx; -e_idx] . node_p`` (B, 2 r): node p's own step by
    its op's ``unit_rows_backward`` where it has one (a gather), the rest by back-substitution."""
    node = graph.nodes[p]
    first = node.op.unit_rows_backward(idx, B) if node.op is not None and len(node.inputs) == 1 else None
    if first is None:
        l = boxes[p][0]
        return backward_lower(graph, p, unit_rows(idx, B, tuple(l.shape[1:]), l.dtype, l.device), boxes, deadline=deadline)
    rest = backward_lower(graph, node.inputs[0], first.inputs[0], boxes, deadline=deadline)
    return rest + first.const - SLACK * first.const_abs


def crown_rows(graph: Graph, p: int, boxes: list[Box], every_row: bool = False, memory_floats: int = MEMORY_FLOATS,
               max_rows: int | None = None, deadline: Deadline | None = None) -> Box | None:
    """CROWN bounds of node ``p`` (its box in ``boxes`` intersected in): of every neuron that box
    leaves unstable in some batch entry, or of all of them (``every_row``: a network output).
    None when no row needs it, there are more than ``max_rows``, or the deadline comes first."""
    l, u = boxes[p]
    B = l.shape[0]
    flat_l, flat_u = l.flatten(1).clone(), u.flatten(1).clone()
    if every_row:
        rows = torch.arange(flat_l.shape[1], device=l.device)
    else:
        rows = torch.nonzero(((flat_l < 0) & (flat_u > 0)).any(0)).flatten()
    if rows.numel() == 0 or (max_rows is not None and rows.numel() > max_rows):
        return None
    widest = max(prod(n.shape) for n in graph.nodes[: p + 1])
    chunk = max(1, memory_floats // max(1, 2 * B * widest))
    last = 0.0
    for c0 in range(0, rows.numel(), chunk):
        if deadline is not None and deadline.left() <= last:  # the next chunk would not finish in time
            return None
        t0 = time.perf_counter()
        idx = rows[c0:c0 + chunk]
        r = idx.numel()
        try:
            low = unit_rows_lower(graph, p, idx, B, boxes, deadline)
        except DeadlineExceeded:
            return None
        flat_l[:, idx] = torch.maximum(flat_l[:, idx], low[:, :r])
        flat_u[:, idx] = torch.minimum(flat_u[:, idx], -low[:, r:])
        last = time.perf_counter() - t0
    flat_l = torch.minimum(flat_l, flat_u)
    return flat_l.reshape(l.shape), flat_u.reshape(u.shape)


def node_bounds(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, method: str = "crown", deadline: Deadline | None = None,
                memory_floats: int = MEMORY_FLOATS, max_rows: int = MAX_ROWS) -> GraphBounds:
    """Bounds of every node over each input box (lo, hi: (B, *input_shape) or one flat box)."""
    method = BoundMethod(method).value
    with torch.no_grad():
        boxes = interval_boxes(graph, lo, hi)
        if method == BoundMethod.INTERVAL.value:
            return GraphBounds(boxes, method)
        if deadline is not None:  # leave time for the spec bounds and what comes after them
            deadline = Deadline(max(0.0, deadline.left()) * INTERMEDIATE_SHARE)
        for p in graph.piecewise_inputs():
            if p == 0:
                continue
            if deadline is not None and deadline.expired():
                break
            tight = crown_rows(graph, p, boxes, memory_floats=memory_floats, max_rows=max_rows, deadline=deadline)
            if tight is None:
                continue
            boxes[p] = tight
            boxes = interval_boxes(graph, boxes[0][0], boxes[0][1], start=p + 1, boxes=boxes)
    return GraphBounds(boxes, method)


def spec_coefficients(graph: Graph, C: torch.Tensor, B: int) -> torch.Tensor:
    """C (R, outputs) or (B, R, outputs) as back-substitution coefficients (B, R, *output shape)."""
    C = torch.as_tensor(C, dtype=torch.float64, device=graph.device)
    if C.dim() == 2:
        C = C.unsqueeze(0).expand(B, *C.shape)
    return C.reshape(B, C.shape[1], *graph.nodes[graph.output].shape)


def spec_lower(graph: Graph, gb: GraphBounds, C: torch.Tensor, method: str = "crown", deadline: Deadline | None = None,
               alpha_iters: int = ALPHA_ITERS, alpha_lr: float = ALPHA_LR, taps: dict[int, torch.Tensor] | None = None,
               interruptible: bool = False) -> torch.Tensor:
    """Sound lower bounds (B, R) of ``C y`` (C: (R, outputs) or (B, R, outputs)) over each box
    (``taps``: see ``backward_lower``; filled by the CROWN pass). The CROWN pass runs to the end
    unless ``interruptible`` (branch and bound), when it raises ``DeadlineExceeded`` once
    ``deadline`` has passed; ``deadline`` always limits the alpha iterations."""
    B = gb.boxes[0][0].shape[0]
    A = spec_coefficients(graph, C, B)
    ylo, yhi = gb.boxes[graph.output]
    Af = A.flatten(2)
    l, h = ylo.flatten(1).unsqueeze(1), yhi.flatten(1).unsqueeze(1)
    box = (Af.clamp(min=0) * l).sum(-1) + (Af.clamp(max=0) * h).sum(-1)
    box = box - SLACK * (Af.abs() * torch.maximum(l.abs(), h.abs())).sum(-1)
    if method == BoundMethod.INTERVAL.value:
        return box
    with torch.no_grad():
        best = torch.maximum(box, backward_lower(graph, graph.output, A, gb.boxes, deadline=deadline if interruptible else None, taps=taps))
    if method != BoundMethod.ALPHA.value or alpha_iters <= 0:
        return best
    return torch.maximum(best, alpha_lower(graph, graph.output, A, gb.boxes, deadline, alpha_iters, alpha_lr))


def alpha_lower(graph: Graph, start: int, A: torch.Tensor, boxes: list[Box], deadline: Deadline | None = None, iters: int = ALPHA_ITERS,
                lr: float = ALPHA_LR) -> torch.Tensor:
    """alpha-CROWN: sound lower bounds (B, R) of ``A . node_start`` with the lower slope of every
    unstable ReLU before ``start`` optimized per (box, row, neuron) by projected Adam; the best
    bound seen per row (every iterate is sound), never below CROWN's (the first iterate)."""
    from robustbench_mr.verifiers.form.ops.relu import relaxation

    R = A.shape[1]
    slopes: dict[int, torch.Tensor] = {}
    for i, n in enumerate(graph.nodes[:start], start=0):
        if isinstance(n.op, ReLU):
            l, u = boxes[n.inputs[0]]
            init, _, _, unstable = relaxation(l, u)
            if bool(unstable.any()):
                slopes[i] = init.unsqueeze(1).expand(-1, R, *init.shape[1:]).clone().requires_grad_(True)
    if not slopes:
        with torch.no_grad():
            return backward_lower(graph, start, A, boxes)
    opt = Adam(list(slopes.values()), lr=lr)
    best = None
    last = 0.0
    for _ in range(iters):
        # every iteration's bound is sound (the slopes' values are clamped to [0, 1] inside the
        # ReLU's backward), so the best one is kept and no final pass is needed; stop before an
        # iteration that would not finish in time
        if deadline is not None and deadline.left() <= last:
            break
        t0 = time.perf_counter()
        low = backward_lower(graph, start, A, boxes, slopes)
        best = low.detach() if best is None else torch.maximum(best, low.detach())
        grads = torch.autograd.grad(-low.sum(), list(slopes.values()))
        opt.step(grads)
        with torch.no_grad():
            for s in slopes.values():
                s.clamp_(0, 1)
        last = time.perf_counter() - t0
    if best is None:
        with torch.no_grad():
            return backward_lower(graph, start, A, boxes)
    return best


class Adam:
    """Adam (Kingma & Ba) on a few tensors, in place. torch.optim.Adam would do, but importing
    torch.optim loads torch._dynamo (seconds of start-up, inside an instance's time limit)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: tuple[torch.Tensor, ...]) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(self.lr * (m / (1 - b1 ** self.t)) / ((v / (1 - b2 ** self.t)).sqrt() + self.eps))


METHODS: dict[str, Callable[..., GraphBounds]] = {m.value: node_bounds for m in BoundMethod}
