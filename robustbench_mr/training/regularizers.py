"""The two regularizers of Sections 5.3-5.4 and the BatchNorm policy for the 3B batch.

Per sample x a fresh random corner p in {+eps, -eps}^d gives x+ = clip(x + p) and
x- = clip(x - p). Clean, x+ and x- run through the network as ONE batch of 3B
(``[clean; plus; minus]``, built in place by :func:`corner_batch`), the paper's "three
parallel forward passes".

- intrinsic: ||f(x+) - f(x-)||_2^2 on the logits, averaged over the batch;
- Hamming: for each ReLU layer, H = |tanh(alpha z+) - tanh(alpha z-)| on its pre-activations,
  l2 norm over the layer's elements, divided by 2 * (number of elements); summed over layers,
  divided by the number of layers, averaged over the batch. Inside
  :meth:`HammingAccumulator.collecting` every ``nn.ReLU`` runs a fused "ReLU + Hamming term"
  autograd function that adds its layer's per-sample term to a running sum, so nothing but
  that sum is kept beyond what backward needs.

The fused function computes exactly the formula above (:func:`hamming_layer_term` is the
straightforward reference, pinned against it in the tests) with two exact identities:
tanh(a) - tanh(b) = 2 (sigmoid(2a) - sigmoid(2b)) (torch's CPU sigmoid is ~6x faster than
its tanh, the single largest cost of the term on CPU; the argument is clamped where tanh is
already exactly +-1 in floating point), and ||H||_2 = ||-H||_2 (no abs). Its
backward writes the ReLU gradient and the Hamming gradient into one buffer, instead of
autograd's chain of tanh/norm/split backward nodes and a 3B-sized ``cat`` + ``add`` per layer.

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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.errors import UserError


def corner_signs(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Independent fair {0, 1} values of ``shape`` (1: +eps, 0: -eps), in ``dtype``.

    Eight per random byte (one generator call per byte, not per element: on CPU a per-element
    ``randint`` was the largest cost of building the corners). ``out``: a contiguous tensor of
    ``shape`` with a multiple of 8 elements to write into."""
    n = 1
    for d in shape:
        n *= int(d)
    nbytes = (n + 7) // 8
    raw = torch.randint(0, 256, (nbytes,), generator=generator, device=device, dtype=torch.uint8)
    shifts = torch.arange(8, device=raw.device, dtype=torch.uint8)
    if out is not None:
        if n % 8 or not out.is_contiguous() or out.numel() != n:
            raise ValueError("corner_signs(out=...) needs a contiguous tensor of the shape with a multiple of 8 elements")
        torch.bitwise_and(raw.unsqueeze(1) >> shifts, 1, out=out.view(nbytes, 8))
        return out
    bits = torch.empty((nbytes, 8), device=raw.device, dtype=dtype)
    torch.bitwise_and(raw.unsqueeze(1) >> shifts, 1, out=bits)
    return bits.view(-1)[:n].view(shape)


def corner_batch(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[x; x+; x-]`` as one (3B, ...) tensor, written in place (no ``cat``):
    x+ = clip(x + p), x- = clip(x - p) for a fresh random corner p in {+eps, -eps}^d per sample."""
    b = x.shape[0]
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((3 * b, *x.shape[1:]), device=x.device, dtype=x.dtype, memory_format=fmt)
    clean, plus, minus = out.split(b)
    clean.copy_(x)
    # p = s * 2 eps - eps is exactly +-eps (in x's dtype) for s in {0, 1}; p is built in the
    # minus slot (no extra buffer) when the signs fill it exactly, x - p then overwrites it
    if minus.is_contiguous() and x.numel() % 8 == 0:
        p = corner_signs(x.shape, generator, x.device, x.dtype, out=minus)
    else:
        p = corner_signs(x.shape, generator, x.device, x.dtype)
    p.mul_(2 * eps).sub_(eps)
    torch.add(x, p, out=plus).clamp_(0.0, 1.0)
    torch.sub(x, p, out=minus).clamp_(0.0, 1.0)
    return out


def random_corners(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x+, x-): opposite random corners of the L-inf ball of radius ``eps``, clipped to [0,1].
    The same draw as :func:`corner_batch` with the same generator state."""
    _, plus, minus = corner_batch(x, eps, generator).split(x.shape[0])
    return plus, minus


def intrinsic_term(logits_plus: torch.Tensor, logits_minus: torch.Tensor) -> torch.Tensor:
    """Batch mean of ||f(x+) - f(x-)||_2^2."""
    diff = (logits_plus.float() - logits_minus.float()).flatten(1)
    return diff.pow(2).sum(dim=1).mean()


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


def hamming_layer_term(z_plus: torch.Tensor, z_minus: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-sample term of one layer: ||tanh(alpha z+) - tanh(alpha z-)||_2 / (2 n).

    The straightforward reference; training uses the fused :class:`_ReluHamming`."""
    zp = _at_least_float32(z_plus).flatten(1)
    zm = _at_least_float32(z_minus).flatten(1)
    h = torch.abs(torch.tanh(alpha * zp) - torch.tanh(alpha * zm))
    return torch.linalg.vector_norm(h, dim=1) / (2 * h.shape[1])


# Clamp for sigmoid's argument 2 a z: float32 tanh(x) == 1.0 exactly for x >= 9.02 (2x >= 18.04)
# and sigmoid(-30) = 9.4e-14 keeps s (1 - s) and its products with the gradient far from
# subnormal; float64: tanh(x) == 1.0 for x >= 19.1, sigmoid(-80) = 1.8e-35.
_SIGMOID_ARG_MAX = {torch.float32: 30.0, torch.float64: 80.0}


class _ReluHamming(torch.autograd.Function):
    """(relu(z), per-sample Hamming term of z's plus/minus thirds) for z = [clean; plus; minus].

    term = ||tanh(a z+) - tanh(a z-)||_2 / (2n) = ||s+ - s-||_2 / n with s = sigmoid(2a z).
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        out = torch.relu(z)
        b = z.shape[0] // 3
        zz = z[b:]  # (2B, ...) [plus; minus], a view
        # s = sigmoid(2a z) with 2a z clamped to +-_SIGMOID_ARG_MAX: there tanh(a z) is
        # already exactly +-1 (the reference's term and gradient are exactly saturated), and
        # sigmoid of larger |arguments| reaches subnormal floats, which are ~50x slower on CPU
        s = _at_least_float32(zz).mul(2.0 * alpha)  # a new tensor, float32 or float64
        bound = _SIGMOID_ARG_MAX[s.dtype]
        s.clamp_(-bound, bound).sigmoid_()
        sp, sm = s.split(b)
        dims = tuple(range(1, s.dim()))
        norm = torch.linalg.vector_norm(sp - sm, dim=dims)
        n = sp[0].numel() if b else 1
        ctx.save_for_backward(out, s, norm)
        ctx.alpha, ctx.n = float(alpha), n
        return out, norm / n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor, grad_term: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        out, s, norm = ctx.saved_tensors
        # exactly ReLU's own backward (derivatives.yaml: threshold_backward(grad, result, 0))
        grad_z = torch.ops.aten.threshold_backward(grad_out, out, 0)
        b = out.shape[0] // 3
        # d term / d h = h / (n ||h||) (0 where h = 0, as torch's norm backward);
        # d s / d z = 2a s (1 - s); the minus third gets the opposite sign.
        # s is this node's private buffer and is overwritten in place (on CPU every fresh
        # activation-sized buffer costs page faults). A second backward through a retained
        # graph therefore fails loudly (autograd's saved-tensor version check); it can never
        # use the overwritten values. h = s+ - s- is recomputed rather than kept from forward
        # (B floats less per layer held between forward and backward).
        coef = torch.where(norm > 0, grad_term.to(norm.dtype) * (2.0 * ctx.alpha / ctx.n) / norm, torch.zeros_like(norm))
        sp, sm = s.split(b)
        dh = torch.sub(sp, sm).mul_(coef.view((-1,) + (1,) * (s.dim() - 1)))
        ds = s.addcmul_(s, s, value=-1.0)  # s (1 - s)
        dp, dm = ds.split(b)
        _, gp, gm = grad_z.split(b)
        gp.addcmul_(dp, dh)
        gm.addcmul_(dm, dh, value=-1.0)
        return grad_z, None


class HammingAccumulator:
    """Inside :meth:`collecting`, every ``nn.ReLU`` of ``model`` reads its [clean; plus; minus]
    pre-activations and accumulates the Hamming relaxation (one fused autograd function per
    layer, installed on entry and removed on exit).

    Outside :meth:`collecting` the ReLUs are untouched, so eval, PGD and plain steps are too.
    """

    def __init__(self, model: nn.Module, alpha: float) -> None:
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        if not relus:
            raise UserError("the Hamming regularizer needs ReLU modules (nn.ReLU) in the model; this model has none")
        self.alpha = float(alpha)
        self.num_relu_layers = len(relus)
        self._relus = relus
        self._sum: torch.Tensor | None = None
        self._layers = 0

    def _relu_forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[0] % 3:
            raise RuntimeError("Hamming layer expects a [clean; plus; minus] batch of 3B rows")
        out, term = _ReluHamming.apply(z, self.alpha)
        self._sum = term if self._sum is None else self._sum + term
        self._layers += 1
        return out

    @contextmanager
    def collecting(self) -> Iterator[HammingAccumulator]:
        self._sum, self._layers = None, 0
        saved = [(m, vars(m).get("forward")) for m in self._relus]
        for m in self._relus:
            m.forward = self._relu_forward  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for m, previous in saved:
                if previous is None:
                    del m.forward
                else:
                    m.forward = previous  # type: ignore[method-assign]

    def value(self) -> torch.Tensor:
        """Mean over the batch of (sum over layers) / (number of layers) from the last forward."""
        if self._sum is None or self._layers == 0:
            raise RuntimeError("no forward pass ran inside collecting()")
        return (self._sum / self._layers).mean()

    def remove(self) -> None:
        """Forget the model's ReLUs (nothing stays installed outside :meth:`collecting`)."""
        self._relus = []


def _clean_stats_bn_forward(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    if not bn.training:
        return type(bn).forward(bn, x)
    b = x.shape[0] // 3
    # one split (its backward is one cat) rather than two slices (two 3B-sized zero-filled
    # gradients added together)
    clean, perturbed = x.split([b, x.shape[0] - b])
    # The clean third goes through torch's own batch_norm: same output and same running-stat
    # update as a plain step on this batch.
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    out_clean = F.batch_norm(clean, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, momentum, bn.eps)
    dims = [0] + list(range(2, x.dim()))
    # differentiable clean statistics (gradients of the perturbed thirds flow through them)
    var, mean = torch.var_mean(clean, dim=dims, correction=0, keepdim=True)
    # (p - mean) * (weight / sqrt(var + eps)) + bias: the per-channel factors are folded first,
    # so the 2B-sized work is one subtraction and one addcmul
    scale = torch.rsqrt(var + bn.eps)
    shape = [1, -1] + [1] * (x.dim() - 2)
    if bn.affine:
        scale = scale * bn.weight.view(shape)
        out_pert = torch.addcmul(bn.bias.view(shape), perturbed - mean, scale)
    else:
        out_pert = (perturbed - mean) * scale
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
