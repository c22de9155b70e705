import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from robustbench_mr import DatasetError, UserError, load_dataset
from robustbench_mr.data import dataset_info


def test_digits_is_offline_in_unit_range_with_fixed_split():
    xtr, ytr = load_dataset("digits", "train")
    xte, yte = load_dataset("digits", "test")
    assert xtr.shape == (1500, 1, 8, 8) and xte.shape == (297, 1, 8, 8)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert float(xte.min()) == 0.0 and float(xte.max()) == 1.0
    assert set(ytr.tolist()) == set(range(10))
    again, _ = load_dataset("digits", "test")
    assert torch.equal(xte, again)


def test_digits_split_matches_the_reference_properties(shared_dir):
    # digits_reference/expected.csv names, per property, the digits index and its label;
    # property K uses test[K] of the seeded split, so our test labels must agree.
    import csv

    from sklearn.datasets import load_digits

    _, yte = load_dataset("digits", "test")
    target = load_digits().target
    idx = np.random.default_rng(0).permutation(len(target))[1500:]
    with open(shared_dir / "data/digits_reference/expected.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    for row in rows:
        k = int(row["prop"].rsplit("_", 1)[1].split(".")[0])
        assert idx[k] == int(row["index"])
        assert int(yte[k]) == int(row["label"])


def _write_idx(path, array, magic):
    header = struct.pack(">II", magic, array.shape[0])
    if magic == 2051:
        header += struct.pack(">II", array.shape[1], array.shape[2])
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_official_idx_files_written_here(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(5, 28, 28))
    labels = np.array([3, 1, 4, 1, 5])
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte.gz", imgs, 2051)
    _write_idx(raw / "train-labels-idx1-ubyte.gz", labels, 2049)
    x, y = load_dataset("mnist", "train", tmp_path)
    assert x.shape == (5, 1, 28, 28)
    assert torch.allclose(x[:, 0], torch.from_numpy(imgs / 255.0).float())
    assert y.tolist() == labels.tolist()


def test_mnist_official_test_set(shared_dir):
    x, y = load_dataset("mnist", "test", shared_dir / "data/mnist")
    assert x.shape == (10000, 1, 28, 28)
    # label counts published in ../shared/data/mnist/SOURCE.md
    assert np.bincount(y.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_truncated_idx_is_a_one_line_error(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)), 2051)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 2049, 5) + b"\x01")
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("mnist", "test", tmp_path)


def _write_cifar_batch(path, data, labels):
    with open(path, "wb") as fh:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": list(labels), "data": data, "filenames": []}, fh, protocol=2)


def test_cifar10_reads_official_python_batches_written_here(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    _write_cifar_batch(folder / "test_batch", data, [3, 8, 8, 0])
    x, y = load_dataset("cifar10", "test", tmp_path)
    assert x.shape == (4, 3, 32, 32)
    # official layout: 1024 R, then 1024 G, then 1024 B, each row-major
    assert torch.allclose(x[1, 2, 0, 5], torch.tensor(data[1, 2048 + 5] / 255.0, dtype=torch.float32))
    assert y.tolist() == [3, 8, 8, 0]


def test_cifar10_refuses_a_batch_that_would_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": Evil(), "labels": []}, fh)
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        load_dataset("cifar10", "test", tmp_path)


@pytest.mark.parametrize("name, expected_file", [("cifar10", "test_batch"), ("mnist", "t10k-images-idx3-ubyte")])
def test_missing_dataset_names_the_folder_and_the_fix(tmp_path, name, expected_file):
    with pytest.raises(DatasetError) as err:
        load_dataset(name, "test", tmp_path)
    msg = str(err.value)
    assert expected_file in msg and str(tmp_path) in msg and "--download" in msg
    assert "\n" not in msg


def test_missing_data_dir_and_unknown_names():
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("cifar10", "test", None)
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(UserError, match="unknown split"):
        load_dataset("digits", "val")
    assert dataset_info("cifar10").input_shape == (3, 32, 32)


# --- hostile / malformed files: one DatasetError line naming the file, before any data is returned


def _mnist_dir(tmp_path, imgs, labels, img_magic=2051, lbl_magic=2049):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs, img_magic)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, lbl_magic)
    return tmp_path


def _one_line_error(tmp_path, name, *fragments):
    with pytest.raises(DatasetError) as err:
        load_dataset(name, "test", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_mnist_label_out_of_range_names_file_index_and_value(tmp_path):
    _mnist_dir(tmp_path, np.zeros((4, 28, 28)), np.array([3, 1, 200, 255]))
    _one_line_error(tmp_path, "mnist", "t10k-labels-idx1-ubyte.gz", "label 200 at index 2 is outside 0..9", "2 label(s)")


def test_mnist_wrong_idx_magic_is_refused(tmp_path):
    # an IDX file of float32 images (type 0x0D) is not the official ubyte file
    _mnist_dir(tmp_path, np.zeros((2, 28, 28)), np.array([1, 2]), img_magic=0x0D03)
    _one_line_error(tmp_path, "mnist", "t10k-images-idx3-ubyte.gz", "IDX magic 3331", "float32", "expected 2051")


def test_mnist_header_cut_short_is_refused(tmp_path):
    # 10 bytes: magic and count, but not the rows/cols (used to raise struct.error, "internal error")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">II", 2051, 1) + b"\x00\x1c")
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1]), 2049)
    _one_line_error(tmp_path, "mnist", "t10k-images-idx3-ubyte", "IDX header cut short")


def test_mnist_more_data_than_declared_is_refused(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 1, 28, 28) + bytes(2 * 28 * 28))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1]), 2049)
    _one_line_error(tmp_path, "mnist", "t10k-images-idx3-ubyte", "more data than the header declares", "1x28x28 = 784")


def test_mnist_huge_declared_count_is_truncated_not_allocated(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 0xFFFFFFFF, 28, 28) + bytes(28 * 28))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1]), 2049)
    _one_line_error(tmp_path, "mnist", "t10k-images-idx3-ubyte", "truncated (784 bytes of images data")


def test_mnist_images_of_the_wrong_size_are_refused(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 1, 5, 5) + bytes(25))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1]), 2049)
    _one_line_error(tmp_path, "mnist", "t10k-images-idx3-ubyte", "declares 5x5 images", "28x28")


def test_mnist_images_and_labels_count_must_agree(tmp_path):
    _mnist_dir(tmp_path, np.zeros((3, 28, 28)), np.array([1, 2]))
    _one_line_error(tmp_path, "mnist", "t10k-images-idx3-ubyte.gz", "3 images but", "t10k-labels-idx1-ubyte.gz holds 2 labels")


def _cifar_dir(tmp_path, data, labels):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _write_cifar_batch(folder / "test_batch", data, labels)
    return tmp_path


def test_cifar10_label_out_of_range_names_file_index_and_value(tmp_path):
    _cifar_dir(tmp_path, np.zeros((3, 3072), dtype=np.uint8), [0, 99, 9])
    _one_line_error(tmp_path, "cifar10", "test_batch", "label 99 at index 1 is outside 0..9")


def test_cifar10_float_data_is_refused_not_wrapped_into_bytes(tmp_path):
    # float pixels in [0, 1000] used to be cast to uint8 (1000 -> 232) and silently accepted
    data = np.linspace(0, 1000, 2 * 3072).reshape(2, 3072)
    _cifar_dir(tmp_path, data, [1, 2])
    _one_line_error(tmp_path, "cifar10", "test_batch", "dtype float64 with values in [0, 1000]", "uint8")


@pytest.mark.parametrize(
    "data, labels, fragment",
    [
        (np.zeros((2, 1024), dtype=np.uint8), [1, 2], "shape (2, 1024)"),
        ([[0] * 3072], [1], "'data' is a list"),
        (np.zeros((2, 3072), dtype=np.uint8), [1.0, 2.0], "'labels' has dtype float64"),
        (np.zeros((2, 3072), dtype=np.uint8), [1], "2 images but 1 labels"),
    ],
)
def test_cifar10_batch_layout_is_checked(tmp_path, data, labels, fragment):
    _cifar_dir(tmp_path, data, labels)
    _one_line_error(tmp_path, "cifar10", "test_batch", fragment)
