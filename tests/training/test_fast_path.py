"""The optimized mr step (in-place corners, fused ReLU + Hamming autograd function, folded
clean-statistics BatchNorm) against a straightforward reference computation of the same loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.models import build_model
from robustbench_mr.training.regularizers import (
    HammingAccumulator,
    corner_batch,
    corner_signs,
    hamming_layer_term,
    random_corners,
)
from robustbench_mr.training.trainer import Method, StepSettings, training_step


def _reference_corners(x: torch.Tensor, eps: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    signs = corner_signs(x.shape, torch.Generator().manual_seed(seed)) * 2 - 1  # {-1, +1}
    p = signs * eps
    return (x + p).clamp(0, 1), (x - p).clamp(0, 1)


def _reference_bn(bn: nn.modules.batchnorm._BatchNorm, z: torch.Tensor) -> torch.Tensor:
    """Train-mode BN of the whole 3B batch with the clean third's (differentiable) statistics."""
    b = z.shape[0] // 3
    dims = [0] + list(range(2, z.dim()))
    mean = z[:b].mean(dim=dims, keepdim=True)
    var = z[:b].var(dim=dims, unbiased=False, keepdim=True)
    shape = [1, -1] + [1] * (z.dim() - 2)
    return (z - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _reference_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int, gamma_i: float, gamma_h: float, alpha: float) -> dict[str, torch.Tensor]:
    """CE(f(x)) + gamma_I ||f(x+) - f(x-)||^2 + gamma_H mean_b (1/L) sum_l ||tanh(a z+) - tanh(a z-)|| / (2 n_l),
    with plain torch ops and autograd (pre-hooks collect every ReLU's pre-activations)."""
    xp, xm = _reference_corners(x, eps, seed)
    b = x.shape[0]
    terms: list[torch.Tensor] = []

    def pre_hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        _, zp, zm = inputs[0].split(b)
        terms.append(hamming_layer_term(zp, zm, alpha))

    handles = [m.register_forward_pre_hook(pre_hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.forward = (lambda z, _bn=bn: _reference_bn(_bn, z))  # type: ignore[method-assign]
    try:
        out = model(torch.cat([x, xp, xm]))
    finally:
        for h in handles:
            h.remove()
        for bn in bns:
            del bn.forward
    logits, lp, lm = out.split(b)
    ce = F.cross_entropy(logits, y)
    intrinsic = ((lp - lm) ** 2).sum(dim=1).mean()
    hamming = (torch.stack(terms).sum(dim=0) / len(terms)).mean()
    return {"loss": ce + gamma_i * intrinsic + gamma_h * hamming, "ce": ce, "intrinsic": intrinsic, "hamming": hamming}


def _optimized_step(arch: str, shape: tuple[int, ...], kwargs: dict, dtype: torch.dtype, seed: int, settings: StepSettings, alpha: float):
    torch.manual_seed(0)
    net = build_model(arch, input_shape=shape, num_classes=10, **kwargs).train().to(dtype)
    x = torch.rand(6, *shape)
    x[0, 0] = 0.0  # some clipped coordinates
    x[1, 0] = 1.0
    y = torch.randint(0, 10, (6,))
    # lr 0, no momentum, no weight decay: the step leaves the weights and p.grad is the raw gradient
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    parts = training_step(net, opt, HammingAccumulator(net, alpha), x.to(dtype), y, settings, torch.Generator().manual_seed(seed))
    return net, x, y, parts


@pytest.mark.parametrize(
    "arch,shape,kwargs",
    [("mlp", (1, 4, 4), {"hidden": (24, 16)}), ("small", (1, 8, 8), {}), ("large", (3, 8, 8), {})],
)
def test_mr_step_loss_and_gradients_match_the_reference(arch: str, shape: tuple[int, ...], kwargs: dict) -> None:
    """In float64 the optimized step and the reference agree to round-off (the step's logits
    pass through float32); the float32 step stays as close to the float64 reference as float32
    allows. (The reference itself is NOT float32-accurate on ``large``: its unfused BN on 8x8
    inputs and 6 samples, with gamma_H = 2400, is ill-conditioned, so it runs in float64.)"""
    eps, gamma_i, gamma_h, alpha, seed = 8 / 255, 0.8, 2400.0, 8.0, 5
    settings = StepSettings(Method.MR, eps, gamma_i, gamma_h, 1, None)
    net64, x, y, parts64 = _optimized_step(arch, shape, kwargs, torch.float64, seed, settings, alpha)
    net32, _, _, parts32 = _optimized_step(arch, shape, kwargs, torch.float32, seed, settings, alpha)

    torch.manual_seed(0)
    ref_net = build_model(arch, input_shape=shape, num_classes=10, **kwargs).train().double()
    ref = _reference_loss(ref_net, x.double(), y, eps, seed, gamma_i, gamma_h, alpha)
    ref["loss"].backward()
    assert ref["hamming"].item() > 0 and ref["intrinsic"].item() > 0
    for key in ("loss", "ce", "intrinsic", "hamming"):
        assert getattr(parts64, key) == pytest.approx(ref[key].item(), rel=1e-6, abs=1e-12), key
        assert getattr(parts32, key) == pytest.approx(ref[key].item(), rel=1e-5, abs=1e-9), key
    for (name, p64), p32, q in zip(net64.named_parameters(), net32.parameters(), ref_net.parameters()):
        scale = q.grad.abs().max().item()
        assert torch.allclose(p64.grad, q.grad, rtol=1e-5, atol=1e-6 * scale), f"float64 gradient of {name} differs"
        assert torch.allclose(p32.grad.double(), q.grad, rtol=1e-3, atol=1e-3 * scale), f"float32 gradient of {name} differs"


def test_fused_hamming_matches_reference_including_saturation() -> None:
    """Value and input gradient of the accumulated term, with pre-activations far into
    tanh's saturation (where the sigmoid form is clamped) and exactly equal plus/minus rows."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU())
    with torch.no_grad():
        net[0].weight.mul_(30.0)  # |alpha z| up to ~1e2
    x = torch.randn(4, 5)
    xp, xm = x + 0.05 * torch.randn(4, 5), x - 0.05 * torch.randn(4, 5)
    xm[3] = xp[3]  # one sample with H = 0 exactly
    for alpha in (1.0, 8.0, 64.0):
        batch = torch.cat([x, xp, xm]).requires_grad_(True)
        acc = HammingAccumulator(net, alpha)
        with acc.collecting():
            out = net(batch)
        got = acc.value()
        (g_got,) = torch.autograd.grad(got * 1000 + out.sum(), batch)

        batch_r = batch.detach().clone().requires_grad_(True)
        terms = []
        z1 = net[0](batch_r)
        terms.append(hamming_layer_term(z1[4:8], z1[8:], alpha))
        z2 = net[2](torch.relu(z1))
        terms.append(hamming_layer_term(z2[4:8], z2[8:], alpha))
        ref = (torch.stack(terms).sum(0) / 2).mean()
        out_r = torch.relu(z2)
        (g_ref,) = torch.autograd.grad(ref * 1000 + out_r.sum(), batch_r)
        assert got.item() == pytest.approx(ref.item(), rel=1e-5)
        assert torch.equal(out, out_r)
        assert torch.isfinite(g_got).all()
        assert torch.allclose(g_got, g_ref, rtol=1e-4, atol=1e-5 * g_ref.abs().max().item())


def test_hamming_backward_twice_through_a_retained_graph_fails_loudly() -> None:
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    acc = HammingAccumulator(net, 8.0)
    with acc.collecting():
        out = net(torch.rand(6, 3))
    loss = out.sum() + acc.value()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    # the ReLUs are plain again outside collecting()
    assert all("forward" not in vars(m) for m in net.modules())


@pytest.mark.parametrize("shape", [(5, 3, 4, 4), (3, 1, 3, 3), (4, 7)])
def test_corner_batch_is_clean_then_the_reference_corners(shape: tuple[int, ...]) -> None:
    x = torch.rand(*shape)
    eps = 0.1
    batch = corner_batch(x, eps, torch.Generator().manual_seed(7))
    xp, xm = _reference_corners(x, eps, 7)
    b = shape[0]
    assert torch.equal(batch[:b], x)
    assert torch.equal(batch[b : 2 * b], xp) and torch.equal(batch[2 * b :], xm)
    rp, rm = random_corners(x, eps, torch.Generator().manual_seed(7))
    assert torch.equal(rp, xp) and torch.equal(rm, xm)


def test_corner_batch_channels_last_draws_the_same_corners() -> None:
    x = torch.rand(4, 3, 6, 6)
    a = corner_batch(x, 0.1, torch.Generator().manual_seed(2))
    c = corner_batch(x.contiguous(memory_format=torch.channels_last), 0.1, torch.Generator().manual_seed(2))
    assert c.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, c)


def test_corner_signs_are_fair_and_independent_bits() -> None:
    s = corner_signs((4000, 64), torch.Generator().manual_seed(0))
    assert set(s.unique().tolist()) == {0.0, 1.0}
    assert abs(s.mean().item() - 0.5) < 0.01
    # every bit position of the packed bytes is fair, neighbours are uncorrelated
    per_bit = s.view(-1, 8).mean(dim=0)
    assert torch.all((per_bit - 0.5).abs() < 0.01)
    a, b = s.view(-1)[:-1] * 2 - 1, s.view(-1)[1:] * 2 - 1
    assert abs((a * b).mean().item()) < 0.01
    assert not torch.equal(s, corner_signs((4000, 64), torch.Generator().manual_seed(1)))


def test_fused_hamming_on_bfloat16_pre_activations() -> None:
    """Under CUDA autocast the pre-activations are bfloat16: the term is still computed in
    float32 and the gradient comes back in bfloat16."""
    from robustbench_mr.training.regularizers import _ReluHamming

    torch.manual_seed(3)
    z = torch.randn(9, 4, 3, 3).to(torch.bfloat16).requires_grad_(True)
    out, term = _ReluHamming.apply(z, 8.0)
    assert out.dtype == torch.bfloat16 and term.dtype == torch.float32
    assert torch.equal(out, torch.relu(z))
    (g,) = torch.autograd.grad(term.sum() + out.float().sum(), z)
    assert g.dtype == torch.bfloat16

    zf = z.detach().float().requires_grad_(True)
    ref = hamming_layer_term(zf[3:6], zf[6:], 8.0)
    (g_ref,) = torch.autograd.grad(ref.sum() + torch.relu(zf).sum(), zf)
    assert torch.allclose(term, ref, rtol=1e-5)
    assert torch.allclose(g.float(), g_ref, rtol=1e-2, atol=1e-2 * g_ref.abs().max().item())
