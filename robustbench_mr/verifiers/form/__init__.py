"""The verifier's network form: a DAG of typed ops (one file per op kind in ``ops/``), built
by the torch (``from_torch``) and ONNX importers, read by the bound engine and the MILP."""

from robustbench_mr.verifiers.form.graph import Graph, Node, build
from robustbench_mr.verifiers.form.ops import OPS, Op

__all__ = ["OPS", "Graph", "Node", "Op", "build"]
