import pytest
import torch

from robustbench_mr.checkpoint import metadata_for, model_kwargs
from robustbench_mr.models import build_model
from robustbench_mr.models.layers import Normalize
from robustbench_mr import UserError


@pytest.mark.parametrize("dataset, shape", [("digits", (1, 8, 8)), ("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
@pytest.mark.parametrize("arch", ["small", "mlp", "large"])
def test_every_model_gives_logits_on_every_dataset_shape(arch, dataset, shape):
    torch.manual_seed(0)
    meta = metadata_for(arch, dataset)
    assert meta.input_shape == shape
    model = build_model(arch, **model_kwargs(meta)).eval()
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


def test_small_has_the_paper_layout_and_hidden_width_parameter():
    for hidden in (128, 100):
        net = build_model("small", input_shape=(3, 32, 32), num_classes=10, hidden=hidden)
        convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
            (16, (4, 4), (2, 2), (1, 1)),
            (32, (4, 4), (2, 2), (1, 1)),
        ]
        # 32x32 -> 16x16 -> 8x8: the Wong et al. flatten size
        assert [(l.in_features, l.out_features) for l in linears] == [(32 * 8 * 8, hidden), (hidden, 10)]


def test_normalize_layer_is_first_and_uses_dataset_constants():
    meta = metadata_for("small", "cifar10")
    net = build_model("small", **model_kwargs(meta))
    assert isinstance(net[0], Normalize)
    x = torch.full((1, 3, 32, 32), 0.5)
    expected = (0.5 - torch.tensor(meta.mean)) / torch.tensor(meta.std)
    assert torch.allclose(net[0](x)[0, :, 0, 0], expected)


def test_unknown_architecture_is_a_user_error():
    with pytest.raises(UserError, match="unknown architecture 'resnet50'"):
        build_model("resnet50")
