"""robustbench_mr: manifold-regularized training and exact robustness verification.

The public API (the CLIs call exactly these):

- :func:`load_checkpoint`, :func:`save_checkpoint` -- safe one-file checkpoints
- :func:`parse_eps` -- radii as users write them (``8/255``)
- :func:`load_dataset` -- digits / mnist / cifar10 in [0,1] pixel space
- :func:`train` -- train a model from a ``TrainConfig``
- :func:`verify`, :func:`attack`, :func:`benchmark` -- the Python API on tensors and any
  ``nn.Module`` (:mod:`robustbench_mr.api`); ``verify(VerifyOptions)`` / ``attack(AttackOptions)``
  (also :func:`verify_checkpoint`, :func:`attack_checkpoint`) run a checkpoint as the CLIs do
- :func:`load_model`, :func:`import_torch` -- any model in: checkpoints, ONNX files, foreign
  state_dicts (:mod:`robustbench_mr.intake`)

Everything but the errors and ``parse_eps`` is imported lazily, so ``import robustbench_mr``
stays fast (no torch).
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


# name -> module, imported on first use (PEP 562): the real functions, with their signatures
_LAZY = {
    "verify": "robustbench_mr.api",
    "attack": "robustbench_mr.api",
    "benchmark": "robustbench_mr.api",
    "verify_checkpoint": "robustbench_mr.api",
    "attack_checkpoint": "robustbench_mr.api",
    "AttackResult": "robustbench_mr.api",
    "BenchmarkResult": "robustbench_mr.api",
    "load_model": "robustbench_mr.intake",
    "import_torch": "robustbench_mr.intake",
    "LoadedModel": "robustbench_mr.intake",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'robustbench_mr' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "AttackResult",
    "BenchmarkResult",
    "CheckpointError",
    "DatasetError",
    "LoadedModel",
    "UnsupportedLayerError",
    "UserError",
    "attack",
    "attack_checkpoint",
    "benchmark",
    "import_torch",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "parse_eps",
    "save_checkpoint",
    "train",
    "verify",
    "verify_checkpoint",
]
