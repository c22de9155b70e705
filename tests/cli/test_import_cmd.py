"""``mr-eval import-torch`` and the other subcommands on foreign models (run in-process through
``main``: the exit code and what reaches stdout / stderr are what a user sees)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_mr.checkpoint import file_sha256
from robustbench_mr.cli.eval import main


def _mr_eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_wong_kolter_mnist_is_one_import_then_verify(shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The Wong & Kolter (2018) MNIST net, trained at eps 0.1 and certified on ~95% of inputs
    (SOURCE.md): one import command, then the usual verify on three MNIST inputs."""
    src = shared_dir / "data" / "wong2018" / "mnist_wk2017_0_1.pth"
    mnist = shared_dir / "data" / "mnist"
    if not src.exists() or not (mnist / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("wong2018 / mnist data not present")
    out = tmp_path / "wk.pt"
    code, stdout, err = _mr_eval(capsys, "import-torch", str(src), "--arch", "small", "--dataset", "mnist", "-o", str(out),
                                 "--data-dir", str(mnist))
    assert code == 0, err
    assert f"wrote {out}: small(hidden=100) on mnist 1x28x28, 10 classes; 8 tensors" in stdout
    acc = float(re.search(r"clean accuracy on the first 100 mnist test inputs: ([\d.]+)%", stdout).group(1))
    assert acc >= 95.0  # the published model's clean accuracy is ~98%
    code, stdout, err = _mr_eval(capsys, "info", str(out))
    info = json.loads(stdout)
    assert info["imported_from"]["sha256"] == file_sha256(src) and info["arch_kwargs"] == {"hidden": 100}
    db = tmp_path / "r.sqlite"
    code, stdout, err = _mr_eval(capsys, "verify", str(out), "--eps", "0.1", "--n", "3", "--timeout", "30", "--jobs", "1",
                                 "--data-dir", str(mnist), "--db", str(db))
    assert code == 0, err
    first = stdout.splitlines()[0]  # "inputs 3: verified 2, falsified 1"
    counts = {k: int(v) for k, v in (item.rsplit(" ", 1) for item in first.split(": ", 1)[1].split(", "))}
    assert sum(counts.values()) == 3 and counts.get("verified", 0) >= 2 and "timeout" not in counts and "error" not in counts


def test_layer_spec_import_and_every_command_on_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    foreign = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10)).eval()
    src = tmp_path / "w.pth"
    torch.save({"net": foreign.state_dict()}, src)
    ckpt, onnx = tmp_path / "m.pt", tmp_path / "m.onnx"
    code, stdout, err = _mr_eval(capsys, "import-torch", str(src), "--arch", "flatten linear(12) relu linear(10)", "--dataset", "digits",
                                 "-o", str(ckpt))
    assert code == 0, err
    assert "under 'net'" in stdout and "clean accuracy on the first 100 digits" in stdout
    assert _mr_eval(capsys, "export", str(ckpt), str(onnx))[0] == 0
    code, stdout, _ = _mr_eval(capsys, "info", str(onnx))
    info = json.loads(stdout)
    assert info["kind"] == "onnx" and info["dataset"] == "digits" and info["relu_widths"] == [12]
    db = tmp_path / "r.sqlite"
    code, stdout, err = _mr_eval(capsys, "verify", str(onnx), "--eps", "0.01", "--n", "3", "--timeout", "10", "--jobs", "1", "--db", str(db))
    assert code == 0, err
    assert stdout.startswith("inputs 3:")
    code, stdout, err = _mr_eval(capsys, "attack", str(onnx), "--n", "3", "--eps", "0.01", "--pgd-restarts", "1", "--db", str(db))
    assert code == 0, err
    assert f"({file_sha256(onnx)[:12]})" in stdout
    code, stdout, err = _mr_eval(capsys, "export-vnnlib", str(onnx), "--eps", "0.01", "--index", "0..1", "--dir", str(tmp_path / "p"))
    assert code == 0, err
    assert (tmp_path / "p" / "model.onnx").read_bytes() == onnx.read_bytes()


def test_import_errors_are_one_line_with_the_right_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    src = tmp_path / "w.pth"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10)).state_dict(), src)
    out = tmp_path / "m.pt"
    code, stdout, err = _mr_eval(capsys, "import-torch", str(src), "--arch", "mlp(hidden=[13])", "--dataset", "digits", "-o", str(out))
    assert code == 1 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "tensor #0 '1.weight' has shape (12, 64) but mlp(hidden=[13]) expects (13, 64)" in err and not out.exists()
    code, _, err = _mr_eval(capsys, "import-torch", str(src), "--arch", "mlp", "--dataset", "imagenet", "-o", str(out))
    assert code == 1 and "unknown dataset 'imagenet'" in err
    code, _, err = _mr_eval(capsys, "verify", str(src), "--eps", "0.1")
    assert code == 1 and "bare state_dict" in err and "mr-eval import-torch" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_:
        main(["import-torch", str(src), "--arch", "mlp", "--dataset", "digits", "--input-shape", "1,8", "-o", str(out)])
    assert exit_.value.code == 2
    code, _, _ = _mr_eval(capsys, "import-torch", str(src), "--arch", "mlp", "--dataset", "digits", "-o", str(out))
    assert code == 0 and out.exists()
