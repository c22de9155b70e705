"""Architecture names -> constructors. A checkpoint stores the name and the keyword
arguments, never code, so loading it cannot run anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from robustbench_mr.errors import UserError
from robustbench_mr.models.layer_spec import layer_net
from robustbench_mr.models.mlp import mlp
from robustbench_mr.models.preact_resnet import preact_resnet18
from robustbench_mr.models.small import small_convnet

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "small": small_convnet,
    "large": preact_resnet18,
    "mlp": mlp,
    "layers": layer_net,  # a declarative layer spec string (models/layer_spec.py), for imported nets
}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build architecture ``arch`` (small, large, mlp, layers) with its keyword arguments."""
    try:
        ctor = ARCHITECTURES[arch]
    except KeyError:
        raise UserError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    return ctor(**kwargs)
