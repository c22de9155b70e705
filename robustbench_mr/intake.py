"""Any model in: our checkpoints, ONNX files, foreign torch state_dicts and in-memory modules.

- :func:`load_model` reads a file by its kind: one of our checkpoints (``.pt`` written by
  mr-train / :func:`save_checkpoint`), or an ONNX file (imported by the verifier's own
  importer, :func:`robustbench_mr.verifiers.form.chain_from_onnx.load_onnx`; attacks get a torch module built
  from that network, :func:`network_to_torch`, so they have gradients without new
  dependencies). A bare torch state_dict has no architecture: it is refused with the one
  ``mr-eval import-torch`` command that turns it into a checkpoint.
- :func:`import_state_dict` / :func:`import_torch`: a state_dict trained elsewhere (bare, under
  a common key such as ``state_dict``, or a list of them, as Wong & Kolter ship theirs) mapped by
  order and shape onto a registry architecture or a declarative layer spec, validated by loading
  and written as a normal checkpoint whose metadata records the source file and its sha256.
- :func:`from_module`: an ``nn.Module`` in memory, for the Python API (``benchmark``).
- :func:`to_network`: THE conversion from a torch model to the verifier's network form; every
  caller goes through it, so the importer behind it can be swapped (residual nets) in one place.

Every file is untrusted: torch files are read with ``torch.load(..., weights_only=True)`` only,
and every problem is one :class:`~robustbench_mr.errors.UserError` line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_mr.errors import CheckpointError, UserError
from robustbench_mr.state_dict import STATE_DICT_KEYS, is_tensor_dict, looks_like_state_dict

if TYPE_CHECKING:  # torch and the verifier are imported only when a model is loaded
    import torch
    from torch import nn

    from robustbench_mr.checkpoint import CheckpointMetadata
    from robustbench_mr.verifiers.form.chain import Network

_ZIP_MAGIC = b"PK\x03\x04"


class ModelKind(str, Enum):
    """Where a model came from."""

    CHECKPOINT = "checkpoint"  # one of our .pt files
    ONNX = "onnx"  # an ONNX file (chains of affine maps and ReLUs)
    MODULE = "module"  # an nn.Module handed to the Python API


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for attacks and verification, whatever it came from.

    ``model`` is a float32 torch module in eval mode on [0,1] pixel inputs of shape
    ``(N, *input_shape)``; ``sha256`` keys its result rows (the file's digest, or a digest of
    a module's structure and weights); ``path`` is what result rows show as the model's name.
    """

    model: nn.Module
    kind: ModelKind
    path: str
    sha256: str
    input_shape: tuple[int, ...]
    num_classes: int
    dataset: str | None
    meta: CheckpointMetadata | None = None
    network: Network | None = field(default=None, repr=False)  # ONNX: the imported network (exact, float64)

    def verifier_network(self) -> Network:
        """The verifier's network form (for ONNX the imported one; otherwise :func:`to_network`)."""
        if self.network is not None:
            return self.network
        return to_network(self.model, self.input_shape, source=self.path)

    def float64_model(self) -> nn.Module:
        """A float64 copy for the verifier's PGD and counterexample checks. For ONNX it is built
        from the float64 network itself, not from the float32 attack module (no rounding)."""
        import copy

        from robustbench_mr.verifiers.form.chain import Network

        if self.network is not None and not isinstance(self.network, Network):
            m = self.network.as_module("float64")
        elif self.network is not None:
            m = network_to_torch(self.network, dtype="float64")
        else:
            m = copy.deepcopy(self.model).double()
        for p in m.parameters():
            p.requires_grad_(False)
        return m.eval()


# --- the one conversion to the verifier's form --------------------------------------------


def to_network(model: nn.Module, input_shape: tuple[int, ...], source: str = "") -> Network:
    """The verifier's network form of ``model`` on inputs of ``input_shape`` (no batch axis).

    :func:`robustbench_mr.verifiers.form.chain_from_torch.from_torch` for nn.Sequential chains of affine
    layers and ReLUs (a :class:`Network`), else the graph importer (``verifiers/form``: residual
    and pooled nets); a model neither imports is one
    :class:`~robustbench_mr.errors.UnsupportedLayerError` line. Every caller converts through here.
    """
    from robustbench_mr.errors import UnsupportedLayerError
    from robustbench_mr.verifiers.form.chain_from_torch import from_torch

    shape = tuple(int(v) for v in input_shape)
    try:
        return from_torch(model, shape, source)
    except UnsupportedLayerError:
        # not a chain (residual adds, pooling): the graph form (verifiers/form), traced with torch.fx
        from robustbench_mr.verifiers.form.from_torch import from_torch as graph_from_torch

        return graph_from_torch(model, shape, source)


def network_to_torch(network: Network, dtype: Any = "float32") -> nn.Sequential:
    """``nn.Sequential(Flatten, Linear, ReLU, ..., Linear)`` computing ``network`` (in
    ``dtype``, float32 for attacks), on inputs of shape ``(N, *network.input_shape)``."""
    import torch
    from torch import nn

    from robustbench_mr.verifiers.form.chain import Affine

    dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    layers: list[nn.Module] = [nn.Flatten()]
    for layer in network.layers:
        if isinstance(layer, Affine):
            lin = nn.Linear(layer.in_features, layer.out_features, dtype=dt)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.weight))
                lin.bias.copy_(torch.from_numpy(layer.bias))
            layers.append(lin)
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


# --- files by kind -------------------------------------------------------------------------


def _head(p: Path) -> bytes:
    try:
        with open(p, "rb") as fh:
            return fh.read(8)
    except OSError as exc:
        raise UserError(f"{p}: cannot read the model file: {exc.strerror or exc}") from None


def is_onnx_file(path: str | Path) -> bool:
    """An ``.onnx`` name, or bytes that are neither a torch zip archive nor a pickle but start
    like an ONNX protobuf (field 1, ``ir_version``)."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        return True
    if not p.is_file():
        return False
    head = _head(p)
    return bool(head) and not head.startswith(_ZIP_MAGIC) and head[:1] == b"\x08"


def load_model(path: str | Path, *, dataset: str | None = None, require_dataset: bool = True) -> LoadedModel:
    """The model in ``path``: one of our checkpoints, or an ONNX file.

    ``dataset``: the data it will be evaluated on (for a checkpoint the default is its own;
    for an ONNX file the one whose input shape matches, when exactly one does). A bare
    state_dict is refused with the ``mr-eval import-torch`` command that imports it.
    """
    p = Path(path)
    if is_onnx_file(p):
        return _load_onnx(p, dataset, require_dataset)
    from robustbench_mr.checkpoint import is_checkpoint_payload, load_checkpoint_payload, not_a_checkpoint, read_torch_file

    payload = read_torch_file(p)
    if not is_checkpoint_payload(payload):
        raise not_a_checkpoint(p, payload)
    model, meta = load_checkpoint_payload(p, payload)
    return LoadedModel(model, ModelKind.CHECKPOINT, str(p), meta.sha256, tuple(meta.input_shape), meta.num_classes,
                       dataset or meta.dataset, meta)


def _compatible(net_shape: tuple[int, ...], data_shape: tuple[int, ...]) -> bool:
    """Same number of inputs in the same row-major order: equal shapes up to axes of size 1,
    or a flat network input (taken as the dataset's C, H, W order, as torch flattens)."""
    if prod(net_shape) != prod(data_shape):
        return False
    return len(net_shape) == 1 or [d for d in net_shape if d != 1] == [d for d in data_shape if d != 1]


def _load_onnx(p: Path, dataset: str | None, require_dataset: bool) -> LoadedModel:
    from robustbench_mr.checkpoint import file_sha256
    from robustbench_mr.data import DATASETS, dataset_info
    from robustbench_mr.verifiers.form.chain import Network
    from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx

    from robustbench_mr.errors import UnsupportedLayerError

    try:
        net = load_onnx(p)
    except UnsupportedLayerError:  # residual / pooled: the graph form (verifiers/form)
        from robustbench_mr.verifiers.form.from_onnx import load_onnx_graph

        net = load_onnx_graph(p)
    shape = tuple(net.input_shape)
    if dataset is not None:
        info = dataset_info(dataset)
        if not _compatible(shape, info.input_shape):
            raise UserError(f"{p}: the model takes inputs of shape {shape}, the {dataset} images are {info.input_shape}; "
                            "pass the --dataset the model was trained on")
    else:
        fits = [name for name, info in DATASETS.items() if _compatible(shape, info.input_shape)]
        if len(fits) == 1:
            dataset = fits[0]
        elif require_dataset:
            known = ", ".join(f"{n} {'x'.join(map(str, i.input_shape))}" for n, i in DATASETS.items())
            raise UserError(f"{p}: the model takes inputs of shape {shape}, which matches {'several' if fits else 'no'} known "
                            f"dataset{'s' if fits else ''} ({known}); pass --dataset NAME")
    if dataset is not None and shape != DATASETS[dataset].input_shape:
        if not isinstance(net, Network):
            raise UserError(f"{p}: the graph takes inputs of shape {shape}, the {dataset} images are {DATASETS[dataset].input_shape}; export it with the image shape")
        net = Network(DATASETS[dataset].input_shape, net.layers, net.source)  # same flat order, image shape
    model = network_to_torch(net) if isinstance(net, Network) else net.as_module("float32")
    return LoadedModel(model, ModelKind.ONNX, str(p), file_sha256(p), tuple(net.input_shape), net.num_outputs, dataset, None, net)


def from_module(model: nn.Module, input_shape: tuple[int, ...], *, dataset: str | None = None, name: str | None = None) -> LoadedModel:
    """An in-memory ``model`` (pixel inputs of ``input_shape``) as a :class:`LoadedModel`; its
    ``sha256`` digests the module's structure (its repr) and every parameter and buffer."""
    import copy

    import torch

    model = copy.deepcopy(model).eval()  # the runners freeze parameters and move devices: not the caller's module
    h = hashlib.sha256(repr(model).encode())
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}|{t.dtype}|{tuple(v.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    tensors = [*model.parameters(), *model.buffers()]
    dev = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    with torch.no_grad():
        out = model(torch.zeros((1, *input_shape), device=dev, dtype=dtype))
    if out.dim() != 2:
        raise UserError(f"{type(model).__name__}: outputs of shape {tuple(out.shape)} on a batch of inputs {tuple(input_shape)}; "
                        "expected (batch, classes) logits")
    return LoadedModel(model, ModelKind.MODULE, name or type(model).__name__, h.hexdigest(), tuple(int(v) for v in input_shape),
                       int(out.shape[1]), dataset)


def describe_file(path: str | Path) -> dict[str, Any]:
    """What ``mr-eval info`` prints: a checkpoint's metadata, an ONNX network's shapes, or a
    bare state_dict's tensors (names and shapes, to write the ``--arch`` of import-torch)."""
    p = Path(path)
    if not is_onnx_file(p):
        from robustbench_mr.checkpoint import is_checkpoint_payload, load_checkpoint_payload, not_a_checkpoint, read_torch_file

        payload = read_torch_file(p)
        if is_checkpoint_payload(payload):
            model, meta = load_checkpoint_payload(p, payload)
            d = meta.to_dict()
            d["sha256"] = meta.sha256
            d["parameters"] = sum(t.numel() for t in model.parameters())
            return d
        if not looks_like_state_dict(payload):
            raise not_a_checkpoint(p, payload)
        w = read_state_dict(p, payload=payload)
        return {"kind": "state_dict", "sha256": w.sha256, "found": w.where, "tensors": len(w.tensors),
                "parameters": sum(int(t.numel()) for _, t in w.tensors),
                "shapes": {k: "x".join(map(str, t.shape)) or "scalar" for k, t in w.tensors},
                "import_with": f"mr-eval import-torch {p} --arch SPEC --dataset NAME -o model.pt"}
    loaded = load_model(p, require_dataset=False)
    net = loaded.verifier_network()
    return {"kind": "onnx", "sha256": loaded.sha256, "input_shape": list(loaded.input_shape), "num_classes": loaded.num_classes,
            "dataset": loaded.dataset, "relu_widths": net.relu_widths,
            "dense_parameters": sum(a.weight.size + a.bias.size for a in net.affines), "network": repr(net)}


# --- foreign state_dicts -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ForeignWeights:
    """The tensors of a foreign state_dict, in file order, and where they were found."""

    tensors: tuple[tuple[str, torch.Tensor], ...]
    path: str
    sha256: str
    where: str  # e.g. "element 0 of the list of 3 state_dicts under 'state_dict'"


def _kind_of(v: Any) -> str:
    return f"a {type(v).__name__}" + (f" with keys {', '.join(map(repr, list(v)[:5]))}" if isinstance(v, dict) else "")


def read_state_dict(path: str | Path, *, element: int | None = None, payload: Any = None) -> ForeignWeights:
    """The state_dict in ``path`` (``torch.load(..., map_location='cpu', weights_only=True)``):
    bare, under one of :data:`STATE_DICT_KEYS`, or a list of them (``element``, default 0).

    Every entry must be a finite tensor; a pickle that would run code is refused by the
    weights-only unpickler (nothing runs). One :class:`CheckpointError` line otherwise.
    """
    import torch

    from robustbench_mr.checkpoint import file_sha256, read_torch_file

    p = Path(path)
    obj = read_torch_file(p, foreign=True) if payload is None else payload
    where: list[str] = []
    for _ in range(4):  # at most a few levels: {"state_dict": [sd, sd, sd]}
        if isinstance(obj, dict) and not is_tensor_dict(obj):
            key = next((k for k in STATE_DICT_KEYS if k in obj), None)
            if key is None:
                break
            obj = obj[key]
            where.append(f"under {key!r}")
        elif isinstance(obj, (list, tuple)):
            if not obj:
                raise CheckpointError(f"{p}: holds an empty list, no state_dict")
            k = 0 if element is None else element
            if not 0 <= k < len(obj):
                raise UserError(f"--element {k}: {p} holds a list of {len(obj)} state_dicts (elements 0..{len(obj) - 1})")
            where.insert(0, f"element {k} of the list of {len(obj)} state_dicts")
            obj = obj[k]
        else:
            break
    if not is_tensor_dict(obj):
        raise CheckpointError(
            f"{p}: no state_dict found ({' '.join(where) + ' is ' if where else 'the file holds '}{_kind_of(obj)}); expected a dict of "
            f"tensors, one under {', '.join(map(repr, STATE_DICT_KEYS))}, or a list of them; "
            "save one with torch.save(model.state_dict(), 'weights.pth')"
        )
    if element is not None and not any(w.startswith("element") for w in where):
        raise UserError(f"--element {element}: {p} holds a single state_dict, not a list; drop --element")
    tensors = []
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{p}: state_dict entry {k[:80]!r} is {_kind_of(v)}, not a tensor; only tensors can be imported "
                                  "(save model.state_dict() alone)")
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            nans, infs = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
            counts = " and ".join(s for s in (f"{nans} NaN" if nans else "", f"{infs} Inf" if infs else "") if s)
            raise CheckpointError(f"{p}: tensor {k!r} has {counts} value(s); the weights are corrupt or training diverged")
        tensors.append((k, v))
    return ForeignWeights(tuple(tensors), str(p), file_sha256(p), " ".join(where) or "the file")


@dataclass(frozen=True)
class ArchChoice:
    """An ``--arch`` resolved: registry name, constructor arguments and the number of classes."""

    arch: str  # a registry name; "layers" for a layer spec
    kwargs: dict[str, Any]
    num_classes: int
    label: str  # for messages: small(hidden=100), or the normalized spec


def _weights_2d(w: ForeignWeights) -> list[tuple[str, torch.Tensor]]:
    return [(k, t) for k, t in w.tensors if t.dim() == 2 and t.is_floating_point()]


def _parse_arch_kwargs(text: str, spec: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    parts = [s for s in re.split(r",(?![^\[]*\])", text) if s.strip()]
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UserError(f"--arch {spec!r}: {part.strip()!r} is not KEY=VALUE; e.g. small(hidden=100) or mlp(hidden=[64,64])")
        try:
            kwargs[key.strip()] = json.loads(value.strip())
        except ValueError:
            raise UserError(f"--arch {spec!r}: value {value.strip()!r} of {key.strip()!r} is not a number or a list") from None
    return kwargs


def resolve_arch(spec: str, weights: ForeignWeights | None = None, input_shape: tuple[int, ...] | None = None) -> ArchChoice:
    """``spec`` as an architecture: a registry name (``small``, ``mlp``, ``large``, optionally
    with arguments, ``small(hidden=100)``) or a layer spec (``conv(16,4,2,1) relu ... linear(10)``).

    For a registry name the number of classes, and ``hidden`` of small / mlp when not given,
    are read from the shapes of ``weights`` (the last 2-D tensor is the classifier).
    """
    from robustbench_mr.models import ARCHITECTURES
    from robustbench_mr.models.layer_spec import LAYER_KINDS, normalized_spec, parse_layer_spec, spec_output_shape

    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*", spec, flags=re.S)
    if m and m.group(1).lower() not in LAYER_KINDS:
        name = m.group(1)
        if name not in ARCHITECTURES or name == "layers":
            raise UserError(f"--arch {spec!r}: unknown architecture {name!r}; use one of "
                            f"{', '.join(a for a in sorted(ARCHITECTURES) if a != 'layers')} or a layer spec such as "
                            "'conv(16,4,2,1) relu flatten linear(10)'")
        kwargs = _parse_arch_kwargs(m.group(2) or "", spec)
        mats = _weights_2d(weights) if weights is not None else []
        if "num_classes" in kwargs:
            num_classes = kwargs.pop("num_classes")
        elif mats:
            num_classes = int(mats[-1][1].shape[0])
        else:
            raise UserError(f"--arch {spec!r}: cannot tell the number of classes (no 2-D weight in the state_dict); "
                            f"write {name}(num_classes=10)")
        if name == "small" and "hidden" not in kwargs and len(mats) >= 2:
            kwargs["hidden"] = int(mats[0][1].shape[0])
        if name == "mlp" and "hidden" not in kwargs and mats:
            kwargs["hidden"] = [int(t.shape[0]) for _, t in mats[:-1]]
        shown = ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in kwargs.items())
        return ArchChoice(name, kwargs, int(num_classes), f"{name}({shown})" if shown else name)
    layers = parse_layer_spec(spec)
    text = normalized_spec(spec)
    if input_shape is None:
        raise UserError("a layer spec needs the input shape (--input-shape C,H,W)")
    out, _ = spec_output_shape(layers, input_shape, spec)
    if len(out) != 1:
        raise UserError(f"layer spec {text!r} ends with an output of shape {out}; end it with linear(CLASSES)")
    return ArchChoice("layers", {"spec": text}, int(out[0]), text)


def map_state_dict(target: nn.Module, weights: ForeignWeights, label: str) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Foreign tensors onto ``target``'s state_dict entries, by order and shape (names are
    ignored: foreign nets number their layers differently). Returns the new state_dict and the
    target entries left at their built values (the input Normalize, which --mean/--std set,
    and BatchNorm's ``num_batches_tracked`` when the file has none).

    A :class:`CheckpointError` names the first tensor whose shape does not fit, with both
    shapes, or the first tensor left over on either side.
    """
    from robustbench_mr.models.layers import Normalize

    state = target.state_dict()
    norm = {f"{n}.{b}" if n else b for n, m in target.named_modules() if isinstance(m, Normalize) for b, _ in m.named_buffers(recurse=False)}
    has_nbt = any(k.endswith("num_batches_tracked") for k, _ in weights.tensors)
    kept = [k for k in state if not has_nbt and k.endswith("num_batches_tracked")]
    with_norm = [k for k in state if k not in kept]
    without_norm = [k for k in with_norm if k not in norm]
    foreign = list(weights.tensors)

    def fits(names: list[str]) -> bool:
        return len(names) == len(foreign) and all(tuple(state[n].shape) == tuple(t.shape) for n, (_, t) in zip(names, foreign))

    names = with_norm if norm and fits(with_norm) else without_norm
    if names is without_norm:
        kept += [k for k in state if k in norm]
    p = weights.path
    for i, (n, (k, t)) in enumerate(zip(names, foreign)):
        if tuple(state[n].shape) != tuple(t.shape):
            raise CheckpointError(
                f"{p}: tensor #{i} {k!r} has shape {tuple(t.shape)} but {label} expects {tuple(state[n].shape)} for its "
                f"parameter {n!r}; pick the --arch the weights were trained with (mr-eval info {p} lists every shape)"
            )
    if len(foreign) != len(names):
        if len(foreign) > len(names):
            k, t = foreign[len(names)]
            extra = f"the file's tensor #{len(names)} {k!r} {tuple(t.shape)} and any after it have no place in {label}"
        else:
            n = names[len(foreign)]
            extra = f"{label}'s {n!r} {tuple(state[n].shape)} and any after it get no tensor"
        raise CheckpointError(f"{p}: {len(foreign)} tensors in the file, {len(names)} parameters/buffers in {label}: {extra}; "
                              f"pick the --arch the weights were trained with (mr-eval info {p} lists every shape)")
    new = dict(state)
    for n, (_, t) in zip(names, foreign):
        new[n] = t.detach().to(dtype=state[n].dtype).clone()
    return new, tuple(kept)


@dataclass(frozen=True, eq=False)
class ImportResult:
    """A foreign state_dict imported: the model (eval mode), its metadata and what was mapped."""

    model: nn.Module
    meta: CheckpointMetadata
    weights: ForeignWeights
    arch: ArchChoice
    kept: tuple[str, ...]  # target entries not taken from the file
    out: Path | None = None


def parse_shape(text: str) -> tuple[int, ...]:
    """``C,H,W`` (also ``1x28x28``) as a tuple of 3 positive integers."""
    parts = [s for s in re.split(r"[,x\s]+", text.strip()) if s]
    if len(parts) != 3 or not all(s.isdigit() and int(s) > 0 for s in parts):
        raise UserError(f"--input-shape {text!r}: expected C,H,W (three positive integers), e.g. 1,28,28")
    return tuple(int(s) for s in parts)


def _per_channel(name: str, values: Any, channels: int) -> tuple[float, ...]:
    v = tuple(float(x) for x in values)
    if len(v) == 1:
        v = v * channels
    if len(v) != channels:
        raise UserError(f"{name}: {len(v)} values for {channels} input channels; give one value or one per channel")
    return v


def import_state_dict(path: str | Path, arch: str, dataset: str, *, input_shape: tuple[int, ...] | None = None,
                      mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                      element: int | None = None) -> ImportResult:
    """Build ``arch`` for ``dataset`` and load the foreign state_dict in ``path`` into it.

    ``mean`` / ``std``: the input normalization the foreign net expects (default none: it
    takes [0,1] pixels, as Wong & Kolter's MNIST nets do); it becomes the model's first layer.
    """
    from robustbench_mr.checkpoint import CheckpointMetadata
    from robustbench_mr.data import dataset_info
    from robustbench_mr.models import build_model

    info = dataset_info(dataset)
    shape = tuple(input_shape) if input_shape is not None else info.input_shape
    if shape != info.input_shape:
        raise UserError(f"--input-shape {','.join(map(str, shape))}: the {dataset} images are {','.join(map(str, info.input_shape))}; "
                        "pass the dataset the model was trained on")
    c = shape[0]
    mean = _per_channel("--mean", mean if mean is not None else (0.0,), c)
    std = _per_channel("--std", std if std is not None else (1.0,), c)
    if not all(s > 0 for s in std):
        raise UserError(f"--std {','.join(map(str, std))}: must be positive")
    weights = read_state_dict(path, element=element)
    choice = resolve_arch(arch, weights, shape)
    meta = CheckpointMetadata(
        arch=choice.arch, arch_kwargs=dict(choice.kwargs), dataset=dataset, input_shape=shape, num_classes=choice.num_classes,
        mean=mean, std=std,
        imported_from={"file": str(Path(path).resolve()), "sha256": weights.sha256, "found": weights.where, "arch_spec": arch,
                       "tensors": len(weights.tensors)},
    )
    from robustbench_mr.checkpoint import validate_metadata

    validate_metadata(meta.to_dict(), f"--arch {arch!r}", how_to_fix="fix --arch, --dataset or --input-shape")
    try:
        model = build_model(choice.arch, input_shape=shape, num_classes=choice.num_classes, mean=list(mean), std=list(std), **choice.kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--arch {arch!r}: cannot build {choice.label}: {exc}") from None
    state, kept = map_state_dict(model, weights, choice.label)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - map_state_dict matched every shape already
        raise CheckpointError(f"{path}: does not load into {choice.label}: {str(exc).splitlines()[0][:200]}") from None
    return ImportResult(model.eval(), meta, weights, choice, kept)


def import_torch(path: str | Path, out: str | Path, arch: str, dataset: str, **kwargs: Any) -> ImportResult:
    """:func:`import_state_dict`, then write the checkpoint ``out`` with :func:`save_checkpoint`
    (which re-loads it and compares parameters and outputs before it replaces ``out``)."""
    from dataclasses import replace

    from robustbench_mr.checkpoint import save_checkpoint

    result = import_state_dict(path, arch, dataset, **kwargs)
    written = save_checkpoint(out, result.model, result.meta)
    return replace(result, out=written)
