"""A fully connected ReLU network for quick tests and tiny exact-verification checks."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from torch import nn

from robustbench_mr.models.layers import Normalize


def mlp(
    input_shape: Sequence[int],
    num_classes: int = 10,
    hidden: Sequence[int] = (64, 64),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Sequential:
    c = int(input_shape[0])
    mean = list(mean) if mean is not None else [0.0] * c
    std = list(std) if std is not None else [1.0] * c
    layers: list[nn.Module] = [Normalize(mean, std), nn.Flatten()]
    width = prod(int(v) for v in input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
