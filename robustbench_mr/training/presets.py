"""The paper's presets (Appendix B). ``mr-train small|large`` start from these numbers;
every one can be overridden by a flag."""

from __future__ import annotations

from dataclasses import dataclass

from robustbench_mr.errors import UserError


@dataclass(frozen=True)
class Preset:
    arch: str
    dataset: str
    gamma_i: float
    gamma_h: float
    epochs: int = 100
    batch_size: int = 128  # not stated in the paper; the usual CIFAR-10 choice
    lr: float = 0.1
    lr_mid: float = 0.005
    eps: float = 8 / 255
    eps_start: float = 2 / 255
    gamma_growth: float = 10.0
    alpha: float = 8.0
    weight_decay: float = 5e-4
    momentum: float = 0.9


PRESETS: dict[str, Preset] = {
    # PreActResNet18, CIFAR-10 robustness experiments
    "large": Preset(arch="large", dataset="cifar10", gamma_i=0.8, gamma_h=2400.0),
    # Wong et al. / Xiao et al. conv net with 128 hidden units, CIFAR-10 verification experiments
    "small": Preset(arch="small", dataset="digits", gamma_i=0.4, gamma_h=9000.0),
    # not in the paper: a fully connected net for quick experiments, with the small net's weights
    "mlp": Preset(arch="mlp", dataset="digits", gamma_i=0.4, gamma_h=9000.0),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
