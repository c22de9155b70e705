"""The project's ``large`` model (PreActResNet18) through the graph form: traced with
torch.fx, bounded by the engine (sound against sampling and PGD), verified end to end by
``mr-eval verify`` on CIFAR-shaped inputs in the official file format written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_mr.checkpoint import metadata_for, save_checkpoint
from robustbench_mr.cli.eval import main as mr_eval
from robustbench_mr.data.datasets import dataset_info
from robustbench_mr.deadline import Deadline
from robustbench_mr.models import build_model
from robustbench_mr.verifiers.bounds.engine import node_bounds, spec_lower
from robustbench_mr.verifiers.form.from_torch import from_torch
from robustbench_mr.verifiers.spec.property import robustness_property


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two easy classes: dark and bright images with noise (uint8, CHW)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    base = np.where(y[:, None] == 1, 170, 70)
    x = np.clip(base + rng.normal(0, 25, size=(n, 3 * 32 * 32)), 0, 255).astype(np.uint8)
    return x, y


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    x, y = _images(8, 1)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": x, "labels": [int(v) for v in y]}, f)
    info = dataset_info("cifar10")
    kw = dict(input_shape=(3, 32, 32), num_classes=10, mean=tuple(info.mean), std=tuple(info.std))
    model = build_model("large", **kw)
    xt, yt = _images(16, 2)
    xt = torch.as_tensor(xt.reshape(-1, 3, 32, 32) / 255.0, dtype=torch.float32)
    yt = torch.as_tensor(yt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for epoch in range(2):  # two epochs of 2 batches: sane BatchNorm statistics and a fit of the two classes
        for i in range(0, 16, 8):
            loss = torch.nn.functional.cross_entropy(model(xt[i:i + 8]), yt[i:i + 8])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    path = root / "large.pt"
    save_checkpoint(path, model, metadata_for("large", "cifar10", {}))
    return path, root


def test_resnet_bounds_contain_samples_and_pgd(resnet_ckpt: tuple[Path, Path]) -> None:
    from robustbench_mr.checkpoint import load_checkpoint
    from robustbench_mr.verifiers.runs.dataset import _pgd

    model, meta = load_checkpoint(resnet_ckpt[0])
    graph = from_torch(model, (3, 32, 32))
    assert graph.kinds().count("add") == 8 and "conv2d" in graph.kinds()
    x, y = _images(2, 1)
    x = x.reshape(-1, 3, 32, 32) / 255.0
    m64 = model.double().eval()
    for eps in (1 / 255, 2 / 255):
        lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
        gb = node_bounds(graph, torch.from_numpy(lo), torch.from_numpy(hi), "crown", Deadline(4.0))
        label = 0
        C = robustness_property(x[0].reshape(-1), label, eps, 10).clauses
        C = torch.as_tensor(np.vstack([c.C for c in C]))
        low = spec_lower(graph, gb, C, "alpha", Deadline(3.0), alpha_iters=2)  # (2 boxes, 9 rows)
        rng = np.random.default_rng(0)
        for b in range(2):
            pts = [rng.uniform(lo[b], hi[b]) for _ in range(8)] + [lo[b], hi[b]]
            pts.append(_pgd(m64, torch.from_numpy(x[b]), label, eps, 5, 1, 0).numpy())
            with torch.no_grad():
                ys = m64(torch.as_tensor(np.stack(pts)))
            vals = ys @ C.T  # (points, rows)
            assert torch.all(vals >= low[b]), "a sampled or PGD point lies below a sound lower bound"
            out_lo, out_hi = gb.boxes[graph.output]
            assert torch.all(ys >= out_lo[b]) and torch.all(ys <= out_hi[b])


@pytest.mark.parametrize("eps", ["1/255", "2/255"])
def test_mr_eval_verify_runs_on_preact_resnet18(resnet_ckpt: tuple[Path, Path], eps: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, root = resnet_ckpt
    db = tmp_path / "r.sqlite"
    rc = mr_eval(["verify", str(ckpt), "--dataset", "cifar10", "--data-dir", str(root), "--eps", eps, "--n", "2", "--timeout", "3",
                  "--jobs", "1", "--db", str(db)])
    assert rc == 0
    from robustbench_mr.results_db import ResultsDB

    with ResultsDB(db) as d:
        rows = d.rows(kind="verify")
    out = capsys.readouterr().out
    print(out)
    assert "verified" in out or "timeout" in out or "unknown" in out or "falsified" in out
    if rows is not None:
        assert len(rows) == 2
        assert {r.status for r in rows} <= {"verified", "falsified", "timeout", "unknown", "misclassified"}
