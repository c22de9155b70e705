"""Manifold-regularized training (Jin & Rinard 2020, Sections 5.3-5.4, Appendix B)."""

from robustbench_mr.training.trainer import Method, TrainConfig, TrainResult, train

__all__ = ["Method", "TrainConfig", "TrainResult", "train"]
