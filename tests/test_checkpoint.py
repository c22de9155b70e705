import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustbench_mr import CheckpointError, load_checkpoint, save_checkpoint
from robustbench_mr.checkpoint import FORMAT, file_sha256, metadata_for, model_kwargs
from robustbench_mr.models import build_model


def _small_digits(tmp_path: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(seed)
    meta = metadata_for("small", "digits", {"hidden": 20}, train_config={"method": "plain", "seed": seed}, metrics={"test_acc": 0.5})
    model = build_model("small", **model_kwargs(meta))
    path = save_checkpoint(tmp_path / "m.pt", model, meta)
    return path, model


def test_round_trip_restores_weights_metadata_and_eval_mode(tmp_path):
    path, model = _small_digits(tmp_path)
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))
    assert meta.arch == "small" and meta.arch_kwargs == {"hidden": 20}
    assert meta.dataset == "digits" and meta.input_shape == (1, 8, 8)
    assert meta.train_config == {"method": "plain", "seed": 0}
    assert meta.metrics == {"test_acc": 0.5}
    assert meta.created and meta.package_version and meta.torch_version
    assert meta.sha256 == file_sha256(path)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    _small_digits(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("hello, I am not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(p)


def test_truncated_file(tmp_path):
    path, _ = _small_digits(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_our_checkpoint(tmp_path):
    p = tmp_path / "sd.pt"
    torch.save(build_model("mlp", input_shape=(1, 8, 8)).state_dict(), p)
    with pytest.raises(CheckpointError, match="not a robustbench_mr checkpoint"):
        load_checkpoint(p)


def test_unknown_architecture(tmp_path):
    path, model = _small_digits(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["metadata"]["arch"] = "vgg16"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="unknown architecture 'vgg16'"):
        load_checkpoint(path)


def test_state_dict_with_wrong_shapes(tmp_path):
    path, _ = _small_digits(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["metadata"]["arch_kwargs"] = {"hidden": 30}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not fit architecture 'small'.*size mismatch"):
        load_checkpoint(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_pickle_that_tries_to_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "metadata": {}, "state_dict": {}, "x": _RunsCode()}, p)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(p)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def _mr_eval(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustbench_mr.cli.eval", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_reports_a_bad_checkpoint_in_one_line_with_exit_1(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "x": _RunsCode()}, p)
    res = _mr_eval("info", str(p), cwd=tmp_path)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused to load" in lines[0] and str(p) in lines[0]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    debug = _mr_eval("--debug", "info", str(p), cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_cli_info_prints_metadata(tmp_path):
    path, _ = _small_digits(tmp_path)
    res = _mr_eval("info", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert '"arch": "small"' in res.stdout and file_sha256(path) in res.stdout


# --- strict validation: every problem is one CheckpointError line, raised before a model is built


@pytest.fixture
def no_model_built(monkeypatch):
    """Fail the test if load_checkpoint gets as far as building the architecture."""
    import robustbench_mr.checkpoint as ckpt

    def refuse(*args, **kwargs):
        raise AssertionError("build_model was called: validation must come first")

    monkeypatch.setattr(ckpt, "build_model", refuse)


def _edit(path: Path, fn) -> Path:
    payload = torch.load(path, weights_only=True)
    fn(payload)
    torch.save(payload, path)
    return path


def _refused(path: Path, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_nan_weight_is_refused_naming_the_tensor(tmp_path, no_model_built):
    path, _ = _small_digits(tmp_path)

    def poison(payload):
        payload["state_dict"]["1.weight"][0, 0, 0, 0] = float("nan")

    _edit(path, poison)
    _refused(path, "tensor '1.weight' has 1 NaN value(s)", "corrupt or training diverged", "earlier checkpoint")


def test_inf_in_several_tensors_names_the_first_and_counts_the_rest(tmp_path, no_model_built):
    path, _ = _small_digits(tmp_path)

    def poison(payload):
        payload["state_dict"]["1.bias"][:2] = float("inf")
        payload["state_dict"]["3.bias"][0] = float("-inf")

    _edit(path, poison)
    _refused(path, "tensor '1.bias' has 2 Inf value(s) (1 more tensor too)")


def test_batchnorm_running_stats_count_too(tmp_path, no_model_built):
    meta = metadata_for("large", "cifar10")
    model = build_model("large", **model_kwargs(meta))  # imported from models: not the patched one
    path = save_checkpoint(tmp_path / "large.pt", model, meta)
    key = "bn.running_var"
    assert key in model.state_dict()

    def poison(payload):
        payload["state_dict"][key][5] = float("nan")
        payload["state_dict"][key][6] = float("inf")

    _edit(path, poison)
    _refused(path, f"tensor '{key}' has 1 NaN and 1 Inf value(s)")


@pytest.mark.parametrize(
    "field, value, fragments",
    [
        ("num_classes", -5, ["metadata field 'num_classes' is -5", "expected an integer in 2.."]),
        ("num_classes", True, ["'num_classes' is True (a bool)"]),
        ("num_classes", "10", ["'num_classes' is '10' (a str)"]),
        ("input_shape", "1,8,8", ["'input_shape' is '1,8,8' (a str)", "a list of 3 integers"]),
        ("input_shape", [1, -8, 8], ["'input_shape' is [1, -8, 8]", "a list of 3 integers in 1.."]),
        ("input_shape", [1, 8.0, 8], ["'input_shape' is [1, 8.0, 8]"]),
        ("dataset", "imagenet", ["'dataset' is 'imagenet'", "one of digits, mnist, cifar10"]),
        ("mean", [0.0, 0.0], ["'mean' is [0.0, 0.0]", "a list of 1 finite numbers"]),
        ("mean", [float("nan")], ["'mean' is [nan]"]),
        ("std", [0.0], ["'std' is [0.0]", "positive"]),
        ("std", [-1.0], ["'std' is [-1.0]", "positive"]),
        ("arch", 3, ["'arch' is 3", "an architecture name"]),
        ("arch_kwargs", {"hidden": "20"}, ["'arch_kwargs.hidden' is '20' (a str)", "an integer in 1.."]),
        ("arch_kwargs", {"hidden": -3}, ["'arch_kwargs.hidden' is -3"]),
        ("arch_kwargs", {"depth": 3}, ["'arch_kwargs.depth' is 3", "only arguments 'small' accepts: hidden"]),
        ("arch_kwargs", {"num_classes": 3}, ["'arch_kwargs.num_classes'", "top-level field"]),
        ("arch_kwargs", [20], ["'arch_kwargs' is [20] (a list)", "a dict"]),
        ("epoch", -1, ["'epoch' is -1"]),
        ("metrics", "good", ["'metrics' is 'good' (a str)"]),
    ],
)
def test_bad_metadata_is_one_line_naming_field_value_and_expectation(tmp_path, no_model_built, field, value, fragments):
    path, _ = _small_digits(tmp_path)
    _edit(path, lambda payload: payload["metadata"].__setitem__(field, value))
    msg = _refused(path, *fragments)
    assert "expected" in msg or "unknown" in msg


def test_mlp_hidden_must_be_a_list_of_positive_ints(tmp_path, no_model_built):
    meta = metadata_for("mlp", "digits", {"hidden": [8]})
    path = save_checkpoint(tmp_path / "mlp.pt", build_model("mlp", **model_kwargs(meta)), meta)
    _edit(path, lambda payload: payload["metadata"]["arch_kwargs"].__setitem__("hidden", [8, "x"]))
    _refused(path, "'arch_kwargs.hidden' is [8, 'x'] (a list)", "layer widths")


def test_save_checkpoint_validates_metadata_and_writes_nothing(tmp_path):
    from dataclasses import replace

    path, model = _small_digits(tmp_path)
    path.unlink()
    meta = replace(metadata_for("small", "digits", {"hidden": 20}), num_classes=-5)
    with pytest.raises(CheckpointError, match="metadata field 'num_classes' is -5.*save_checkpoint"):
        save_checkpoint(tmp_path / "bad.pt", model, meta)
    assert list(tmp_path.iterdir()) == []


def test_save_checkpoint_checks_the_file_loads_back(tmp_path, monkeypatch):
    import robustbench_mr.checkpoint as ckpt

    path, model = _small_digits(tmp_path)
    good = path.read_bytes()
    real_save = torch.save

    def save_then_truncate(obj, f, *args, **kwargs):  # a full or failing disk
        real_save(obj, f, *args, **kwargs)
        data = Path(f).read_bytes()
        Path(f).write_bytes(data[: len(data) // 3])

    monkeypatch.setattr(ckpt.torch, "save", save_then_truncate)
    meta = metadata_for("small", "digits", {"hidden": 20})
    with pytest.raises(CheckpointError, match="just written does not load back.*nothing was replaced"):
        ckpt.save_checkpoint(path, model, meta)
    assert path.read_bytes() == good  # the old checkpoint is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # and no temporary file is left


# --- wording: what the file is, and "execute code" only for a refused global


def test_empty_file_says_it_is_empty(tmp_path):
    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    msg = _refused(p, "the file is empty (0 bytes)")
    assert "code" not in msg


def test_random_bytes_are_not_called_code(tmp_path):
    p = tmp_path / "random.pt"
    p.write_bytes(bytes(range(256)) * 8)  # starts 00 01 02 ...: neither zip nor pickle
    msg = _refused(p, "neither a torch zip archive nor a pickle", "not a checkpoint written by robustbench_mr")
    assert "code" not in msg


def test_random_bytes_after_a_pickle_header_are_not_called_code(tmp_path):
    p = tmp_path / "random.pt"
    p.write_bytes(b"\x80\x02" + bytes(range(35, 256)) * 4)
    msg = _refused(p, "a pickle that is not a checkpoint written by robustbench_mr", "nothing was run")
    assert "execute code" not in msg


def test_truncated_zip_says_truncated_zip(tmp_path):
    path, _ = _small_digits(tmp_path)
    path.write_bytes(path.read_bytes()[:700])
    msg = _refused(path, "truncated or corrupt zip archive")
    assert "code" not in msg


@pytest.mark.parametrize("protocol", [2, 4])
def test_plain_pickle_with_malicious_reduce_runs_nothing(tmp_path, monkeypatch, protocol):
    import pickle

    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pt"
    with open(p, "wb") as fh:
        pickle.dump({"format": FORMAT, "x": _RunsCode()}, fh, protocol=protocol)
    msg = _refused(p, "refused" if protocol == 2 else "not a checkpoint written by robustbench_mr")
    # protocol 2: torch's weights-only unpickler meets the global and blocks it; protocol 4: it
    # stops at the FRAME opcode before any global, so we do not claim what it would have run
    assert ("tries to execute code" in msg and "system" in msg) == (protocol == 2)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_torch_saved_malicious_reduce_names_the_refused_global(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "metadata": {}, "state_dict": {}, "x": _RunsCode()}, p)
    _refused(p, "refused to load: it tries to execute code", f"imports {os.system.__module__}.system")
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_cli_nan_checkpoint_is_one_line_exit_1(tmp_path):
    path, _ = _small_digits(tmp_path)
    _edit(path, lambda payload: payload["state_dict"]["1.weight"].view(-1)[0].fill_(float("nan")))
    res = _mr_eval("info", str(path), cwd=tmp_path)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "tensor '1.weight' has 1 NaN value(s)" in lines[0], res.stderr
