"""Datasets as (x, y) tensors in [0,1] pixel space.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (offline, the embedded default),
  pixels divided by 16, a fixed seeded split: ``rng = numpy.random.default_rng(0);
  idx = rng.permutation(1797)``, train = idx[:1500], test = idx[1500:] (the same split as
  ../shared/data/digits_reference).
- ``mnist``: the official IDX files (``t10k-images-idx3-ubyte[.gz]`` ...) found in
  ``data_dir``, ``data_dir/MNIST/raw`` or ``data_dir/raw``. Read directly, because torchvision
  refuses a folder that lacks the training files even when only the test set is wanted.
- ``cifar10``: the official python batches in ``data_dir/cifar-10-batches-py``. Read with a
  restricted unpickler that only builds plain containers and numpy arrays.

``download=True`` fetches mnist / cifar10 through torchvision (needs the internet).
Normalization constants are returned with the data and become the model's first layer.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustbench_mr.errors import DatasetError, UserError

DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN_SIZE = 1500


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", (1, 8, 8), 10, (0.0,), (1.0,)),
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, (0.0,), (1.0,)),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def load_dataset(
    name: str,
    split: str = "test",
    data_dir: str | Path | None = None,
    download: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, y)``: float32 images N x C x H x W in [0,1] and int64 labels."""
    dataset_info(name)
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}; use 'train' or 'test'")
    if name == "digits":
        x, y = _load_digits(split)
    elif name == "mnist":
        x, y = _load_mnist(split, _require_dir(name, data_dir), download)
    else:
        x, y = _load_cifar10(split, _require_dir(name, data_dir), download)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))


def _require_dir(name: str, data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise DatasetError(f"dataset {name!r} needs --data-dir pointing at the folder with its official files")
    return Path(data_dir)


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float64) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    idx = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    sel = idx[:DIGITS_TRAIN_SIZE] if split == "train" else idx[DIGITS_TRAIN_SIZE:]
    return x[sel], y[sel]


# --- MNIST (IDX) -------------------------------------------------------------------------

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_file(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read IDX file ({exc}); re-download the official MNIST files") from None
    if len(data) < 8:
        raise DatasetError(f"{path}: file too short to be an IDX file; re-download the official MNIST files")
    magic, count = struct.unpack(">II", data[:8])
    if magic != expected_magic:
        raise DatasetError(f"{path}: IDX magic {magic}, expected {expected_magic}; is this the right file?")
    if expected_magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        body = np.frombuffer(data, dtype=np.uint8, offset=16)
        if body.size != count * rows * cols:
            raise DatasetError(f"{path}: truncated ({body.size} pixels, header says {count}x{rows}x{cols})")
        return body.reshape(count, 1, rows, cols)
    body = np.frombuffer(data, dtype=np.uint8, offset=8)
    if body.size != count:
        raise DatasetError(f"{path}: truncated ({body.size} labels, header says {count})")
    return body


def _load_mnist(split: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray]:
    img_stem, lbl_stem = _MNIST_FILES[split]
    img, lbl = _find_file(root, img_stem), _find_file(root, lbl_stem)
    if (img is None or lbl is None) and download:
        import torchvision

        torchvision.datasets.MNIST(str(root), train=(split == "train"), download=True)
        img, lbl = _find_file(root, img_stem), _find_file(root, lbl_stem)
    if img is None or lbl is None:
        raise DatasetError(
            f"MNIST {split} files not found: expected {img_stem}[.gz] and {lbl_stem}[.gz] in {root} "
            f"(or {root}/MNIST/raw); get them from the official MNIST site or rerun with --download"
        )
    x = _read_idx(img, 2051).astype(np.float64) / 255.0
    y = _read_idx(lbl, 2049).astype(np.int64)
    if len(x) != len(y):
        raise DatasetError(f"MNIST {split}: {len(x)} images but {len(y)} labels in {root}")
    return x, y


# --- CIFAR-10 (python batches) ------------------------------------------------------------

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class _RestrictedUnpickler(pickle.Unpickler):
    """Only what the CIFAR batches contain: dicts, lists, bytes, str and numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _load_cifar10(split: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray]:
    folder = root / _CIFAR_FOLDER
    files = [folder / f for f in _CIFAR_FILES[split]]
    if not all(f.is_file() for f in files) and download:
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=(split == "train"), download=True)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DatasetError(
            f"CIFAR-10 {split} files not found: expected {', '.join(missing)} in {folder}; "
            "extract cifar-10-python.tar.gz there (https://www.cs.toronto.edu/~kriz/cifar.html) or rerun with --download"
        )
    xs, ys = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                entry = _RestrictedUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = np.asarray(entry["labels"], dtype=np.int64)
        except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as exc:
            raise DatasetError(f"{f}: not a CIFAR-10 python batch ({exc}); re-extract cifar-10-python.tar.gz") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DatasetError(f"{f}: expected N x 3072 uint8 data and N labels, got {data.shape} and {labels.shape}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs).astype(np.float64) / 255.0, np.concatenate(ys)
