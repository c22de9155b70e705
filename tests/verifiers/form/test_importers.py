"""Both importers produce the same graph function as the model: torch.fx on the project's
architectures and on residual / pooled modules, ONNX on exports of them, checked against
torch in float64 and onnxruntime on random points; unsupported ops are all named at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.errors import UnsupportedLayerError
from robustbench_mr.models import build_model
from robustbench_mr.verifiers.spec.export import export_onnx
from robustbench_mr.verifiers.form.from_onnx import HANDLERS, load_onnx_graph
from robustbench_mr.verifiers.form.from_torch import from_torch
from robustbench_mr.verifiers.form.chain_from_onnx import onnxruntime_forward


class TinyRes(nn.Module):
    """conv -> BN -> relu -> two residual blocks (one with a 1x1 projection) -> maxpool/avgpool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.proj = nn.Conv2d(4, 6, 1, stride=2, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.stem(x)))
        h = h + F.relu(self.c1(h))
        h = F.relu(self.c2(h)) + self.proj(h)
        h = self.pool(F.relu(h))
        return self.fc(torch.flatten(h, 1))


def _randomize_bn(m: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) * 0.4 - 0.2)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(mod.num_features, generator=g) * 0.2 - 0.1)
    return m.eval()


MODELS = {
    "tiny_res": (lambda: TinyRes(), (2, 8, 8)),
    "preact_resnet18": (lambda: build_model("large", input_shape=(3, 32, 32)), (3, 32, 32)),
    "small": (lambda: build_model("small", input_shape=(1, 12, 12), hidden=16), (1, 12, 12)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torch_fx_graph_matches_the_model(name: str) -> None:
    torch.manual_seed(0)
    ctor, shape = MODELS[name]
    model = _randomize_bn(ctor())
    graph = from_torch(model, shape)
    x = torch.rand(4, *shape, dtype=torch.float64)
    with torch.no_grad():
        ref = model.double()(x)
    torch.testing.assert_close(graph.forward_torch(x), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["tiny_res", "preact_resnet18"])
def test_onnx_graph_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    ctor, shape = MODELS[name]
    model = _randomize_bn(ctor())
    path = export_onnx(model, shape, tmp_path / f"{name}.onnx")
    graph = load_onnx_graph(path)
    assert "add" in graph.kinds()
    x = np.random.default_rng(0).uniform(0, 1, size=(3, int(np.prod(shape))))
    ort = onnxruntime_forward(path, x)
    ours = graph.forward(x)
    scale = max(1.0, float(np.abs(ort).max()))
    assert np.max(np.abs(ours - ort)) <= 1e-5 * scale, "the imported graph differs from onnxruntime"


def test_unsupported_torch_ops_are_named_together() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc(x)) * torch.tanh(x)

    with pytest.raises(UnsupportedLayerError) as err:
        from_torch(Odd(), (4,))
    msg = str(err.value)
    assert "sigmoid" in msg and "tanh" in msg


def test_unsupported_onnx_ops_are_named_together(tmp_path: Path) -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(x) + torch.tanh(x)

    path = export_onnx(Odd(), (4,), tmp_path / "odd.onnx")
    with pytest.raises(UnsupportedLayerError) as err:
        load_onnx_graph(path)
    assert "Sigmoid" in str(err.value) and "Tanh" in str(err.value)
    assert "Sigmoid" not in HANDLERS
