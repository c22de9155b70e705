"""The common attack interface: ``perturb(model, x, y) -> x_adv`` inside a norm ball."""

from __future__ import annotations

import abc
from enum import Enum

import torch
from torch import nn


class Norm(str, Enum):
    """Threat models; the value is what the results database stores in its ``norm`` column."""

    LINF = "linf"
    L2 = "l2"
    WASSERSTEIN = "wasserstein"


def project_ball(x_adv: torch.Tensor, x: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the L-inf / L2 ball of radius ``eps`` around ``x``, then [0,1].

    Clipping to [0,1] after the L2 projection can only shrink the perturbation (the box
    contains ``x``, and clipping is a per-coordinate move towards it), so the result lies in both.
    """
    delta = x_adv - x
    if norm is Norm.LINF:
        delta = delta.clamp(-eps, eps)
    elif norm is Norm.L2:
        flat = delta.flatten(1)
        nrm = flat.norm(p=2, dim=1).clamp_min(1e-12)
        factor = (eps / nrm).clamp(max=1.0)
        delta = (flat * factor[:, None]).view_as(delta)
    else:
        raise ValueError(f"project_ball does not handle {norm}")
    return (x + delta).clamp(0.0, 1.0)


def perturbation_size(x_adv: torch.Tensor, x: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-sample distance in ``norm`` (L-inf / L2)."""
    flat = (x_adv - x).flatten(1)
    if norm is Norm.LINF:
        return flat.abs().amax(dim=1)
    if norm is Norm.L2:
        return flat.norm(p=2, dim=1)
    raise ValueError(f"no closed-form distance for {norm}")


class Attack(abc.ABC):
    """An attack in pixel space ([0,1] images; normalization is the model's first layer).

    Subclasses set ``name`` (the results database's ``method``), ``norm`` and ``eps`` and
    implement :meth:`perturb`, which returns points that the caller may re-check; the runner
    never trusts an attack's own success flag.

    Attacks are callable: ``atk(model, x, y)``, or ``atk(x, y)`` when the attack was built with
    ``model=...`` (or :meth:`bind`), as torchattacks users expect. A call runs the model in eval
    mode and restores each module's train/eval flag afterwards.
    """

    name: str
    norm: Norm
    eps: float
    model: nn.Module | None = None  # the model of atk(x, y); set by model=... or bind()

    @abc.abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial versions of ``x`` (same shape, in [0,1], inside the threat model)."""

    def bind(self, model: nn.Module | None) -> "Attack":
        """Use ``model`` for ``atk(x, y)``; returns the attack."""
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__}: model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        return self

    def __call__(self, *args: torch.Tensor | nn.Module) -> torch.Tensor:
        """``atk(model, x, y)`` or ``atk(x, y)``: adversarial versions of ``x`` (see :meth:`perturb`)."""
        from robustbench_mr.errors import UserError

        if len(args) == 3 and isinstance(args[0], nn.Module):
            model, x, y = args
        elif len(args) == 2 and not isinstance(args[0], nn.Module):
            if self.model is None:
                raise UserError(f"{self!r} was built without a model: call it as atk(model, x, y), or build it with model=...")
            model, (x, y) = self.model, args
        else:
            raise TypeError(f"{type(self).__name__}: call as atk(model, x, y) or atk(x, y); got {len(args)} arguments")
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: x and y must be tensors (images in [0,1] and integer labels)")
        if x.shape[:1] != y.shape[:1] or y.dim() != 1:
            raise UserError(f"{type(self).__name__}: {x.shape[0] if x.dim() else 0} inputs but labels of shape {tuple(y.shape)}; "
                            "expected one label per input")
        flags = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            return self.perturb(model, x, y.long())
        finally:
            for m, training in flags:
                m.training = training

    def __repr__(self) -> str:
        return f"{type(self).__name__}(norm={self.norm.value}, eps={self.eps:g})"
