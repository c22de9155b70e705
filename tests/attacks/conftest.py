"""A tiny seeded digits model, trained here with plain cross-entropy (a few seconds), so the
attack tests do not depend on the trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from robustbench_mr.checkpoint import metadata_for, model_kwargs, save_checkpoint
from robustbench_mr.data import load_dataset
from robustbench_mr.models import build_model


def train_tiny_digits(path: Path, arch: str = "small", epochs: int = 15, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    meta = metadata_for(arch, "digits", {"hidden": 32} if arch == "small" else {"hidden": [32]})
    model = build_model(arch, **model_kwargs(meta))
    x, y = load_dataset("digits", "train")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for b in range(0, len(y), 100):
            i = perm[b:b + 100]
            opt.zero_grad()
            F.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    return save_checkpoint(path, model.eval(), meta)


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return train_tiny_digits(tmp_path_factory.mktemp("ckpt") / "tiny_small.pt")


@pytest.fixture(scope="session")
def digits_model(digits_ckpt: Path):
    from robustbench_mr import load_checkpoint

    model, _ = load_checkpoint(digits_ckpt)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
