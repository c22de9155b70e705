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

Files on disk are untrusted: the IDX header (magic number, 28x28 images, declared sizes
against the bytes present, images count == labels count), the CIFAR batch layout (``data``
uint8 of shape (N, 3072), N integer labels) and every label (in 0..num_classes-1) are
checked before anything is returned; a problem is one :class:`DatasetError` line naming the
file.

``download=True`` fetches mnist / cifar10 through torchvision (needs the internet).
Normalization constants are returned with the data and become the model's first layer.

Splits: ``train`` and ``test`` are the standard ones. ``BASE[a:b]`` (``test[:5000]``,
``test[5000:]``) is a contiguous slice of a standard split, Python slice rules without a step
and without negative numbers; indices of the result restart at 0. Such a split is *not* a
standard split, and its string travels everywhere a split does (checkpoint metadata, the
results database's ``split`` column), so a number measured on it cannot pass for a
standard-split figure. :func:`train_from_test` gives the documented real-image split for a
machine that holds only the official test files: train on ``test[:K]``, evaluate on
``test[K:]``.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zlib
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import IO

import numpy as np
import torch

from robustbench_mr.errors import DatasetError, UserError
from robustbench_mr.utils.splits import (  # noqa: F401 - re-exported: the split grammar lives beside the data
    STANDARD_SPLITS,
    SplitSpec,
    canonical_split,
    eval_split_of,
    eval_split_warning,
    is_standard_split,
    parse_split,
    resolve_eval_split,
    split_arg,
    split_tag,
    splits_overlap,
    train_from_test,
)

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
    spec = parse_split(split)
    if name == "digits":
        x, y = _load_digits(spec.base)
    elif name == "mnist":
        x, y = _load_mnist(spec.base, _require_dir(name, data_dir), download)
    else:
        x, y = _load_cifar10(spec.base, _require_dir(name, data_dir), download)
    if not spec.standard:
        sel = spec.indices(len(y), name)
        x, y = x[sel.start : sel.stop], y[sel.start : sel.stop]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))


def _require_dir(name: str, data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise DatasetError(f"dataset {name!r} needs --data-dir pointing at the folder with its official files")
    return Path(data_dir)


def _check_labels(path: Path, labels: np.ndarray, dataset: str) -> None:
    """Every label is a class index of ``dataset``; else one line naming the first bad one."""
    n = DATASETS[dataset].num_classes
    bad = np.flatnonzero((labels < 0) | (labels >= n))
    if bad.size:
        i = int(bad[0])
        raise DatasetError(
            f"{path}: label {int(labels[i])} at index {i} is outside 0..{n - 1} ({dataset} has {n} classes; "
            f"{bad.size} label(s) out of range in all); the file is corrupt or not {dataset} labels: re-download the official files"
        )


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


# IDX magic number: two zero bytes, the element type, the number of dims.
_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
_IDX_IMAGES, _IDX_LABELS = 0x0803, 0x0801  # unsigned bytes, 3 dims (N, 28, 28) / 1 dim (N)
_MNIST_SIDE = 28
_READ_CHUNK = 1 << 20


def _describe_idx_magic(magic: int) -> str:
    if magic >> 16:
        return "not an IDX header"
    kind = _IDX_TYPES.get((magic >> 8) & 0xFF, f"unknown type 0x{(magic >> 8) & 0xFF:02x}")
    return f"{kind}, {magic & 0xFF} dim(s)"


def _read_exactly(fh: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes, read in chunks: a header that declares a huge size (or a gzip
    bomb) never makes us allocate more than the file really holds."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        chunk = fh.read(min(_READ_CHUNK, size - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """The array in IDX file ``path`` (optionally gzipped) after checking its header: the
    magic number, 28x28 images, and that the data is exactly as long as the dims declare."""
    what = "images" if expected_magic == _IDX_IMAGES else "labels"
    ndim = expected_magic & 0xFF
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            header = _read_exactly(fh, 4 + 4 * ndim)
            if len(header) < 4:
                raise DatasetError(f"{path}: {len(header)} bytes, too short to be an IDX file; re-download the official MNIST files")
            (magic,) = struct.unpack(">I", header[:4])
            if magic != expected_magic:
                raise DatasetError(
                    f"{path}: IDX magic {magic} (0x{magic:08x}: {_describe_idx_magic(magic)}), expected {expected_magic} "
                    f"(0x{expected_magic:08x}: {_describe_idx_magic(expected_magic)}) for MNIST {what}; is this the right file?"
                )
            if len(header) < 4 + 4 * ndim:
                raise DatasetError(f"{path}: IDX header cut short ({len(header)} bytes, {4 + 4 * ndim} expected); "
                                   "re-download the official MNIST files")
            dims = struct.unpack(f">{ndim}I", header[4:])
            if what == "images" and dims[1:] != (_MNIST_SIDE, _MNIST_SIDE):
                raise DatasetError(f"{path}: header declares {dims[1]}x{dims[2]} images; MNIST images are "
                                   f"{_MNIST_SIDE}x{_MNIST_SIDE}; is this the right file?")
            expected = prod(dims)
            body = _read_exactly(fh, expected + 1)  # one more byte tells "too long" from "exact"
    except DatasetError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read IDX file ({exc}); re-download the official MNIST files") from None
    declared = "x".join(str(d) for d in dims)
    if len(body) < expected:
        raise DatasetError(f"{path}: truncated ({len(body)} bytes of {what} data, header declares {declared} = {expected}); "
                           "re-download the official MNIST files")
    if len(body) > expected:
        raise DatasetError(f"{path}: more data than the header declares ({declared} = {expected} bytes, the file holds more); "
                           "the header or the file is corrupt: re-download the official MNIST files")
    array = np.frombuffer(body, dtype=np.uint8)
    return array.reshape(dims[0], 1, *dims[1:]) if what == "images" else array


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
    x = _read_idx(img, _IDX_IMAGES)
    y = _read_idx(lbl, _IDX_LABELS).astype(np.int64)
    if len(x) != len(y):
        raise DatasetError(f"{img}: {len(x)} images but {lbl} holds {len(y)} labels; the two files do not belong together: "
                           "re-download the official MNIST files")
    _check_labels(lbl, y, "mnist")
    return x.astype(np.float64) / 255.0, y


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
        data, labels = _read_cifar_batch(f)
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs).astype(np.float64) / 255.0, np.concatenate(ys)


def _value_range(a: np.ndarray) -> str:
    """' with values in [lo, hi]' for a non-empty numeric array, else ''."""
    if a.size == 0 or a.dtype.kind not in "biuf":
        return ""
    return f" with values in [{a.min():g}, {a.max():g}]"


def _read_cifar_batch(f: Path) -> tuple[np.ndarray, np.ndarray]:
    """``data`` (uint8, N x 3072) and ``labels`` (N class indices) of one official batch."""
    fix = "re-extract cifar-10-python.tar.gz"
    try:
        with open(f, "rb") as fh:
            raw_bytes = fh.read()
    except OSError as exc:
        raise DatasetError(f"{f}: cannot read CIFAR-10 batch ({exc}); {fix}") from None
    try:
        entry = _RestrictedUnpickler(io.BytesIO(raw_bytes), encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 - hostile bytes make the unpickler raise many types
        raise DatasetError(f"{f}: not a CIFAR-10 python batch ({exc}); {fix}") from None
    if not isinstance(entry, dict):
        raise DatasetError(f"{f}: not a CIFAR-10 python batch (a pickled {type(entry).__name__}, not a dict); {fix}")
    for key in ("data", "labels"):
        if key not in entry:
            keys = ", ".join(repr(k) for k in list(entry)[:6])
            raise DatasetError(f"{f}: not a CIFAR-10 python batch: no {key!r} entry (it has {keys or 'none'}); {fix}")
    data = entry["data"]
    if not isinstance(data, np.ndarray):
        raise DatasetError(f"{f}: 'data' is a {type(data).__name__}; a CIFAR-10 batch holds a uint8 numpy array of shape (N, 3072); {fix}")
    if data.dtype != np.uint8:
        raise DatasetError(f"{f}: 'data' has dtype {data.dtype}{_value_range(data)}; a CIFAR-10 batch holds uint8 pixels "
                           f"(0..255) of shape (N, 3072), nothing is converted; {fix}")
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{f}: 'data' has shape {data.shape}; a CIFAR-10 batch holds uint8 data of shape (N, 3072); {fix}")
    raw = entry["labels"]
    if not isinstance(raw, (list, np.ndarray)):
        raise DatasetError(f"{f}: 'labels' is a {type(raw).__name__}; a CIFAR-10 batch holds a list of N integer labels; {fix}")
    try:
        labels = np.asarray(raw) if len(raw) else np.zeros(0, dtype=np.int64)
    except ValueError as exc:  # ragged nested lists
        raise DatasetError(f"{f}: 'labels' is not a flat list of integers ({exc}); {fix}") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{f}: 'labels' has dtype {labels.dtype} and shape {labels.shape}; a CIFAR-10 batch holds a list of "
                           f"N integer labels; {fix}")
    if len(labels) != len(data):
        raise DatasetError(f"{f}: {len(data)} images but {len(labels)} labels; {fix}")
    labels = labels.astype(np.int64)
    _check_labels(f, labels, "cifar10")
    return data, labels
