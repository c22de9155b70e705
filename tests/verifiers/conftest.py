"""Tiny seeded models for the verifier tests (trained here in seconds; no trainer dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_mr.checkpoint import metadata_for, save_checkpoint
from robustbench_mr.data.datasets import dataset_info, load_dataset
from robustbench_mr.models import build_model


def train_digits(arch: str, seed: int = 0, epochs: int = 15, **arch_kwargs: object) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    info = dataset_info("digits")
    x, y = load_dataset("digits", "train", None, False)
    kw = dict(input_shape=tuple(info.input_shape), num_classes=info.num_classes, mean=tuple(info.mean), std=tuple(info.std), **arch_kwargs)
    model = build_model(arch, **kw)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            b = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), kw


@pytest.fixture(scope="session")
def digits_mlp_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    model, kw = train_digits("mlp", seed=0, epochs=10, hidden=(24, 24))
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    arch_kwargs = {"hidden": [24, 24]}
    save_checkpoint(path, model, metadata_for("mlp", "digits", arch_kwargs))
    return path
