"""Errors that reach the user as one line (no traceback unless --debug)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input, missing file, unsupported model.

    The message is printed as one line by the CLIs, which then exit with code 1.
    It should name what is wrong and how to fix it.
    """


class CheckpointError(UserError):
    """A checkpoint file that cannot be loaded safely or does not describe a known model."""


class DatasetError(UserError):
    """A dataset that is missing or malformed on disk."""


class UnsupportedLayerError(UserError):
    """A network layer or ONNX op the verifier cannot encode exactly."""
