"""The two regularizers of Sections 5.3-5.4 and the BatchNorm policy for the 3B batch.

Per sample x a fresh random corner p in {+eps, -eps}^d gives x+ = clip(x + p) and
x- = clip(x - p). Clean, x+ and x- run through the network as ONE batch of 3B
(``[clean; plus; minus]``), the paper's "three parallel forward passes".

- intrinsic: ||f(x+) - f(x-)||_2^2 on the logits, averaged over the batch;
- Hamming: for each ReLU layer, H = |tanh(alpha z+) - tanh(alpha z-)| on its pre-activations,
  l2 norm over the layer's elements, divided by 2 * (number of elements); summed over layers,
  divided by the number of layers, averaged over the batch. Forward pre-hooks on every
  ``nn.ReLU`` add each layer's per-sample term to a running sum, so nothing but that sum is
  kept (autograd of course keeps what backward needs).

BatchNorm: in the 3B batch, BN (train mode) takes its batch statistics from the CLEAN third
only and normalizes all three thirds with them; running statistics are updated from the
clean third only (through ``F.batch_norm`` itself, so bit for bit as without the
regularizer). Why: statistics over all 3B would make the clean forward pass depend on the
perturbed copies and shift the running statistics (used at test and verification time)
toward x+/x-; with clean statistics the clean logits, the cross-entropy and the eval-mode
model are exactly what plain training would see for these weights, and x+/x- are
normalized exactly as eval-mode BN would treat any input (one shared affine map per batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.errors import UserError


def random_corners(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x+, x-): opposite random corners of the L-inf ball of radius ``eps``, clipped to [0,1]."""
    # {0,1} drawn directly in x's dtype (no int -> float conversion pass), mapped to {-eps,+eps}
    p = torch.randint(0, 2, x.shape, generator=generator, device=x.device, dtype=x.dtype).mul_(2 * eps).sub_(eps)
    return (x + p).clamp(0.0, 1.0), (x - p).clamp(0.0, 1.0)


def intrinsic_term(logits_plus: torch.Tensor, logits_minus: torch.Tensor) -> torch.Tensor:
    """Batch mean of ||f(x+) - f(x-)||_2^2."""
    diff = (logits_plus.float() - logits_minus.float()).flatten(1)
    return diff.pow(2).sum(dim=1).mean()


def hamming_layer_term(z_plus: torch.Tensor, z_minus: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-sample term of one layer: ||tanh(alpha z+) - tanh(alpha z-)||_2 / (2 n)."""
    zp = z_plus.float().flatten(1)
    zm = z_minus.float().flatten(1)
    # H = |tanh(alpha z+) - tanh(alpha z-)|; the abs is dropped because ||H||_2 = ||-H||_2
    # (one elementwise pass less, forward and backward).
    h = torch.tanh(alpha * zp) - torch.tanh(alpha * zm)
    return torch.linalg.vector_norm(h, dim=1) / (2 * h.shape[1])


class HammingAccumulator:
    """Forward pre-hooks on every ``nn.ReLU`` of ``model`` that, inside :meth:`collecting`,
    read the [clean; plus; minus] pre-activations and accumulate the Hamming relaxation.

    Outside :meth:`collecting` the hooks do nothing, so eval, PGD and plain steps are untouched.
    """

    def __init__(self, model: nn.Module, alpha: float) -> None:
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        if not relus:
            raise UserError("the Hamming regularizer needs ReLU modules (nn.ReLU) in the model; this model has none")
        self.alpha = float(alpha)
        self.num_relu_layers = len(relus)
        self._handles = [m.register_forward_pre_hook(self._hook) for m in relus]
        self._active = False
        self._sum: torch.Tensor | None = None
        self._layers = 0

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if not self._active:
            return None
        z = inputs[0]
        if z.shape[0] % 3:
            raise RuntimeError("Hamming hook expects a [clean; plus; minus] batch of 3B rows")
        # split (one SplitBackward) rather than two slices (each slice's backward allocates
        # and copies a gradient the size of the whole 3B activation)
        _, z_plus, z_minus = z.split(z.shape[0] // 3)
        term = hamming_layer_term(z_plus, z_minus, self.alpha)
        self._sum = term if self._sum is None else self._sum + term
        self._layers += 1
        return None

    @contextmanager
    def collecting(self) -> Iterator[HammingAccumulator]:
        self._sum, self._layers, self._active = None, 0, True
        try:
            yield self
        finally:
            self._active = False

    def value(self) -> torch.Tensor:
        """Mean over the batch of (sum over layers) / (number of layers) from the last forward."""
        if self._sum is None or self._layers == 0:
            raise RuntimeError("no forward pass ran inside collecting()")
        return (self._sum / self._layers).mean()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _clean_stats_bn_forward(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    if not bn.training:
        return type(bn).forward(bn, x)
    b = x.shape[0] // 3
    clean, perturbed = x[:b], x[b:]
    # The clean third goes through torch's own batch_norm: same output and same running-stat
    # update as a plain step on this batch.
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    out_clean = F.batch_norm(clean, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, momentum, bn.eps)
    dims = [0] + list(range(2, x.dim()))
    mean = clean.mean(dim=dims, keepdim=True)
    var = clean.var(dim=dims, unbiased=False, keepdim=True)
    out_pert = (perturbed - mean) * torch.rsqrt(var + bn.eps)
    if bn.affine:
        shape = [1, -1] + [1] * (x.dim() - 2)
        out_pert = out_pert * bn.weight.view(shape) + bn.bias.view(shape)
    return torch.cat([out_clean, out_pert.to(out_clean.dtype)], dim=0)


@contextmanager
def clean_batch_statistics(model: nn.Module) -> Iterator[None]:
    """Inside, every BatchNorm in train mode takes statistics from the first third of its batch."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.forward = (lambda x, _bn=bn: _clean_stats_bn_forward(_bn, x))  # type: ignore[method-assign]
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm buffer on exit (PGD's intermediate iterates must not move them)."""
    saved = [(m, [b.clone() for b in m.buffers()]) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, bufs in saved:
                for b, old in zip(m.buffers(), bufs):
                    b.copy_(old)


def pgd_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Madry et al. L-inf PGD from a uniform random start, kept in [0,1]; BN stats untouched."""
    delta = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    delta = (x + delta).clamp(0.0, 1.0) - x
    with frozen_batchnorm_stats(model):
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta).float(), y)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + step_size * grad.sign()).clamp(-eps, eps)
            delta = (x + delta).clamp(0.0, 1.0) - x
    return (x + delta).detach()
