"""End-to-end trainer runs on digits: the effect of the method, resume, logs, CLI."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from robustbench_mr import UserError, load_checkpoint
from robustbench_mr.training import TrainConfig, train

TINY = dict(arch="mlp", arch_kwargs={"hidden": [16, 16]}, batch_size=100, quiet=True)


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    full = TrainConfig(method="mr", epochs=4, gamma_h=90.0, out=str(tmp_path / "full.pt"), **TINY)
    train(full)
    part = replace(full, out=str(tmp_path / "part.pt"))
    # a run "killed" after 2 of 4 epochs: the same config, stopped early
    stopped = replace(part, epochs=4)
    _train_epochs(stopped, 2)
    result = train(replace(part, resume=True))
    assert result.epochs_run == 2
    a, _ = load_checkpoint(tmp_path / "full.pt")
    b, meta = load_checkpoint(tmp_path / "part.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), f"{k} differs after resume"
    assert meta.epoch == 4
    rows_full = list(csv.DictReader(open(tmp_path / "full.csv")))
    rows_part = list(csv.DictReader(open(tmp_path / "part.csv")))
    assert [r["epoch"] for r in rows_part] == ["1", "2", "3", "4"]
    drop = {"seconds", "train_seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows_full] == [{k: v for k, v in r.items() if k not in drop} for r in rows_part]


def _train_epochs(config: TrainConfig, stop_after: int) -> None:
    """Run ``config`` but interrupt it after ``stop_after`` epochs, as a kill would."""
    calls = {"n": 0}
    from robustbench_mr import checkpoint

    original = checkpoint.save_checkpoint

    def save_then_maybe_die(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == stop_after:
            raise KeyboardInterrupt
        return out

    checkpoint.save_checkpoint = save_then_maybe_die
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config)
    finally:
        checkpoint.save_checkpoint = original


def test_mr_leaves_fewer_unstable_relus_than_plain(tmp_path: Path) -> None:
    # gamma_H = 20 (not the preset's 9000, which is tuned for CIFAR-10's larger layers and
    # kills every ReLU on 8x8 digits); checked over seeds 0-3: mr 0.10-0.17, plain 0.32-0.36
    base = TrainConfig(arch="small", epochs=12, batch_size=100, quiet=True, seed=0, gamma_h=20.0)
    plain = train(replace(base, method="plain", out=str(tmp_path / "plain.pt")))
    mr = train(replace(base, method="mr", out=str(tmp_path / "mr.pt")))
    u_plain, u_mr = plain.metrics["unstable_frac"], mr.metrics["unstable_frac"]
    assert u_mr < 0.7 * u_plain, (u_mr, u_plain)
    assert mr.metrics["test_acc"] > 0.6, "the regularized model must still classify"
    # the unstable column is measured at the run's final eps
    assert mr.history[-1].eps == pytest.approx(8 / 255)
    # metadata: the training config and the metrics travel with the checkpoint
    _, meta = load_checkpoint(tmp_path / "mr.pt")
    assert meta.train_config["method"] == "mr" and meta.train_config["gamma_h"] == 20.0
    assert meta.metrics["unstable_frac"] == pytest.approx(u_mr)
    assert meta.epoch == 12


def test_csv_log_columns_and_ablations(tmp_path: Path) -> None:
    for method in ("intrinsic-only", "hamming-only", "pgd"):
        cfg = TrainConfig(method=method, epochs=2, gamma_h=90.0, pgd_steps=2, out=str(tmp_path / f"{method}.pt"), **TINY)
        res = train(cfg)
        rows = list(csv.DictReader(open(res.csv)))
        assert len(rows) == 2
        assert set(rows[0]) >= {"epoch", "lr", "eps", "gamma_i", "gamma_h", "loss", "ce", "intrinsic", "hamming", "train_acc", "test_acc", "unstable_frac"}
        last = rows[-1]
        if method == "intrinsic-only":
            assert float(last["hamming"]) == 0.0 and float(last["intrinsic"]) > 0.0
        if method == "hamming-only":
            assert float(last["intrinsic"]) == 0.0 and float(last["hamming"]) > 0.0
        if method == "pgd":
            assert float(last["intrinsic"]) == 0.0 and float(last["hamming"]) == 0.0


def test_bad_settings_are_one_line_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown method"):
        train(TrainConfig(method="trades", out=str(tmp_path / "x.pt")))
    with pytest.raises(UserError, match="no checkpoint"):
        train(TrainConfig(resume=True, out=str(tmp_path / "missing.pt")))
    cfg = TrainConfig(method="plain", epochs=1, out=str(tmp_path / "a.pt"), **TINY)
    train(cfg)
    with pytest.raises(UserError, match="different settings.*seed"):
        train(replace(cfg, seed=5, epochs=2, resume=True))


def test_cli_mlp_writes_checkpoint_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robustbench_mr.cli.train import main

    out = tmp_path / "cli.pt"
    rc = main(["mlp", "--epochs", "2", "--hidden", "8", "--gamma-h", "90", "--eps", "4/255", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["checkpoint"] == str(out) and Path(summary["csv"]).exists()
    _, meta = load_checkpoint(out)
    assert meta.arch == "mlp" and meta.arch_kwargs["hidden"] == [8]
    assert meta.train_config["eps"] == pytest.approx(4 / 255)
    assert meta.train_config["eps_start"] == pytest.approx(1 / 255)
    assert main(["mlp", "--hidden", "x", "--out", str(out)]) == 1


def _write_cifar10(root: Path, per_file: int = 12) -> None:
    """A tiny folder in the official python format (five training batches and the test batch)."""
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8), "labels": [int(v) for v in rng.integers(0, 10, per_file)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)


def test_cifar10_path_with_augmentation(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "data")
    cfg = TrainConfig(arch="mlp", arch_kwargs={"hidden": [8]}, dataset="cifar10", data_dir=str(tmp_path / "data"), epochs=1, batch_size=16, quiet=True, out=str(tmp_path / "c.pt"))
    res = train(cfg)
    _, meta = load_checkpoint(res.checkpoint)
    assert meta.input_shape == (3, 32, 32) and meta.mean[0] == pytest.approx(0.4914)
    assert res.history[0].test_acc >= 0 and not torch.isnan(torch.tensor(res.history[0].unstable_frac))


def test_augmentation_is_a_padded_crop_or_its_mirror() -> None:
    import torch.nn.functional as F

    from robustbench_mr.training.trainer import _augment

    x = torch.rand(6, 3, 10, 10)
    out = _augment(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(out[i], (lambda w: w.flip(-1) if flip else w)(padded[i, :, dy : dy + 10, dx : dx + 10]))
        ]
        assert matches, f"image {i} is not a crop of the padded input"
    assert out.shape == x.shape


@pytest.mark.parametrize("keep", [True, False])
def test_cpu_training_keeps_freed_memory_unless_told_not_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    import robustbench_mr.utils.allocator as allocator

    calls: list[int] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    train(TrainConfig(method="plain", epochs=1, device="cpu", keep_freed_memory=keep, out=str(tmp_path / "k.pt"), **TINY))
    assert len(calls) == (1 if keep else 0)


def test_allocator_policy_may_change_on_resume(tmp_path: Path) -> None:
    # it changes speed and resident memory only: --resume accepts either value
    config = TrainConfig(method="plain", epochs=2, out=str(tmp_path / "r.pt"), **TINY)
    _train_epochs(config, 1)
    assert train(replace(config, resume=True, keep_freed_memory=False)).epochs_run == 1
