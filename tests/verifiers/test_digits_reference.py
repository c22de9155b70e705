"""The digits_reference set (../shared/data/digits_reference): 40 VNN-LIB robustness properties
of a 64-40-40-10 network whose answers an independent exact MILP computed. Ours, through the
ONNX + VNN-LIB front end and the exact verifier, must equal them (a timeout is allowed, a
wrong answer is not), and every sat must come with a counterexample onnxruntime confirms."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx, onnxruntime_forward  # noqa: E402
from robustbench_mr.verifiers.spec.property import robustness_property  # noqa: E402
from robustbench_mr.verifiers.spec.vnnlib import read_vnnlib  # noqa: E402
from robustbench_mr.verifiers.decide.instance import InstanceStatus, check_instance  # noqa: E402

TIMEOUT = 20.0


def _rows(shared_dir):
    folder = shared_dir / "data" / "digits_reference"
    if not (folder / "expected.csv").is_file():
        pytest.skip("digits_reference not in shared data")
    with open(folder / "expected.csv", newline="") as fh:
        return folder, list(csv.DictReader(fh))


def test_properties_are_the_eps_balls_of_the_named_test_images(shared_dir):
    """The files are what SOURCE.md says: digits test image (pixels/16), L-inf ball clipped to [0,1]."""
    from sklearn.datasets import load_digits

    folder, rows = _rows(shared_dir)
    images = load_digits().images.reshape(-1, 64) / 16.0
    for r in rows[:: max(1, len(rows) // 8)]:
        (prop,) = read_vnnlib(folder / r["prop"], 64, 10)
        ref = robustness_property(images[int(r["index"])], int(r["label"]), float(r["eps"]), 10)
        np.testing.assert_allclose(prop.lower, ref.lower, atol=1e-12)
        np.testing.assert_allclose(prop.upper, ref.upper, atol=1e-12)
        assert len(prop.clauses) == 9


def test_all_forty_answers_match_the_reference(shared_dir):
    pytest.importorskip("robustbench_mr.verifiers.decide.chain", reason="the verifier engineer's solve.check_property is not present yet")
    folder, rows = _rows(shared_dir)
    net = folder / "digits_mlp_40x40.onnx"
    assert load_onnx(net).relu_widths == [40, 40]
    wrong, unknown, decided = [], [], 0
    for r in rows:
        res = check_instance(net, folder / r["prop"], TIMEOUT)
        assert res.status is not InstanceStatus.ERROR, f"{r['prop']}: {res.message}"
        if res.status is InstanceStatus.UNKNOWN:  # not wrong; reported below
            unknown.append(f"{r['prop']} (expected {r['expected']}): {res.message}")
        if res.status.value in ("sat", "unsat"):
            decided += 1
            if res.status.value != r["expected"]:
                wrong.append(f"{r['prop']}: ours {res.status.value}, expected {r['expected']}")
        if res.status is InstanceStatus.SAT:
            (prop,) = read_vnnlib(folder / r["prop"])
            y = onnxruntime_forward(net, res.counterexample)
            assert prop.contains_input(res.counterexample, tol=1e-6) and prop.is_violated_by(y)
    assert not wrong, wrong
    assert decided >= len(rows) // 2, f"only {decided} of {len(rows)} decided within {TIMEOUT}s each"
    if unknown:
        warnings.warn(f"{len(unknown)} of {len(rows)} digits_reference properties unknown (solver incumbents the forward pass rejects): {unknown[:3]}", stacklevel=1)
