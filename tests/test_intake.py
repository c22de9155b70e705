"""Model intake (robustbench_mr.intake): checkpoints, ONNX files and foreign state_dicts, good
and bad, on tiny seeded nets (no training: the checks are about faithful loading)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mr import CheckpointError, UnsupportedLayerError, UserError, load_checkpoint, save_checkpoint
from robustbench_mr.checkpoint import file_sha256, metadata_for, model_kwargs
from robustbench_mr.intake import (ModelKind, import_state_dict, import_torch, load_model, map_state_dict, network_to_torch,
                                   read_state_dict, resolve_arch, to_network)
from robustbench_mr.models import build_model
from robustbench_mr.models.layer_spec import parse_layer_spec

SPEC = "conv(4,3,1,1) relu conv(6,4,2,1) relu flatten linear(12) relu linear(10)"


def _foreign_net(seed: int = 0) -> nn.Sequential:
    """A net 'trained elsewhere' for 1x8x8 inputs: no Normalize, its own layer numbering."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, 10)).eval()


def _x(n: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))


def _one_line(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# --- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_loads_by_kind_and_converts_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    meta = metadata_for("mlp", "digits", {"hidden": [9]})
    model = build_model("mlp", **model_kwargs(meta))
    path = save_checkpoint(tmp_path / "m.pt", model, meta)
    loaded = load_model(path)
    assert loaded.kind is ModelKind.CHECKPOINT and loaded.sha256 == file_sha256(path)
    assert loaded.input_shape == (1, 8, 8) and loaded.num_classes == 10 and loaded.dataset == "digits"
    net = loaded.verifier_network()
    x = _x()
    with torch.no_grad():
        want = model.double()(x.double()).numpy()
    assert np.allclose(net.forward(x.reshape(5, -1).double().numpy()), want, atol=1e-10)
    assert np.allclose(loaded.float64_model()(x.double()).detach().numpy(), want, atol=1e-12)


def test_network_repr_shows_shapes_not_weights(tmp_path: Path) -> None:
    net = to_network(_foreign_net(), (1, 8, 8), source="f.pt")
    text = repr(net)
    assert text == "Network(input_shape=(1, 8, 8), 64 -> relu 256 -> relu 96 -> relu 12 -> 10, source='f.pt')"
    assert repr(net.layers[0]) == "Affine(64 -> 256)"


# --- ONNX ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from robustbench_mr.verifiers.spec.export import export_onnx

    torch.manual_seed(3)
    model = build_model("layers", input_shape=(1, 8, 8), num_classes=10, mean=[0.2], std=[0.5], spec=SPEC).eval()
    return export_onnx(model, (1, 8, 8), tmp_path_factory.mktemp("onnx") / "net.onnx")


def test_onnx_converted_module_matches_onnxruntime_and_has_gradients(onnx_file: Path) -> None:
    from robustbench_mr.verifiers.form.chain_from_onnx import onnxruntime_forward

    loaded = load_model(onnx_file)
    assert loaded.kind is ModelKind.ONNX and loaded.dataset == "digits" and loaded.input_shape == (1, 8, 8)
    assert loaded.num_classes == 10 and loaded.sha256 == file_sha256(onnx_file)
    x = _x(6)
    ref = onnxruntime_forward(onnx_file, x.reshape(6, -1).double().numpy())
    with torch.no_grad():
        got32 = loaded.model(x).double().numpy()
        got64 = loaded.float64_model()(x.double()).numpy()
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert np.abs(got32 - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert np.abs(got64 - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert np.allclose(got64, loaded.verifier_network().forward(x.reshape(6, -1).double().numpy()), atol=1e-12)
    # gradients reach the input: attacks can run on an ONNX model
    xg = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(loaded.model(xg), torch.arange(6) % 10)
    (g,) = torch.autograd.grad(loss, xg)
    assert g.shape == x.shape and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0
    # the converted module is itself a chain the verifier re-imports to the same function
    again = to_network(loaded.model, (1, 8, 8))
    assert np.allclose(again.forward(x.reshape(6, -1).double().numpy()), got32, atol=1e-4)


def test_flat_onnx_input_takes_the_dataset_image_shape(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from robustbench_mr.verifiers.spec.export import export_onnx

    torch.manual_seed(0)
    flat = nn.Sequential(nn.Linear(64, 7), nn.ReLU(), nn.Linear(7, 10)).eval()
    path = export_onnx(flat, (64,), tmp_path / "flat.onnx")
    loaded = load_model(path)
    assert loaded.dataset == "digits" and loaded.input_shape == (1, 8, 8)
    x = _x(3)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), flat(x.reshape(3, 64)), atol=1e-6)
    with pytest.raises(UserError) as err:
        load_model(path, dataset="mnist")
    _one_line(err, "takes inputs of shape (64,)", "mnist images are (1, 28, 28)")


def test_onnx_with_no_matching_dataset_needs_dataset(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from robustbench_mr.verifiers.spec.export import export_onnx

    path = export_onnx(nn.Sequential(nn.Linear(5, 3)).eval(), (5,), tmp_path / "odd.onnx")
    with pytest.raises(UserError) as err:
        load_model(path)
    _one_line(err, "odd.onnx", "matches no known dataset", "--dataset")
    assert load_model(path, require_dataset=False).dataset is None


def test_truncated_onnx_is_one_line(onnx_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(onnx_file.read_bytes()[:200])
    with pytest.raises(UserError) as err:
        load_model(bad)
    _one_line(err, str(bad))


# --- foreign state_dicts -----------------------------------------------------------------------


def test_bare_state_dict_imports_by_order_and_shape(tmp_path: Path) -> None:
    foreign = _foreign_net()
    src = tmp_path / "weights.pth"
    torch.save(foreign.state_dict(), src)
    r = import_torch(src, tmp_path / "out.pt", SPEC, "digits")
    assert r.arch.arch == "layers" and r.arch.kwargs == {"spec": SPEC} and r.kept == ("0.mean", "0.std")
    assert r.meta.imported_from["sha256"] == file_sha256(src) and r.meta.imported_from["arch_spec"] == SPEC
    model, meta = load_checkpoint(r.out)
    assert meta.arch == "layers" and meta.imported_from["file"] == str(src.resolve())
    x = _x()
    with torch.no_grad():
        assert torch.equal(model(x), foreign(x))  # Normalize(0, 1) is exact


def test_registry_arch_infers_hidden_and_classes_and_respects_normalization(tmp_path: Path) -> None:
    torch.manual_seed(1)
    foreign = nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(32 * 2 * 2, 7), nn.ReLU(), nn.Linear(7, 5)).eval()
    src = tmp_path / "sd.pt"
    torch.save({"epoch": 3, "model": foreign.state_dict()}, src)  # under a common key, beside plain data
    r = import_state_dict(src, "small", "digits", mean=(0.25,), std=(0.5,))
    assert r.arch.label == "small(hidden=7)" and r.meta.num_classes == 5 and r.weights.where == "under 'model'"
    x = _x()
    with torch.no_grad():
        assert torch.allclose(r.model(x), foreign((x - 0.25) / 0.5), atol=1e-6)


def test_list_of_state_dicts_picks_the_element(tmp_path: Path) -> None:
    nets = [_foreign_net(seed) for seed in range(3)]
    src = tmp_path / "cascade.pth"
    torch.save({"state_dict": [n.state_dict() for n in nets], "err": 0.1}, src)
    x = _x()
    for k in (None, 2):
        r = import_state_dict(src, SPEC, "digits", element=k)
        with torch.no_grad():
            assert torch.equal(r.model(x), nets[k or 0](x))
        assert r.weights.where == f"element {k or 0} of the list of 3 state_dicts under 'state_dict'"
    with pytest.raises(UserError) as err:
        import_state_dict(src, SPEC, "digits", element=3)
    _one_line(err, "--element 3", "list of 3 state_dicts")


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path: Path) -> None:
    src = tmp_path / "w.pth"
    torch.save(_foreign_net().state_dict(), src)
    with pytest.raises(CheckpointError) as err:
        import_state_dict(src, SPEC.replace("linear(12)", "linear(13)"), "digits")
    _one_line(err, str(src), "tensor #4 '5.weight' has shape (12, 96)", "expects (13, 96)", "'6.weight'")
    with pytest.raises(CheckpointError) as err:
        import_state_dict(src, "conv(4,3,1,1) relu conv(6,4,2,1) relu flatten linear(12)", "digits")
    _one_line(err, "8 tensors in the file, 6 parameters/buffers", "tensor #6 '7.weight' (10, 12)")
    assert not (tmp_path / "out.pt").exists()


def test_truncated_state_dict_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "w.pth"
    torch.save(_foreign_net().state_dict(), src)
    src.write_bytes(src.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as err:
        read_state_dict(src)
    _one_line(err, str(src), "truncated or corrupt")


class _RunsCode:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch PWNED_BY_STATE_DICT",))


class _Opaque:
    def __init__(self) -> None:
        self.w = 1


def test_pickle_with_code_or_objects_is_refused_and_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sd = _foreign_net().state_dict()
    evil = tmp_path / "evil.pth"
    torch.save({**sd, "hook": _RunsCode()}, evil)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(evil)
    _one_line(err, "refused to load", "execute code", "nothing was run")
    assert not (tmp_path / "PWNED_BY_STATE_DICT").exists()
    obj = tmp_path / "obj.pth"
    torch.save({**sd, "extra": _Opaque()}, obj)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(obj)
    _one_line(err, str(obj), "refused to load")
    plain = tmp_path / "plain.pth"
    torch.save({**sd, "note": "trained by me"}, plain)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(plain)
    _one_line(err, "entry 'note' is a str, not a tensor")


def test_nan_tensor_and_non_state_dict_files(tmp_path: Path) -> None:
    sd = _foreign_net().state_dict()
    sd["5.bias"][3] = float("nan")
    src = tmp_path / "nan.pth"
    torch.save(sd, src)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(src)
    _one_line(err, "tensor '5.bias' has 1 NaN")
    other = tmp_path / "other.pth"
    torch.save({"epoch": 3, "lr": 0.1}, other)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(other)
    _one_line(err, "no state_dict found", "'epoch'")


def test_bare_state_dict_given_as_a_model_points_at_import_torch(tmp_path: Path) -> None:
    src = tmp_path / "w.pth"
    torch.save(_foreign_net().state_dict(), src)
    with pytest.raises(CheckpointError) as err:
        load_model(src)
    _one_line(err, "bare state_dict", f"mr-eval import-torch {src} --arch SPEC")


def test_unknown_arch_and_bad_layer_specs() -> None:
    with pytest.raises(UserError) as err:
        resolve_arch("resnet50")
    _one_line(err, "unknown architecture 'resnet50'")
    with pytest.raises(UserError) as err:
        resolve_arch("conv(4,3) pool flatten linear(10)", input_shape=(1, 8, 8))
    _one_line(err, "unknown layer 'pool'")
    with pytest.raises(UserError) as err:
        resolve_arch("conv(4) relu", input_shape=(1, 8, 8))
    _one_line(err, "conv(4) takes 2 to 4 arguments, got 1")
    with pytest.raises(UserError) as err:
        resolve_arch("linear(10)", input_shape=(1, 8, 8))
    _one_line(err, "put flatten before it")
    assert [str(t) for t in parse_layer_spec(" CONV(4, 3,1,1)  ReLU flatten,linear(10) ")] == ["conv(4,3,1,1)", "relu", "flatten", "linear(10)"]


def test_hostile_layer_spec_in_a_checkpoint_is_refused_before_allocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import robustbench_mr.checkpoint as ckpt

    foreign = tmp_path / "w.pth"
    torch.save(_foreign_net().state_dict(), foreign)
    out = import_torch(foreign, tmp_path / "m.pt", SPEC, "digits").out
    payload = torch.load(out, weights_only=True)
    payload["metadata"]["arch_kwargs"]["spec"] = "flatten linear(65536) linear(65536) linear(65536) linear(10)"
    torch.save(payload, out)
    monkeypatch.setattr(ckpt, "build_model", lambda *a, **k: pytest.fail("built before validation"))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(out)
    _one_line(err, "arch_kwargs.spec", "more than")


def test_map_state_dict_takes_normalization_when_the_file_has_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ours = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, mean=[0.3], std=[0.7], hidden=[6])
    src = tmp_path / "ours_sd.pth"
    torch.save(ours.state_dict(), src)  # our own state_dict, Normalize buffers included
    target = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[6])
    state, kept = map_state_dict(target, read_state_dict(src), "mlp")
    assert kept == () and float(state["0.mean"].flatten()[0]) == pytest.approx(0.3)


def test_save_checkpoint_refuses_a_model_that_would_load_as_another_function(tmp_path: Path) -> None:
    class Doubled(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    meta = metadata_for("mlp", "digits", {"hidden": [5]})
    torch.manual_seed(0)
    plain = build_model("mlp", **model_kwargs(meta))
    doubled = Doubled(*plain)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(tmp_path / "d.pt", doubled, meta)
    _one_line(err, "computes other outputs", "nothing was replaced")
    assert list(tmp_path.iterdir()) == []
    doubled.train()
    save_checkpoint(tmp_path / "p.pt", plain.train(), meta)  # a model in train mode is compared in eval mode...
    assert plain.training and all(m.training for m in plain.modules())  # ...and left in train mode


def test_module_the_verifier_cannot_import_is_refused_in_one_line() -> None:
    class Sine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sin(self.lin(x.flatten(1)))

    for model, name in ((nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)), "Sequential"), (Sine(), "Sine")):
        with pytest.raises(UnsupportedLayerError) as err:
            to_network(model, (1, 8, 8))
        _one_line(err, f"cannot verify {name}")


def test_network_to_torch_dtype_and_layers() -> None:
    net = to_network(_foreign_net(), (1, 8, 8))
    m = network_to_torch(net, dtype="float64")
    assert [type(l).__name__ for l in m] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert m[1].weight.dtype == torch.float64
    x = _x()
    assert np.allclose(m(x.double()).detach().numpy(), net.forward(x.reshape(5, -1).double().numpy()), atol=1e-12)
