"""Model architectures. Every model maps [0,1] pixel inputs to logits; dataset
normalization is the first layer (:class:`Normalize`), so eps is always in pixel units."""

from robustbench_mr.models.registry import ARCHITECTURES, build_model
from robustbench_mr.models.layers import Normalize

__all__ = ["ARCHITECTURES", "build_model", "Normalize"]
