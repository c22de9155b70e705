"""Fraction of *unstable* ReLUs (pre-activation interval contains 0 in its interior) over
the L-inf ball of radius eps around inputs, from interval bound propagation.

Stable ReLUs are what make exact (MILP) verification fast: each unstable ReLU is one binary
variable. The bounds are sound (float64, interval arithmetic in centre/radius form), so the
count is an upper bound on the truly unstable ReLUs.

Supported exactly: ``nn.Sequential`` nets made of Normalize, Conv2d, Linear, ReLU, Flatten
(``small`` and ``mlp``), and the ``large`` PreActResNet in eval mode (BatchNorm with running
statistics is a per-channel affine map; the residual sum adds intervals; average pooling is
a positive linear map). Any other model gives NaN rather than a guess.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.models.layers import Normalize
from robustbench_mr.models.preact_resnet import PreActBlock, PreActResNet

_SUPPORTED = (Normalize, nn.Conv2d, nn.Linear, nn.ReLU, nn.Flatten, nn.Identity)


def supports_interval_bounds(model: nn.Module) -> bool:
    if type(model) is PreActResNet:
        return True
    return isinstance(model, nn.Sequential) and all(isinstance(m, _SUPPORTED) for m in model)


Interval = tuple[torch.Tensor, torch.Tensor]  # (mid, rad), float64


def _conv(m: nn.Conv2d, mid: torch.Tensor, rad: torch.Tensor) -> Interval:
    w = m.weight.double()
    b = m.bias.double() if m.bias is not None else None
    kw = dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)
    return F.conv2d(mid, w, b, **kw), F.conv2d(rad, w.abs(), None, **kw)


def _bn_eval(m: nn.BatchNorm2d, mid: torch.Tensor, rad: torch.Tensor) -> Interval:
    # eval mode: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel
    scale = 1.0 / torch.sqrt(m.running_var.double() + m.eps)
    shift = -m.running_mean.double() * scale
    if m.affine:
        scale, shift = scale * m.weight.double(), shift * m.weight.double() + m.bias.double()
    view = (1, -1, 1, 1)
    return mid * scale.view(view) + shift.view(view), rad * scale.abs().view(view)


def _relu(mid: torch.Tensor, rad: torch.Tensor, out: list[tuple[torch.Tensor, torch.Tensor]]) -> Interval:
    lower, upper = mid - rad, mid + rad
    out.append((lower, upper))
    lower, upper = lower.clamp_min(0), upper.clamp_min(0)
    return (upper + lower) / 2, (upper - lower) / 2


def _preact_resnet_bounds(model: PreActResNet, mid: torch.Tensor, rad: torch.Tensor, out: list) -> None:
    """Mirror of PreActResNet.forward on intervals (BatchNorm in eval mode)."""
    dev = mid.device
    std = model.normalize.std.double().to(dev)
    mid, rad = (mid - model.normalize.mean.double().to(dev)) / std, rad / std
    mid, rad = _conv(model.conv1, mid, rad)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            assert isinstance(block, PreActBlock)
            a_mid, a_rad = _relu(*_bn_eval(block.bn1, mid, rad), out)
            if block.shortcut is not None:
                s_mid, s_rad = _conv(block.shortcut, a_mid, a_rad)  # type: ignore[arg-type]
            else:
                s_mid, s_rad = mid, rad
            h_mid, h_rad = _conv(block.conv1, a_mid, a_rad)
            h_mid, h_rad = _relu(*_bn_eval(block.bn2, h_mid, h_rad), out)
            h_mid, h_rad = _conv(block.conv2, h_mid, h_rad)
            mid, rad = h_mid + s_mid, h_rad + s_rad
    _relu(*_bn_eval(model.bn, mid, rad), out)  # logits are not needed: stop at the last ReLU


@torch.no_grad()
def relu_interval_bounds(model: nn.Module, x: torch.Tensor, eps: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(lower, upper) of every ReLU's pre-activation, per input, over the clipped eps-ball.

    For the PreActResNet, BatchNorm is taken in eval mode (running statistics), whatever
    ``model.training`` says: that is the model that gets verified.
    """
    dev = x.device
    lo = (x.double() - eps).clamp(0.0, 1.0)
    hi = (x.double() + eps).clamp(0.0, 1.0)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    if type(model) is PreActResNet:
        _preact_resnet_bounds(model, mid, rad, out)
        return out
    for m in model:
        if isinstance(m, Normalize):
            std = m.std.double().to(dev)
            mid, rad = (mid - m.mean.double().to(dev)) / std, rad / std
        elif isinstance(m, nn.Conv2d):
            mid, rad = _conv(m, mid, rad)
        elif isinstance(m, nn.Linear):
            w = m.weight.double()
            b = m.bias.double() if m.bias is not None else None
            mid, rad = F.linear(mid, w, b), F.linear(rad, w.abs())
        elif isinstance(m, nn.Flatten):
            mid, rad = m(mid), m(rad)
        elif isinstance(m, nn.ReLU):
            mid, rad = _relu(mid, rad, out)
        elif isinstance(m, nn.Identity):
            pass
        else:  # pragma: no cover - guarded by supports_interval_bounds
            raise TypeError(f"no interval rule for {type(m).__name__}")
    return out


def unstable_relu_fraction(model: nn.Module, x: torch.Tensor, eps: float, batch_size: int = 256) -> float:
    """Mean over inputs of (unstable ReLUs) / (all ReLUs); NaN for unsupported models."""
    if not supports_interval_bounds(model) or len(x) == 0:
        return math.nan
    dev = next(model.parameters()).device
    unstable = 0.0
    total = 0
    for i in range(0, len(x), batch_size):
        bounds = relu_interval_bounds(model, x[i : i + batch_size].to(dev), eps)  # type: ignore[arg-type]
        if not bounds:
            return math.nan
        n_relu = sum(lb[0].numel() for lb, _ in bounds)
        per_input = sum(((lb < 0) & (ub > 0)).flatten(1).sum(dim=1) for lb, ub in bounds).double()
        unstable += float((per_input / n_relu).sum())
        total += len(per_input)
    return unstable / total


def collapse_warning(test_acc: float, unstable_frac: float, num_classes: int, *, uses_hamming: bool, gamma_h: float,
                     arch: str, dataset: str) -> str | None:
    """The warning for a finished run that ended at chance accuracy, or None.

    A model at chance is useless whatever its stability, and "every ReLU stable" is a trivial
    minimum of the Hamming term (every ReLU dead): such a model verifies at every radius and
    must never pass silently for a robust one."""
    if not test_acc <= 1.5 / num_classes:
        return None
    if uses_hamming and not unstable_frac >= 0.01:
        from robustbench_mr.training.presets import preset_for

        try:
            preset = preset_for(arch, dataset).gamma_h
        except Exception:  # noqa: BLE001 - an arch without a preset: no number to suggest
            preset = None
        if preset is None:
            hint = "try 100x smaller"
        elif gamma_h > preset:
            hint = f"the {arch}/{dataset} preset uses {preset:g}"
        else:  # the preset's own value (or less) collapsed: collapse is not monotone in gamma_H
            hint = f"this run collapsed even at or below the {arch}/{dataset} preset's {preset:g}: try another --seed or a lower --gamma-h or --lr"
        return (f"warning: the model collapsed (test accuracy {test_acc:.3f}, nearly every ReLU stable): "
                f"gamma_H={gamma_h:g} is too large for this dataset/model; lower --gamma-h ({hint})")
    return (f"warning: the model collapsed (test accuracy {test_acc:.3f}, chance level): it is not a usable classifier; "
            "check --lr, --epochs and the regularizer weights")
