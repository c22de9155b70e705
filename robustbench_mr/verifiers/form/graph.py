"""The verifier's network form: a DAG of typed ops (``form/ops/``) over one input tensor.

Nodes are kept in topological order; node 0 is the input. Shapes are inferred and checked
when the graph is built, so a graph that exists is well formed. Only the sub-graph that
reaches the output is kept (``prune``), and an elementwise affine op (BatchNorm, Normalize)
whose only consumer-side neighbour is an affine op is folded into it where that is exact
(``fold``). Values are float64 on ``device``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import numpy as np
import torch

from robustbench_mr.verifiers.form.ops import Conv2d, ElementwiseAffine, Linear, Op


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    op: Op | None  # None: the graph input
    inputs: tuple[int, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Graph:
    nodes: tuple[Node, ...]
    output: int
    source: str = ""
    device: str = "cpu"
    _consumers: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.nodes or self.nodes[0].op is not None:
            raise ValueError("node 0 of a graph must be its input")
        cons: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for i, n in enumerate(self.nodes[1:], start=1):
            if n.op is None:
                raise ValueError(f"node {n.name}: only node 0 may be an input")
            if len(n.inputs) != n.op.arity or any(j >= i or j < 0 for j in n.inputs):
                raise ValueError(f"node {n.name}: inputs {n.inputs} are not earlier nodes (or not {n.op.arity} of them)")
            shape = n.op.out_shape(*[self.nodes[j].shape for j in n.inputs])
            if tuple(shape) != tuple(n.shape):
                raise ValueError(f"node {n.name}: recorded shape {n.shape}, op gives {shape}")
            for j in n.inputs:
                cons[j].append(i)
        object.__setattr__(self, "_consumers", cons)

    # -- structure -----------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.nodes[0].shape

    @property
    def num_inputs(self) -> int:
        return prod(self.input_shape)

    @property
    def num_outputs(self) -> int:
        return prod(self.nodes[self.output].shape)

    def consumers(self, i: int) -> list[int]:
        return self._consumers[i]

    def piecewise_inputs(self) -> list[int]:
        """Nodes whose bounds some nonlinear op's relaxation needs, in topological order."""
        need = {j for n in self.nodes[1:] if n.op.piecewise for j in n.inputs}
        return sorted(need)

    @property
    def relu_count(self) -> int:
        return sum(prod(n.shape) for n in self.nodes[1:] if n.op.piecewise)

    def kinds(self) -> list[str]:
        return [n.op.kind for n in self.nodes[1:]]

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes) - 1} ops {dict(sorted({k: self.kinds().count(k) for k in set(self.kinds())}.items()))}, input {self.input_shape}, output {self.nodes[self.output].shape}, source={self.source!r})"

    def to(self, device: str | torch.device, dtype: torch.dtype = torch.float64) -> "Graph":
        nodes = tuple(Node(n.name, None if n.op is None else n.op.to(device, dtype), n.inputs, n.shape) for n in self.nodes)
        return Graph(nodes, self.output, self.source, str(device))

    def as_module(self, dtype: str | torch.dtype = "float32") -> torch.nn.Module:
        """A torch module computing this graph in ``dtype`` (attacks take its gradients)."""
        dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        return _GraphModule(self.to(self.device, dt)).eval()

    # -- evaluation ----------------------------------------------------------------------
    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        vals: list[torch.Tensor | None] = [x.reshape(x.shape[0], *self.input_shape)]
        for i, n in enumerate(self.nodes[1:], start=1):
            vals.append(n.op.forward(*[vals[j] for j in n.inputs]))
        return vals

    def forward_torch(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[self.output].reshape(x.shape[0], -1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Float64 forward pass on flat inputs (N, num_inputs) or (num_inputs,) (numpy in and out)."""
        z = np.asarray(x, dtype=np.float64)
        single = z.ndim == 1
        t = torch.as_tensor(z.reshape(-1, self.num_inputs), dtype=torch.float64, device=self.device)
        with torch.no_grad():
            y = self.forward_torch(t).cpu().numpy()
        return y[0] if single else y


def build(input_shape: tuple[int, ...], ops: list[tuple[str, Op, tuple[int, ...]]], output: int | None = None, source: str = "") -> Graph:
    """A graph from (name, op, input node indices) in topological order; node 0 is the input."""
    nodes = [Node("input", None, (), tuple(int(s) for s in input_shape))]
    for name, op, ins in ops:
        shape = op.out_shape(*[nodes[j].shape for j in ins])
        nodes.append(Node(name, op, tuple(ins), tuple(int(s) for s in shape)))
    g = Graph(tuple(nodes), len(nodes) - 1 if output is None else output, source)
    return fold(prune(g))


def prune(g: Graph) -> Graph:
    """Only the nodes that reach the output (renumbered, order kept)."""
    keep = {g.output}
    for i in range(g.output, 0, -1):
        if i in keep:
            keep.update(g.nodes[i].inputs)
    keep.add(0)
    return _renumber(list(g.nodes), sorted(keep), g.output, g)


def _renumber(nodes: list[Node], order: list[int], output: int, like: Graph) -> Graph:
    new = {old: k for k, old in enumerate(order)}
    out = [Node(nodes[old].name, nodes[old].op, tuple(new[j] for j in nodes[old].inputs), nodes[old].shape) for old in order]
    return Graph(tuple(out), new[output], like.source, like.device)


def fold(g: Graph) -> Graph:
    """Fold each elementwise affine op (BatchNorm, Normalize) into the op feeding it when that
    op is linear, a convolution (per-channel constants only) or another elementwise affine op
    and has no other consumer: exact, it scales the rows of W and the bias."""
    nodes = list(g.nodes)
    redirect: dict[int, int] = {}
    for i in range(1, len(nodes)):
        n = nodes[i]
        n = nodes[i] = Node(n.name, n.op, tuple(redirect.get(j, j) for j in n.inputs), n.shape)
        if not isinstance(n.op, ElementwiseAffine):
            continue
        (j,) = n.inputs
        users = [k for k in range(j + 1, len(nodes)) if k not in redirect and j in tuple(redirect.get(m, m) for m in nodes[k].inputs)]
        if j == 0 or users != [i]:
            continue
        merged = _fold_into(nodes[j].op, n.op, nodes[j].shape)
        if merged is not None:
            nodes[j] = Node(nodes[j].name, merged, nodes[j].inputs, nodes[j].shape)
            redirect[i] = j
    out = redirect.get(g.output, g.output)
    return _renumber(nodes, [i for i in range(len(nodes)) if i not in redirect], out, g)


def _fold_into(prev: Op, ea: ElementwiseAffine, shape: tuple[int, ...]) -> Op | None:
    if isinstance(prev, ElementwiseAffine):
        return prev.then(ea)
    scale = ea.scale.expand(shape) if ea.scale.numel() > 1 else ea.scale.reshape(()).expand(shape)
    shift = ea.shift.expand(shape) if ea.shift.numel() > 1 else ea.shift.reshape(()).expand(shape)
    if isinstance(prev, Linear):
        s, t = scale.reshape(-1), shift.reshape(-1)
        return Linear(prev.weight * s[:, None], prev.bias * s + t)
    if isinstance(prev, Conv2d):
        # per channel only: every spatial position of a channel must share scale and shift
        s = scale.reshape(shape[0], -1)
        t = shift.reshape(shape[0], -1)
        if not (torch.all(s == s[:, :1]) and torch.all(t == t[:, :1])):
            return None
        s, t = s[:, 0], t[:, 0]
        return Conv2d(prev.weight * s.view(-1, 1, 1, 1), prev.bias * s + t, prev.stride, prev.padding, prev.dilation, prev.groups)
    return None


class _GraphModule(torch.nn.Module):
    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph.forward_torch(x)

    def __repr__(self) -> str:
        return f"GraphModule({self.graph!r})"
