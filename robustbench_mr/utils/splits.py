"""Dataset splits as strings: the standard ``train`` / ``test``, or a contiguous slice of one
(``test[:5000]``, ``test[5000:]``). No torch or numpy here: the command lines parse ``--split``
with it before any engine is imported.

A sliced split is *not* a standard split. Its string is what travels everywhere a split does
(the checkpoint's training config, the results database's ``split`` column, counterexample
file names), so a number measured on it can never pass for a standard-split figure.
:func:`train_from_test` is the documented real-image split for a machine that holds only the
official test files: train on ``test[:K]``, evaluate on ``test[K:]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from robustbench_mr.errors import DatasetError, UserError

STANDARD_SPLITS = ("train", "test")
_SPLIT_RE = re.compile(r"^(train|test)(?:\[(\d*):(\d*)\])?$")


@dataclass(frozen=True)
class SplitSpec:
    """A standard split (``train``, ``test``) or a contiguous slice of one (``test[5000:]``)."""

    base: str
    start: int | None = None
    stop: int | None = None

    @property
    def standard(self) -> bool:
        return self.start is None and self.stop is None

    def __str__(self) -> str:
        if self.standard:
            return self.base
        return f"{self.base}[{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}]"

    def indices(self, n: int, dataset: str = "the dataset") -> range:
        """The indices of the base split (of ``n`` inputs) this split selects; a slice past the
        end or an empty one is a :class:`DatasetError` (never a silently shorter split)."""
        start = 0 if self.start is None else self.start
        stop = n if self.stop is None else self.stop
        if stop > n or start >= stop:
            raise DatasetError(f"split {self}: the {dataset} {self.base} split has {n} inputs (0..{n - 1}), "
                               f"so {self} selects {'nothing' if start >= min(stop, n) else 'past its end'}; "
                               f"choose bounds within 0..{n}")
        return range(start, stop)


def parse_split(text: str | SplitSpec) -> SplitSpec:
    """``train``, ``test`` or ``BASE[a:b]`` (either bound may be empty); anything else is a
    :class:`UserError` naming the accepted forms."""
    if isinstance(text, SplitSpec):
        return text
    m = _SPLIT_RE.match(str(text).strip()) if isinstance(text, str) else None
    if m is None:
        raise UserError(f"unknown split {text!r}; use 'train', 'test', or a slice of one such as 'test[:5000]' or 'test[5000:]'")
    base, a, b = m.group(1), m.group(2), m.group(3)
    if m.group(2) is None:
        return SplitSpec(base)
    start = int(a) if a else None
    stop = int(b) if b else None
    if start is not None and stop is not None and start >= stop:
        raise UserError(f"split {text!r} is empty (start {start} >= stop {stop})")
    if start in (None, 0) and stop is None:
        return SplitSpec(base)  # test[:] / test[0:] is the whole split: spell it as such
    return SplitSpec(base, start, stop)


def canonical_split(text: str) -> str:
    """The one spelling of a split (``test[0:5000]`` -> ``test[:5000]``, ``test[:]`` -> ``test``),
    so equal splits give equal result keys."""
    spec = parse_split(text)
    if spec.start == 0:
        spec = SplitSpec(spec.base, None, spec.stop)
    return str(spec)


def is_standard_split(text: str) -> bool:
    return parse_split(text).standard


def split_tag(text: str) -> str:
    """The split as a file-name part: ``test[5000:]`` -> ``test5000-``."""
    return canonical_split(text).replace("[", "").replace("]", "").replace(":", "-")


def train_from_test(k: int) -> tuple[str, str]:
    """(train split, evaluation split) of the documented real-image split: the first ``k``
    official test inputs to train on, the rest held out for every evaluation."""
    if k < 1:
        raise UserError(f"--train-from-test {k}: give the number of test inputs to train on (>= 1)")
    return f"test[:{k}]", f"test[{k}:]"


def splits_overlap(a: str, b: str) -> bool:
    """Whether two splits may share inputs (same base and intersecting slices)."""
    sa, sb = parse_split(a), parse_split(b)
    if sa.base != sb.base:
        return False
    big = 1 << 62
    a0, a1 = sa.start or 0, big if sa.stop is None else sa.stop
    b0, b1 = sb.start or 0, big if sb.stop is None else sb.stop
    return max(a0, b0) < min(a1, b1)


def eval_split_of(train_config: Mapping[str, Any] | None) -> str:
    """The split a checkpoint is evaluated on by default: the one its training held out
    (``eval_split`` in its training config; ``test`` for a standard run or a foreign file)."""
    split = (train_config or {}).get("eval_split")
    return canonical_split(split) if isinstance(split, str) else "test"


def eval_split_warning(train_config: Mapping[str, Any] | None, split: str) -> str | None:
    """A one-line warning when ``split`` overlaps the data the checkpoint was trained on, or
    None. (Evaluating there is allowed: it was asked for explicitly.)"""
    trained = (train_config or {}).get("train_split")
    if not isinstance(trained, str):
        return None
    if splits_overlap(trained, split):
        return (f"warning: this checkpoint was trained on {trained}, which overlaps the evaluated split {split}: "
                f"these are not held-out figures (its held-out split is {eval_split_of(train_config)})")
    return None


def split_arg(text: str) -> str:
    """argparse type for ``--split``: a bad split is a usage error (exit 2)."""
    import argparse

    try:
        return canonical_split(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve_eval_split(requested: str | None, train_config: Mapping[str, Any] | None, dataset: str, ckpt_dataset: str) -> str:
    """The split an evaluation (``mr-eval verify/attack``) of a checkpoint runs on: ``requested``
    when given (canonical spelling), else the one its training held out (on its own data set;
    ``test`` otherwise). Prints a warning on stderr when that split overlaps its training data."""
    import sys

    if requested:
        split = canonical_split(requested)
    else:
        split = eval_split_of(train_config) if dataset == ckpt_dataset else "test"
    if dataset == ckpt_dataset and (warning := eval_split_warning(train_config, split)):
        print(warning, file=sys.stderr)
    return split
