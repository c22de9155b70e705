"""Output files of ``mr-eval vnnlib --out`` and ``mr-eval vnncomp --out-dir``: checked before any
solving, the verdict printed even when the file cannot be written, one unique file per
instance, and a symbolic link planted in the output folder replaced, never followed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from robustbench_mr.cli.eval import main
from robustbench_mr.verifiers.runs.vnncomp import Instance, result_file_name
from robustbench_mr.verifiers.spec.export import write_result


def _instance_files(shared_dir: Path) -> tuple[Path, Path]:
    t = shared_dir / "data" / "vnncomp" / "test"
    return t / "test_sat.onnx", t / "test_prop.vnnlib"


@pytest.mark.parametrize("bad", ["dir", "no_parent"])
def test_bad_out_is_refused_before_solving(shared_dir, tmp_path, capsys, bad: str) -> None:
    onnx, vnnlib = _instance_files(shared_dir)
    out = tmp_path if bad == "dir" else tmp_path / "missing" / "r.txt"
    assert main(["vnnlib", str(onnx), str(vnnlib), "--out", str(out)]) == 1
    cap = capsys.readouterr()
    assert cap.out == ""  # no verdict: nothing was solved
    err = [line for line in cap.err.splitlines() if line.strip()]
    assert len(err) == 1 and "--out" in err[0] and ("is a directory" in err[0] or "does not exist" in err[0]), err


def test_verdict_is_printed_when_writing_fails(shared_dir, tmp_path, capsys, monkeypatch) -> None:
    onnx, vnnlib = _instance_files(shared_dir)

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("robustbench_mr.verifiers.spec.export.write_result", broken)
    assert main(["vnnlib", str(onnx), str(vnnlib), "--out", str(tmp_path / "r.txt"), "--timeout", "20"]) == 1
    cap = capsys.readouterr()
    assert cap.out.strip() == "sat"
    assert "could not write the result file" in cap.err and "the answer was sat" in cap.err


def test_result_names_are_unique_per_instance() -> None:
    a = Instance("bench", Path("."), "nets/a/net.onnx", "props/x/prop.vnnlib", 10)
    b = Instance("bench", Path("."), "nets/b/net.onnx", "props/y/prop.vnnlib", 10)
    c = Instance("bench", Path("."), "../../etc/net.onnx", "/abs/prop.vnnlib", 10)
    names = {result_file_name(i) for i in (a, b, c)}
    assert len(names) == 3
    assert all("/" not in n and not n.startswith(".") for n in names)


def test_a_planted_symlink_is_replaced_not_followed(tmp_path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    folder = tmp_path / "results"
    folder.mkdir()
    target = folder / "r.txt"
    os.symlink(outside, target)
    write_result(target, "sat", np.zeros(2), np.ones(1))
    assert outside.read_text() == "precious\n"
    assert not target.is_symlink() and target.read_text().startswith("sat\n")
