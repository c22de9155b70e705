"""Datasets in [0,1] pixel space: digits (embedded), mnist and cifar10 (official files)."""

from robustbench_mr.data.datasets import DATASETS, DatasetInfo, dataset_info, load_dataset, parse_split, train_from_test

__all__ = ["DATASETS", "DatasetInfo", "dataset_info", "load_dataset", "parse_split", "train_from_test"]
