"""One-file checkpoints: state_dict plus metadata, loaded only with ``weights_only=True``.

A checkpoint is untrusted input: a pickle that would run code is refused by torch's
weights-only unpickler, and the architecture is rebuilt from a *name* in our registry,
never from stored code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_mr import __version__
from robustbench_mr.errors import CheckpointError, UserError
from robustbench_mr.models import ARCHITECTURES, build_model

FORMAT = "robustbench_mr.checkpoint/1"


@dataclass(frozen=True)
class CheckpointMetadata:
    """What a checkpoint says about itself. Everything is plain data (weights-only safe)."""

    arch: str
    arch_kwargs: dict[str, Any]
    dataset: str
    input_shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    package_version: str = __version__
    torch_version: str = str(torch.__version__)
    created: str = ""
    sha256: str = ""  # of the file, filled in by load_checkpoint; never stored

    def to_dict(self) -> dict[str, Any]:
        """Plain data only (str, int, float, bool, None, lists, dicts), so that a
        weights-only load accepts it."""
        d = asdict(self)
        d.pop("sha256")
        return plain_data(d)


def plain_data(value: Any) -> Any:
    """``value`` with tuples as lists, str/number subclasses and numpy scalars as builtins."""
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return plain_data(value.item())
    return str(value)


def model_kwargs(meta: CheckpointMetadata) -> dict[str, Any]:
    """The constructor arguments that rebuild the model described by ``meta``."""
    kw = dict(meta.arch_kwargs)
    kw.update(input_shape=tuple(meta.input_shape), num_classes=meta.num_classes, mean=list(meta.mean), std=list(meta.std))
    return kw


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMetadata, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` atomically (tmp file + rename).

    ``extra`` holds further tensors/plain data (optimizer state for --resume).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    d = meta.to_dict()
    if not d.get("created"):
        d["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    payload = {"format": FORMAT, "metadata": d, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if extra:
        payload["extra"] = extra
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint_payload(path: str | Path) -> dict[str, Any]:
    """The raw payload dict, loaded with ``weights_only=True``; one-line errors otherwise."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if not p.is_file():
        raise CheckpointError(f"{p}: not a file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: refused to load: the file holds objects a weights-only load does not allow "
            f"(possibly code); only robustbench_mr checkpoints are accepted ({first[:160]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: not a readable torch checkpoint (truncated or corrupt?): {first[:160]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{p}: not a robustbench_mr checkpoint (no '{FORMAT}' format tag); "
            "create one with mr-train or robustbench_mr.save_checkpoint"
        )
    return payload


def _metadata_from_dict(p: Path, d: Any) -> CheckpointMetadata:
    if not isinstance(d, dict):
        raise CheckpointError(f"{p}: metadata is missing or not a dict")
    required = ("arch", "arch_kwargs", "dataset", "input_shape", "num_classes", "mean", "std")
    missing = [k for k in required if k not in d]
    if missing:
        raise CheckpointError(f"{p}: metadata lacks {', '.join(missing)}")
    known = {f for f in CheckpointMetadata.__dataclass_fields__ if f != "sha256"}
    kw = {k: v for k, v in d.items() if k in known}
    kw["input_shape"] = tuple(int(v) for v in d["input_shape"])
    kw["mean"] = tuple(float(v) for v in d["mean"])
    kw["std"] = tuple(float(v) for v in d["std"])
    kw["num_classes"] = int(d["num_classes"])
    return CheckpointMetadata(**kw)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointMetadata]:
    """Load a checkpoint: the model in eval mode on ``device``, and its metadata.

    Raises :class:`CheckpointError` (one line naming the file and the problem) for a file
    that is missing, truncated, not a checkpoint, refused by the weights-only unpickler,
    names an unknown architecture, or whose state_dict does not fit the architecture.
    """
    p = Path(path)
    payload = read_checkpoint_payload(p)
    meta = _metadata_from_dict(p, payload.get("metadata"))
    if meta.arch not in ARCHITECTURES:
        raise CheckpointError(f"{p}: unknown architecture {meta.arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    try:
        model = build_model(meta.arch, **model_kwargs(meta))
    except (TypeError, ValueError, UserError) as exc:
        raise CheckpointError(f"{p}: cannot build {meta.arch!r} from its stored arguments: {exc}") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: state_dict is missing")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:3]) if len(lines) > 1 else lines[0] if lines else "mismatch"
        raise CheckpointError(f"{p}: state_dict does not fit architecture {meta.arch!r}: {detail[:240]}") from None
    meta = CheckpointMetadata(**{**asdict(meta), "sha256": file_sha256(p)})
    return model.to(device).eval(), meta


def metadata_for(model_arch: str, dataset: str, arch_kwargs: dict[str, Any] | None = None, **fields: Any) -> CheckpointMetadata:
    """Metadata for a new model of ``model_arch`` on ``dataset`` (shape and normalization from the dataset)."""
    from robustbench_mr.data import dataset_info

    info = dataset_info(dataset)
    return CheckpointMetadata(
        arch=model_arch,
        arch_kwargs=dict(arch_kwargs or {}),
        dataset=dataset,
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        mean=info.mean,
        std=info.std,
        **fields,
    )
