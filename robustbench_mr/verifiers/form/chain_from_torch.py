"""torch model -> verifier ``Network`` (float64 affine maps and ReLUs).

Affine modules (Linear, Conv2d with groups=1, Flatten, the input Normalize, BatchNorm in eval
mode, Dropout/Identity in eval mode) are turned into dense matrices by pushing the identity
basis (and zero, for the bias) through the module in float64: exact for any stride and
padding and needs no per-layer index arithmetic. Consecutive affine maps are composed (so
BatchNorm is folded into its neighbour). Anything else is refused with its name and position.
"""

from __future__ import annotations

from math import prod

import numpy as np
import torch
from torch import nn

from robustbench_mr.errors import UnsupportedLayerError
from robustbench_mr.models.layers import Normalize
from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU, chain

AFFINE_MODULES = (nn.Linear, nn.Flatten, Normalize, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Identity, nn.Conv2d)


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return out
    return [(prefix or type(module).__name__, module)]


def _affine_of(module: nn.Module, shape: tuple[int, ...]) -> tuple[Affine, tuple[int, ...]]:
    """Exact matrix of an affine module on inputs of ``shape`` (without batch dim)."""
    n = prod(shape)
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, n, dtype=torch.float64), torch.eye(n, dtype=torch.float64)]).reshape(n + 1, *shape)
        out = module(basis)
    out_shape = tuple(out.shape[1:])
    flat = out.reshape(n + 1, -1).numpy()
    bias = flat[0]
    weight = (flat[1:] - bias).T  # column i = f(e_i) - f(0)
    return Affine(weight, bias), out_shape


def from_torch(model: nn.Module, input_shape: tuple[int, ...], source: str = "") -> Network:
    """Convert an eval-mode sequential ReLU network (e.g. the ``small`` and ``mlp`` archs)."""
    work = _float64_copy(model)
    if not isinstance(work, nn.Sequential):
        has_blocks = any("Block" in type(m).__name__ for m in work.modules())
        why = "its residual additions (skip connections) are not supported by the MILP verifier; use a sequential model (arch small or mlp)" \
            if has_blocks else "only nn.Sequential chains of affine layers and ReLUs are supported"
        raise UnsupportedLayerError(f"cannot verify {type(model).__name__}: {why}")
    parts: list[Affine | ReLU] = []
    shape = tuple(input_shape)
    for position, (name, module) in enumerate(_leaves(work, "")):
        if isinstance(module, nn.ReLU):
            parts.append(ReLU())
            continue
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise UnsupportedLayerError(f"layer {position} ({name}: {module}) is a grouped convolution: only groups=1 is supported")
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and not module.track_running_stats:
            raise UnsupportedLayerError(f"layer {position} ({name}) is a BatchNorm without running statistics: it is not affine at test time")
        if not isinstance(module, AFFINE_MODULES):
            raise UnsupportedLayerError(f"layer {position} ({name}: {type(module).__name__}) is not supported by the MILP verifier "
                                        "(supported: Linear, Conv2d, Flatten, Normalize, BatchNorm, Dropout, Identity, ReLU)")
        affine, shape = _affine_of(module, shape)
        parts.append(affine)
    return chain(tuple(input_shape), parts, source or type(model).__name__)


def _float64_copy(model: nn.Module) -> nn.Module:
    import copy
    m = copy.deepcopy(model).double().eval()
    return m
