"""One batched bound engine over the graph form (IBP, CROWN, alpha-CROWN), written once in
torch and run in float64 on CPU or CUDA. See ``engine.py``."""

from robustbench_mr.verifiers.engine.engine import (METHODS, BoundMethod, GraphBounds, backward_lower, interval_boxes, node_bounds,
                                                   resolve_device, spec_coefficients, spec_lower)

__all__ = ["METHODS", "BoundMethod", "GraphBounds", "backward_lower", "interval_boxes", "node_bounds", "resolve_device", "spec_coefficients", "spec_lower"]
