"""Attack resume is keyed on what was computed: the input's digest and the attack's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

import robustbench_mr
from robustbench_mr.attacks.runner import AttackOptions, attack
from robustbench_mr.results_db import ResultsDB, input_digest


def _options(ckpt: Path, db: Path, **kw: object) -> AttackOptions:
    base: dict[str, object] = dict(checkpoint=ckpt, n=6, db=db, pgd_steps=5, pgd_restarts=1, progress=False)
    base.update(kw)
    return AttackOptions(**base)  # type: ignore[arg-type]


def test_rerun_recomputes_changed_inputs_and_changed_settings(digits_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.sqlite"
    assert attack(_options(digits_ckpt, db)).jobs[0].resumed == 0
    assert attack(_options(digits_ckpt, db)).jobs[0].resumed == 6  # same data, same settings: all reused

    real_load = robustbench_mr.load_dataset

    def changed(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        x, y = real_load(*args, **kw)
        x, y = x.clone(), y.clone()
        x[3], y[3] = x[20], y[20]  # the data files changed under input 3
        return x, y

    monkeypatch.setattr(robustbench_mr, "load_dataset", changed)
    summary = attack(_options(digits_ckpt, db))
    assert summary.jobs[0].resumed == 5 and summary.jobs[0].n == 6
    x, y = changed("digits", "test")
    with ResultsDB(db) as d:
        rows = {r.idx: r for r in d.rows(kind="attack", method="pgd")}
    assert rows[3].input_sha == input_digest(x[3], int(y[3])) and rows[3].label == int(y[3])

    # a stronger attack is another computation: nothing is reused, every row is replaced
    assert attack(_options(digits_ckpt, db, pgd_steps=6)).jobs[0].resumed == 0
    with ResultsDB(db) as d:
        assert len(d.rows(kind="attack", method="pgd")) == 6 and len({r.config_sha for r in d.rows(kind="attack")}) == 1
