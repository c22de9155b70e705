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
