"""robustbench_mr: manifold-regularized training and exact robustness verification.

The public API (the CLIs call exactly these):

- :func:`load_checkpoint`, :func:`save_checkpoint` -- safe one-file checkpoints
- :func:`parse_eps` -- radii as users write them (``8/255``)
- :func:`load_dataset` -- digits / mnist / cifar10 in [0,1] pixel space
- :func:`train`, :func:`verify`, :func:`attack` -- the three jobs (imported lazily, so
  ``import robustbench_mr`` stays fast)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from robustbench_mr.errors import CheckpointError, DatasetError, UnsupportedLayerError, UserError  # noqa: E402
from robustbench_mr.utils.eps import parse_eps  # noqa: E402


def load_checkpoint(path, device="cpu"):  # noqa: ANN001,ANN201 - re-exported, see checkpoint.load_checkpoint
    from robustbench_mr.checkpoint import load_checkpoint as _load

    return _load(path, device)


def save_checkpoint(path, model, meta, extra=None):  # noqa: ANN001,ANN201
    from robustbench_mr.checkpoint import save_checkpoint as _save

    return _save(path, model, meta, extra)


def load_dataset(name: str, split: str = "test", data_dir: Any = None, download: bool = False):  # noqa: ANN201
    from robustbench_mr.data import load_dataset as _load

    return _load(name, split, data_dir, download)


def train(config: Any) -> Any:
    """Train a model from a :class:`robustbench_mr.training.TrainConfig`; returns the result."""
    from robustbench_mr.training import train as _train

    return _train(config)


def verify(options: Any) -> Any:
    """Verify a checkpoint exactly; see :mod:`robustbench_mr.verifiers.runner`."""
    from robustbench_mr.verifiers.runner import verify as _verify

    return _verify(options)


def attack(options: Any) -> Any:
    """Attack a checkpoint; see :mod:`robustbench_mr.attacks.runner`."""
    from robustbench_mr.attacks.runner import attack as _attack

    return _attack(options)


__all__ = [
    "__version__",
    "CheckpointError",
    "DatasetError",
    "UnsupportedLayerError",
    "UserError",
    "attack",
    "load_checkpoint",
    "load_dataset",
    "parse_eps",
    "save_checkpoint",
    "train",
    "verify",
]
