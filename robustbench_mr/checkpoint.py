"""One-file checkpoints: state_dict plus metadata, loaded only with ``weights_only=True``.

A checkpoint is untrusted input: a pickle that would run code is refused by torch's
weights-only unpickler, and the architecture is rebuilt from a *name* in our registry,
never from stored code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import math
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_mr import __version__
from robustbench_mr.errors import CheckpointError, UserError
from robustbench_mr.state_dict import looks_like_state_dict
from robustbench_mr.models import ARCHITECTURES, build_model

FORMAT = "robustbench_mr.checkpoint/1"

# Ranges accepted for the metadata that rebuilds a model (generous for image classifiers;
# anything outside is a damaged or hand-edited file, refused before a tensor is allocated).
MAX_INPUT_DIM = 4096  # per axis of (channels, height, width)
MAX_CLASSES = 100_000
MAX_WIDTH = 1 << 16  # hidden units per layer
MAX_DEPTH = 64  # hidden layers of an mlp

# Fields of the metadata that are top-level, never constructor keyword arguments.
_TOP_LEVEL = ("input_shape", "num_classes", "mean", "std")
_HOW_TO_FIX_LOADED = "the metadata is damaged or was edited by hand: retrain, or re-save the model with robustbench_mr.save_checkpoint"
_HOW_TO_FIX_SAVED = "fix the CheckpointMetadata given to save_checkpoint (robustbench_mr.checkpoint.metadata_for builds a valid one)"


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
    # for a model trained elsewhere (mr-eval import-torch): the source file, its sha256, the arch spec...
    imported_from: dict[str, Any] = field(default_factory=dict)
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

    ``extra`` holds further tensors/plain data (optimizer state for --resume). ``meta`` is
    validated first (the same checks as :func:`load_checkpoint`), and the written file is
    read back with ``weights_only=True`` and compared (format, metadata, state_dict keys,
    shapes and dtypes), then loaded as :func:`load_checkpoint` would (the architecture rebuilt
    from the registry, ``strict`` state_dict) and compared with ``model`` (every parameter and
    buffer, and the outputs on two seeded inputs) before it replaces ``path``: a file that
    would not load, or would load as another function, is never left behind under the final name.
    """
    path = Path(path)
    d = meta.to_dict()
    validate_metadata(d, str(path), how_to_fix=_HOW_TO_FIX_SAVED)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not d.get("created"):
        d["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {"format": FORMAT, "metadata": d, "state_dict": state}
    if extra:
        payload["extra"] = extra
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        back = _check_written(tmp, path, d, state)
        _check_rebuilds(tmp, back, path, model, meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _check_written(tmp: Path, path: Path, meta: dict[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Re-load the just-written ``tmp`` (weights-only) and compare it with what was saved;
    returns the payload read back."""
    try:
        back = torch.load(tmp, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the write is unusable
        raise CheckpointError(
            f"{path}: the checkpoint just written does not load back ({type(exc).__name__}: {_first_line(exc)}); "
            "the disk may be full or failing, or the metadata holds non-plain data; nothing was replaced"
        ) from None
    problem = ""
    # repr, not ==: plain data round-trips exactly, and a NaN metric must compare equal to itself
    if not isinstance(back, dict) or back.get("format") != FORMAT or repr(back.get("metadata")) != repr(meta):
        problem = "format tag or metadata differ"
    else:
        got = back.get("state_dict")
        if not isinstance(got, dict) or list(got) != list(state):
            problem = "state_dict keys differ"
        else:
            for k, v in state.items():
                w = got[k]
                if not isinstance(w, torch.Tensor) or w.shape != v.shape or w.dtype != v.dtype:
                    problem = f"tensor {k!r} differs in shape or dtype"
                    break
    if problem:
        raise CheckpointError(f"{path}: the checkpoint just written does not read back as saved ({problem}); "
                              "the disk may be failing; nothing was replaced")
    return back


def _check_rebuilds(tmp: Path, payload: dict[str, Any], path: Path, model: nn.Module, meta: CheckpointMetadata) -> None:
    """Load ``tmp`` as :func:`load_checkpoint` would (metadata and NaN checks, the registry
    architecture rebuilt and ``load_state_dict(strict=True)``), then compare every parameter and
    buffer with ``model`` and the outputs of both on two seeded inputs (``model`` in eval mode
    for the comparison; its train/eval flags are restored)."""
    try:
        # the registry's build_model, looked up at call time (not this module's name for it)
        from robustbench_mr.models import registry

        rebuilt, _ = _model_from_payload(tmp, payload, registry.build_model)
    except CheckpointError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise CheckpointError(f"{path}: the checkpoint just written would not load ({detail}); nothing was replaced") from None
    state = model.state_dict()
    got = rebuilt.state_dict()
    for k, v in state.items():
        w = got[k]
        if v.is_floating_point():
            same = torch.allclose(w.double(), v.detach().cpu().double(), rtol=1e-6, atol=0.0, equal_nan=False)
        else:
            same = torch.equal(w, v.detach().cpu().to(w.dtype))
        if not same:
            raise CheckpointError(f"{path}: the checkpoint just written does not reproduce tensor {k!r}; nothing was replaced")
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    x = torch.rand((2, *meta.input_shape), generator=torch.Generator().manual_seed(0))
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            want = model(x.to(device, dtype)).detach().cpu().double()
            have = rebuilt(x).double()
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on its declared input shape
        raise CheckpointError(f"{path}: cannot compare the saved model with the given one on inputs of shape "
                              f"{tuple(meta.input_shape)} ({type(exc).__name__}: {_first_line(exc)}); nothing was replaced") from None
    finally:
        for m, training in flags:
            m.training = training
    scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
    tol = 1e-5 if device.type == "cpu" and dtype == torch.float32 else 1e-3
    if have.shape != want.shape or not bool(((have - want).abs() <= tol * scale).all()):
        diff = float((have - want).abs().max()) if have.shape == want.shape else float("inf")
        raise CheckpointError(f"{path}: the model rebuilt from the checkpoint just written computes other outputs than the model "
                              f"given (max |diff| {diff:.3g}); is the model an instance of architecture {meta.arch!r}? nothing was replaced")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """The first non-empty line of ``exc``'s message (or its type name), at most ``limit`` chars."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


# torch's weights-only unpickler names the global it refused: "... unsupported GLOBAL posix.system
# whose module posix is blocked" or "Unsupported global: GLOBAL __main__.Evil was not an allowed ...".
_REFUSED_GLOBAL = re.compile(r"\bGLOBAL\s+([^\s]+)")
_ZIP_MAGIC = b"PK\x03\x04"
_HOW_TO_GET_ONE = "point at a .pt file written by mr-train or robustbench_mr.save_checkpoint"


_HOW_TO_SAVE_WEIGHTS = "save the weights alone where the model was trained: torch.save(model.state_dict(), 'weights.pth')"


def _unreadable(p: Path, head: bytes, exc: BaseException, foreign: bool = False) -> CheckpointError:
    """The one-line error for a file torch cannot load, worded after what the file looks like.

    ``foreign``: the file is meant to be a state_dict from elsewhere (``mr-eval import-torch``),
    not one of our checkpoints, so the advice is about re-saving weights, not about mr-train.
    """
    ours = "only tensors and plain data are accepted; " + _HOW_TO_SAVE_WEIGHTS if foreign else \
        "only checkpoints written by robustbench_mr are accepted"
    not_ours = "so not a plain state_dict" if foreign else "so not a checkpoint written by robustbench_mr"
    get_one = _HOW_TO_SAVE_WEIGHTS if foreign else _HOW_TO_GET_ONE
    if isinstance(exc, pickle.UnpicklingError):
        refused = _REFUSED_GLOBAL.search(str(exc))
        if refused:  # the weights-only unpickler met a global (a callable) and blocked it
            name = refused.group(1).rstrip(".,;")
            return CheckpointError(
                f"{p}: refused to load: it tries to execute code (its pickle imports {name}, which the weights-only "
                f"unpickler blocks; nothing was run); {ours}"
            )
    detail = _first_line(exc) if not isinstance(exc, pickle.UnpicklingError) else _unpickling_detail(exc)
    if head.startswith(_ZIP_MAGIC) and isinstance(exc, pickle.UnpicklingError):
        return CheckpointError(
            f"{p}: not a readable torch checkpoint: a torch file whose pickle holds objects other than tensors and "
            f"plain data ({detail}; nothing was run), {not_ours}; {get_one}"
        )
    if head.startswith(_ZIP_MAGIC):
        return CheckpointError(
            f"{p}: not a readable torch checkpoint (truncated or corrupt zip archive: {detail}); "
            + ("copy it again" if foreign else "copy it again or retrain")
        )
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return CheckpointError(
            f"{p}: not a readable torch checkpoint: a pickle that is not {'a plain state_dict' if foreign else 'a checkpoint written by robustbench_mr'} "
            f"(the weights-only loader stopped at: {detail}; nothing was run); {get_one}"
        )
    return CheckpointError(
        f"{p}: not a readable torch checkpoint: the file is neither a torch zip archive nor a pickle, "
        f"{not_ours}; {get_one}"
    )


def _unpickling_detail(exc: BaseException) -> str:
    """The informative line of torch's long weights-only message (e.g. 'Unsupported operand 149')."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Please file an issue", "Check the documentation"))]
    return (useful[0] if useful else lines[0] if lines else type(exc).__name__)[:160]


def read_torch_file(path: str | Path, *, foreign: bool = False) -> Any:
    """Whatever ``path`` holds, loaded with ``torch.load(..., map_location='cpu', weights_only=True)``.

    One-line :class:`CheckpointError` otherwise, worded after what the file is: missing, empty,
    a broken zip archive (truncated copy), a pickle that is not ours, something that is
    neither, or a pickle that asks for a global (callable) -- only the last is called an
    attempt to execute code. ``foreign``: the file should be a state_dict from elsewhere (the
    advice then is how to re-save weights, not mr-train).
    """
    p = Path(path)
    what = "state_dict" if foreign else "checkpoint"
    if not p.exists():
        raise CheckpointError(f"{p}: no such {what} file")
    if not p.is_file():
        raise CheckpointError(f"{p}: not a file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read the {what} file: {_first_line(exc)}") from None
    if not head:
        raise CheckpointError(f"{p}: the file is empty (0 bytes), not a {what} (an interrupted copy?); "
                              f"{_HOW_TO_SAVE_WEIGHTS if foreign else _HOW_TO_GET_ONE}")
    try:
        with warnings.catch_warnings():
            # a foreign pickle (protocol 4/5) makes torch warn before it refuses the file; the
            # refusal below is the one line the user gets
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - hostile bytes make torch raise many types
        raise _unreadable(p, head, exc, foreign) from None


def is_checkpoint_payload(payload: Any) -> bool:
    """Whether a loaded torch file carries our format tag."""
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def read_checkpoint_payload(path: str | Path) -> dict[str, Any]:
    """The raw payload dict, loaded with ``weights_only=True``; one-line errors otherwise
    (see :func:`read_torch_file`), also for a torch file that is not one of our checkpoints."""
    p = Path(path)
    payload = read_torch_file(p)
    if not is_checkpoint_payload(payload):
        raise not_a_checkpoint(p, payload)
    return payload


def not_a_checkpoint(p: Path, payload: Any) -> CheckpointError:
    """The error for a readable torch file without our format tag; a bare state_dict (or a
    dict or list holding some) is pointed at ``mr-eval import-torch``."""
    if looks_like_state_dict(payload):
        return CheckpointError(
            f"{p}: not a robustbench_mr checkpoint but a bare state_dict (weights without an architecture); import it once with "
            f"mr-eval import-torch {p} --arch SPEC --dataset NAME -o model.pt (SPEC: small, mlp, large or layers such as "
            "'conv(16,4,2,1) relu flatten linear(10)'), then use model.pt"
        )
    return CheckpointError(
        f"{p}: not a robustbench_mr checkpoint (no '{FORMAT}' format tag); "
        "create one with mr-train or robustbench_mr.save_checkpoint"
    )


# --- metadata validation ------------------------------------------------------------------


def _show(value: Any) -> str:
    """``value`` for a message: its repr (shortened), with its type when that is not obvious."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        text += f" (a {type(value).__name__})"
    return text


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_metadata(d: Any, where: str, *, how_to_fix: str = _HOW_TO_FIX_LOADED) -> None:
    """Check the types and ranges of every metadata field used to rebuild the model.

    ``d`` is the plain-data dict stored in the checkpoint. Raises :class:`CheckpointError`
    with one line naming ``where`` (the file), the field, its value and what is expected.
    """
    from robustbench_mr.data import DATASETS

    def bad(name: str, value: Any, expected: str) -> CheckpointError:
        return CheckpointError(f"{where}: metadata field {name!r} is {_show(value)}; expected {expected}; {how_to_fix}")

    if not isinstance(d, dict):
        raise CheckpointError(f"{where}: metadata is missing or not a dict; {how_to_fix}")
    required = ("arch", "arch_kwargs", "dataset", "input_shape", "num_classes", "mean", "std")
    missing = [k for k in required if k not in d]
    if missing:
        raise CheckpointError(f"{where}: metadata lacks {', '.join(missing)}; {how_to_fix}")

    arch = d["arch"]
    if not isinstance(arch, str):
        raise bad("arch", arch, f"an architecture name, one of {', '.join(sorted(ARCHITECTURES))}")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{where}: unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    dataset = d["dataset"]
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise bad("dataset", dataset, f"a dataset name, one of {', '.join(DATASETS)}")

    shape = d["input_shape"]
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(_is_int(v) and 1 <= v <= MAX_INPUT_DIM for v in shape)):
        raise bad("input_shape", shape, f"a list of 3 integers in 1..{MAX_INPUT_DIM} (channels, height, width)")
    channels = shape[0]

    n = d["num_classes"]
    if not _is_int(n) or not 2 <= n <= MAX_CLASSES:
        raise bad("num_classes", n, f"an integer in 2..{MAX_CLASSES}")

    for name in ("mean", "std"):
        v = d[name]
        if not isinstance(v, (list, tuple)) or len(v) != channels or not all(_is_real(x) for x in v):
            raise bad(name, v, f"a list of {channels} finite numbers, one per input channel")
    if not all(x > 0 for x in d["std"]):
        raise bad("std", d["std"], "positive numbers (each channel is divided by its std)")

    _validate_arch_kwargs(arch, d["arch_kwargs"], bad)
    if arch == "layers":
        _validate_layer_spec(d["arch_kwargs"], shape, n, where, how_to_fix, bad)

    for name in ("train_config", "metrics", "imported_from"):
        if name in d and not isinstance(d[name], dict):
            raise bad(name, d[name], "a dict")
    epoch = d.get("epoch")
    if epoch is not None and (not _is_int(epoch) or epoch < 0):
        raise bad("epoch", epoch, "an integer >= 0 or null")
    for name in ("package_version", "torch_version", "created"):
        if name in d and not isinstance(d[name], str):
            raise bad(name, d[name], "a string")


def _validate_layer_spec(kw: dict[str, Any], shape: Any, num_classes: int, where: str, how_to_fix: str, bad: Any) -> None:
    """``layers``: a spec string that parses, fits ``shape`` and ends in ``num_classes`` logits,
    checked by shape arithmetic alone (before a tensor is allocated)."""
    from robustbench_mr.models.layer_spec import parse_layer_spec, spec_output_shape

    spec = kw.get("spec")
    if not isinstance(spec, str):
        raise bad("arch_kwargs.spec", spec, "a layer spec string such as 'conv(16,4,2,1) relu flatten linear(10)'")
    try:
        out, _ = spec_output_shape(parse_layer_spec(spec), shape, spec)
    except UserError as exc:
        raise CheckpointError(f"{where}: metadata field 'arch_kwargs.spec': {exc}; {how_to_fix}") from None
    if out != (num_classes,):
        raise bad("arch_kwargs.spec", spec, f"a spec whose output is ({num_classes},) logits (it gives {out}), to match num_classes")


def _validate_arch_kwargs(arch: str, kw: Any, bad: Any) -> None:
    """The constructor arguments: names the constructor accepts, values of the right kind."""
    if not isinstance(kw, dict) or not all(isinstance(k, str) for k in kw):
        raise bad("arch_kwargs", kw, "a dict of constructor arguments")
    params = inspect.signature(ARCHITECTURES[arch]).parameters
    allowed = [name for name in params if name not in _TOP_LEVEL]
    for name, value in kw.items():
        if name in _TOP_LEVEL:
            raise bad(f"arch_kwargs.{name}", value, f"no {name!r} in arch_kwargs (it is the top-level field {name!r})")
        if name not in params:
            raise bad(f"arch_kwargs.{name}", value, f"only arguments {arch!r} accepts: {', '.join(allowed) or 'none'}")
    hidden = kw.get("hidden")
    if hidden is None:
        return
    if arch == "mlp":
        if (not isinstance(hidden, (list, tuple)) or len(hidden) > MAX_DEPTH
                or not all(_is_int(h) and 1 <= h <= MAX_WIDTH for h in hidden)):
            raise bad("arch_kwargs.hidden", hidden, f"a list of at most {MAX_DEPTH} layer widths, integers in 1..{MAX_WIDTH}")
    elif arch == "small" and (not _is_int(hidden) or not 1 <= hidden <= MAX_WIDTH):
        raise bad("arch_kwargs.hidden", hidden, f"an integer in 1..{MAX_WIDTH} (width of the hidden layer)")


# --- loading --------------------------------------------------------------------------------


def _check_state_dict(p: Path, state: Any) -> None:
    """Every entry is a tensor, and every floating tensor is finite (weights and BatchNorm
    running statistics alike): one NaN or Inf makes every prediction meaningless."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: state_dict is missing")
    bad: list[tuple[str, int, int]] = []
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{p}: state_dict entry {str(name)[:80]!r} is {_show(t)}, not a tensor; the checkpoint is corrupt")
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            bad.append((str(name), int(torch.isnan(t).sum()), int(torch.isinf(t).sum())))
    if bad:
        name, nans, infs = bad[0]
        counts = " and ".join(part for part in (f"{nans} NaN" if nans else "", f"{infs} Inf" if infs else "") if part)
        more = f" ({len(bad) - 1} more tensor{'s' if len(bad) > 2 else ''} too)" if len(bad) > 1 else ""
        raise CheckpointError(
            f"{p}: tensor {name!r} has {counts} value(s){more}; the checkpoint is corrupt or training diverged, "
            "retrain or pick an earlier checkpoint"
        )


def _metadata_from_dict(p: Path, d: Any) -> CheckpointMetadata:
    validate_metadata(d, str(p))
    known = {f for f in CheckpointMetadata.__dataclass_fields__ if f != "sha256"}
    kw = {k: v for k, v in d.items() if k in known}
    kw["input_shape"] = tuple(d["input_shape"])
    kw["mean"] = tuple(float(v) for v in d["mean"])
    kw["std"] = tuple(float(v) for v in d["std"])
    return CheckpointMetadata(**kw)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointMetadata]:
    """Load a checkpoint: the model in eval mode on ``device``, and its metadata.

    Raises :class:`CheckpointError` (one line naming the file and the problem) for a file
    that is missing, empty, truncated, not a checkpoint, refused by the weights-only
    unpickler, whose metadata has a field of the wrong type or range (see
    :func:`validate_metadata`), whose state_dict holds a NaN/Inf value, or whose
    state_dict does not fit the architecture. All checks run before the model is built.
    """
    p = Path(path)
    model, meta = _model_from_payload(p, read_checkpoint_payload(p), build_model)
    meta = CheckpointMetadata(**{**asdict(meta), "sha256": file_sha256(p)})
    return model.to(device).eval(), meta


def load_checkpoint_payload(p: Path, payload: dict[str, Any], device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointMetadata]:
    """:func:`load_checkpoint` for a payload already read from ``p`` (one read of the file)."""
    model, meta = _model_from_payload(p, payload, build_model)
    meta = CheckpointMetadata(**{**asdict(meta), "sha256": file_sha256(p)})
    return model.to(device).eval(), meta


def _model_from_payload(p: Path, payload: dict[str, Any], build: Any) -> tuple[nn.Module, CheckpointMetadata]:
    """Validate the metadata and state_dict of ``payload``, then build and load the model."""
    meta = _metadata_from_dict(p, payload.get("metadata"))
    state = payload.get("state_dict")
    _check_state_dict(p, state)
    try:
        model = build(meta.arch, **model_kwargs(meta))
    except (TypeError, ValueError, RuntimeError, UserError) as exc:
        raise CheckpointError(f"{p}: cannot build {meta.arch!r} from its stored arguments: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:3]) if len(lines) > 1 else lines[0] if lines else "mismatch"
        raise CheckpointError(f"{p}: state_dict does not fit architecture {meta.arch!r}: {detail[:240]}") from None
    return model.eval(), meta


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
