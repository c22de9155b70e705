"""The chain form (``chain.py``: dense affine maps and ReLUs) as a graph of ``Linear`` and
``ReLU`` ops, so that the one bound engine (``bounds/engine.py``) bounds chain networks too.

Node ``2k + 1`` is the k-th affine map's output (its pre-activations), node ``2k + 2`` the ReLU
after it; node 0 is the flat input. The weights are the chain's float64 arrays (shared where
writable, on the CPU), so the graph computes exactly the chain's function.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.form.graph import Graph, Node
from robustbench_mr.verifiers.form.ops import Box, Linear, ReLU

_GRAPHS: "weakref.WeakKeyDictionary[Network, Graph]" = weakref.WeakKeyDictionary()


def chain_graph(network: Network) -> Graph:
    """The graph of ``network`` (built once per network object)."""
    g = _GRAPHS.get(network)
    if g is None:
        nodes = [Node("input", None, (), (network.num_inputs,))]
        for k, a in enumerate(network.affines):
            if k:
                nodes.append(Node(f"relu{k - 1}", ReLU(), (len(nodes) - 1,), nodes[-1].shape))
            # shared with the chain where writable (torch refuses read-only buffers, e.g. ONNX tensors: copied then)
            op = Linear(torch.from_numpy(np.require(a.weight, requirements='W')), torch.from_numpy(np.require(a.bias, requirements='W')))
            nodes.append(Node(f"affine{k}", op, (len(nodes) - 1,), (a.out_features,)))
        g = Graph(tuple(nodes), len(nodes) - 1, network.source)
        _GRAPHS[network] = g
    return g


def chain_boxes(input_box: Box, layers: list[Box], num_affines: int) -> list[Box]:
    """The engine's per-node boxes of a chain's graph from the input box and the pre-activation
    boxes of its first layers (each (B, width)): every layer's box, then the ReLU of it (exact)."""
    boxes: list[Box] = [input_box]
    for k, (l, u) in enumerate(layers):
        boxes.append((l, u))
        if k < num_affines - 1:
            boxes.append((l.clamp(min=0), u.clamp(min=0)))
    return boxes


def affine_node(k: int) -> int:
    """The graph node of the k-th affine map's output."""
    return 2 * k + 1
