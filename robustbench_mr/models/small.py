"""The verification network of Wong et al. 2018 / Xiao et al. 2019 used in the paper:
Conv(16, 4x4, stride 2, pad 1) -> ReLU -> Conv(32, 4x4, stride 2, pad 1) -> ReLU ->
Linear(hidden) -> ReLU -> Linear(classes). hidden=128 in the paper, 100 in Wong/Xiao."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from robustbench_mr.models.layers import Normalize


def _conv_out(size: int) -> int:
    # kernel 4, stride 2, padding 1
    return (size + 2 * 1 - 4) // 2 + 1


def small_convnet(
    input_shape: Sequence[int],
    num_classes: int = 10,
    hidden: int = 128,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Sequential:
    c, h, w = (int(v) for v in input_shape)
    h2, w2 = _conv_out(_conv_out(h)), _conv_out(_conv_out(w))
    if h2 < 1 or w2 < 1:
        raise ValueError(f"input {tuple(input_shape)} is too small for two stride-2 convolutions")
    mean = list(mean) if mean is not None else [0.0] * c
    std = list(std) if std is not None else [1.0] * c
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(c, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * h2 * w2, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
