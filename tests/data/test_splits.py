"""Split strings: the standard splits, slices of them, and the train-from-test split."""

from __future__ import annotations

import argparse
import gzip
import struct

import numpy as np
import pytest
import torch

from robustbench_mr import DatasetError, UserError, load_dataset
from robustbench_mr.utils.splits import (
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


def test_grammar_and_canonical_spelling():
    assert str(parse_split("test")) == "test" and parse_split("train").standard
    assert str(parse_split("test[5000:]")) == "test[5000:]"
    assert canonical_split("test[0:5000]") == "test[:5000]"
    assert canonical_split("test[:]") == "test" and canonical_split("test[0:]") == "test"
    assert canonical_split(" test[10:20] ") == "test[10:20]"
    assert not is_standard_split("test[5000:]") and is_standard_split("train")
    assert split_tag("test[5000:]") == "test5000-" and split_tag("test[:5000]") == "test-5000"
    for bad in ("val", "test[5000]", "test[-1:]", "test[1:2:3]", "test[9:3]", "test[a:]", "", "TEST"):
        with pytest.raises(UserError):
            parse_split(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown split"):
        split_arg("dev")


def test_train_from_test_is_disjoint_and_named():
    tr, ev = train_from_test(5000)
    assert (tr, ev) == ("test[:5000]", "test[5000:]")
    assert not splits_overlap(tr, ev)
    assert splits_overlap(tr, "test") and splits_overlap("test[4999:]", tr)
    assert not splits_overlap("train", "test")
    with pytest.raises(UserError):
        train_from_test(0)


def test_slices_select_the_right_inputs_and_refuse_past_the_end():
    x, y = load_dataset("digits", "test")
    xa, ya = load_dataset("digits", "test[:100]")
    xb, yb = load_dataset("digits", "test[100:]")
    assert torch.equal(torch.cat([xa, xb]), x) and torch.equal(torch.cat([ya, yb]), y)
    x5, _ = load_dataset("digits", "test[5:7]")
    assert torch.equal(x5, x[5:7])
    with pytest.raises(DatasetError, match="297 inputs"):
        load_dataset("digits", "test[:400]")
    with pytest.raises(DatasetError, match="nothing"):
        load_dataset("digits", "test[297:]")


def _write_idx(path, array, magic):
    header = struct.pack(">II", magic, array.shape[0])
    if magic == 2051:
        header += struct.pack(">II", array.shape[1], array.shape[2])
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_mnist_test_files_alone_give_both_halves(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(10, 28, 28))
    labels = np.arange(10) % 10
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs, 2051)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 2049)
    tr, ev = train_from_test(6)
    xa, ya = load_dataset("mnist", tr, tmp_path)
    xb, yb = load_dataset("mnist", ev, tmp_path)
    assert xa.shape == (6, 1, 28, 28) and xb.shape == (4, 1, 28, 28)
    assert ya.tolist() == list(range(6)) and yb.tolist() == [6, 7, 8, 9]
    assert np.allclose(xb.numpy()[0, 0], imgs[6] / 255.0)
    with pytest.raises(DatasetError, match="MNIST train files not found"):
        load_dataset("mnist", "train[:5]", tmp_path)  # a slice of a missing split is still missing


def test_checkpoint_metadata_decides_the_default_evaluation_split(capsys):
    held_out = {"train_split": "test[:5000]", "eval_split": "test[5000:]"}
    assert eval_split_of(held_out) == "test[5000:]"
    assert eval_split_of({}) == "test" and eval_split_of(None) == "test"
    assert resolve_eval_split(None, held_out, "mnist", "mnist") == "test[5000:]"
    assert capsys.readouterr().err == ""
    # another data set than the checkpoint's: its standard test split
    assert resolve_eval_split(None, held_out, "digits", "mnist") == "test"
    # asked for explicitly: allowed, with a warning when it overlaps the training images
    assert resolve_eval_split("test", held_out, "mnist", "mnist") == "test"
    assert "overlaps" in capsys.readouterr().err
    assert eval_split_warning(held_out, "test[6000:]") is None
    assert eval_split_warning({"train_split": "train", "eval_split": "test"}, "test") is None
