"""Shared fixtures. ``../shared`` (beside the repository) is read through ``shared_dir``
only; tests that need it skip with a clear reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    env = os.environ.get("ROBUSTBENCH_MR_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = _shared_root()
    if not (root / "data").is_dir():
        pytest.skip(f"shared data folder not found at {root} (set ROBUSTBENCH_MR_SHARED to its path)")
    return root


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; keep torch from oversubscribing when joblib workers run too.
    torch.set_num_threads(1)
    yield
