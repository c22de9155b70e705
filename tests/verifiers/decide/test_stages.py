"""Where the time went: the stage clock adds up to the wall time, every decision says which
search ran, and the figures reach the VNN-COMP rows and the dataset rows."""

from __future__ import annotations

import time

import numpy as np
import pytest

from robustbench_mr.verifiers.decide.chain import check_property
from robustbench_mr.verifiers.decide.stages import SEARCHES, STAGES, StageClock, merge_stages
from robustbench_mr.verifiers.spec.property import robustness_property
from robustbench_mr.verifiers.status import PropertyResult, PropertyStatus
from tests.verifiers.decide.test_exactness import random_net


def test_the_clock_adds_up_and_refuses_unknown_stages() -> None:
    c = StageClock()
    c.enter("attack", "attack")
    time.sleep(0.02)
    c.enter("milp", "milp")
    time.sleep(0.03)
    r = c.stamp(PropertyResult(PropertyStatus.UNSAT, None, None, 0.05))
    assert set(r.stages) == {"attack", "milp"} and r.search == "milp"
    assert r.stages["attack"] >= 0.02 and r.stages["milp"] >= 0.03
    with pytest.raises(ValueError, match="unknown stage"):
        c.enter("sleeping")
    assert merge_stages({"a": 1.0}, {"a": 0.5, "b": 2.0}) == {"a": 1.5, "b": 2.0}


def test_every_decision_records_its_stages_and_search() -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(8):
        net = random_net(rng, [20, 16, 16, 3])
        x = rng.uniform(0.2, 0.8, size=20)
        label = int(np.argmax(net.forward(x)))
        t0 = time.perf_counter()
        r = check_property(net, robustness_property(x, label, float(rng.choice([0.01, 0.1, 0.5])), 3), timeout=20)
        wall = time.perf_counter() - t0
        assert r.search in SEARCHES and set(r.stages) <= set(STAGES) and r.stages
        assert sum(r.stages.values()) <= wall + 1e-3  # one wall clock: the stages never add up to more
        seen.add(r.search)
    assert len(seen) >= 2  # the radii reach different searches (bounds, milp, attack)


def test_vnncomp_rows_carry_the_stages(shared_dir) -> None:  # noqa: ANN001 - the shared-data fixture
    from robustbench_mr.verifiers.runs.vnncomp import Instance, format_stages, solve_instance, summarize, Outcome

    folder = shared_dir / "data" / "digits_reference"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    inst = Instance("digits_reference", folder, "digits_mlp_40x40.onnx", "digits_mlp_40x40_eps0.03_0.vnnlib", 20.0)
    _, res = solve_instance(inst, 20.0, None)
    assert res["status"] in ("sat", "unsat") and res["search"] in SEARCHES and "load" in res["stages"]
    table = format_stages(summarize([Outcome(inst, res["status"], res["seconds"], 20.0, stages=res["stages"], search=res["search"])]))
    assert "load_s" in table and f"{res['search']}:1" in table
