"""A small declarative layer spec, for models trained elsewhere (``mr-eval import-torch``).

``"conv(16,4,2,1) relu conv(32,4,2,1) relu flatten linear(100) relu linear(10)"`` is the
Wong & Kolter MNIST net. Tokens are separated by spaces (case does not matter):

=========================  ==============================================================
``conv(OUT,K[,S[,P]])``    Conv2d with OUT channels, a KxK kernel, stride S (1), padding P (0)
``linear(OUT)``            Linear on a flat input (put ``flatten`` after the convolutions)
``relu``                   ReLU
``flatten``                Flatten (C, H, W) -> C*H*W
``bn``                     BatchNorm2d on images, BatchNorm1d on vectors
=========================  ==============================================================

Input channels and features follow from the input shape. The model is
``nn.Sequential(Normalize(mean, std), *layers)`` on [0,1] pixels, like every architecture of
the registry, so a checkpoint stores only this string (plain data, never code) and the model
is rebuilt from it. Sizes are checked (and the parameter count bounded) before anything is
allocated, so a hostile string in a checkpoint cannot make the loader allocate without limit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

from torch import nn

from robustbench_mr.errors import UserError
from robustbench_mr.models.layers import Normalize

MAX_LAYERS = 64
MAX_WIDTH = 1 << 16  # channels or features of one layer
MAX_KERNEL = 64
MAX_PARAMS = 1 << 28  # 268M parameters: far above any net the exact verifier can handle
MAX_SPEC_CHARS = 2000

# name -> (min args, max args)
_ARITY = {"conv": (2, 4), "linear": (1, 1), "relu": (0, 0), "flatten": (0, 0), "bn": (0, 0)}
LAYER_KINDS = tuple(_ARITY)
_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\(([^()]*)\))?")
_EXAMPLE = "e.g. 'conv(16,4,2,1) relu conv(32,4,2,1) relu flatten linear(100) relu linear(10)'"


@dataclass(frozen=True)
class LayerSpec:
    """One token of a layer spec: its kind and integer arguments."""

    kind: str
    args: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind}({','.join(map(str, self.args))})" if self.args else self.kind


def _bad(spec: str, why: str) -> UserError:
    shown = spec if len(spec) <= 80 else spec[:77] + "..."
    return UserError(f"layer spec {shown!r}: {why}; {_EXAMPLE}")


def parse_layer_spec(spec: str) -> tuple[LayerSpec, ...]:
    """The tokens of ``spec``; a :class:`UserError` naming the first bad token otherwise."""
    if not isinstance(spec, str):
        raise UserError(f"layer spec must be a string, got {type(spec).__name__}")
    if len(spec) > MAX_SPEC_CHARS:
        raise _bad(spec, f"longer than {MAX_SPEC_CHARS} characters")
    out: list[LayerSpec] = []
    pos = 0
    text = spec.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _bad(spec, f"cannot read {text[pos:pos + 20]!r}")
        name, has_args, arg_text = m.group(1).lower(), m.group(2), m.group(3)
        if name not in _ARITY:
            raise _bad(spec, f"unknown layer {m.group(1)!r} (known: {', '.join(_ARITY)})")
        args: list[int] = []
        if has_args is not None and arg_text.strip():
            for a in arg_text.split(","):
                a = a.strip()
                if not re.fullmatch(r"\d{1,9}", a):
                    raise _bad(spec, f"{m.group(0).strip()}: argument {a!r} is not a non-negative integer")
                args.append(int(a))
        lo, hi = _ARITY[name]
        if not lo <= len(args) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise _bad(spec, f"{m.group(0).strip()} takes {want} argument{'s' if hi != 1 else ''}, got {len(args)}")
        out.append(LayerSpec(name, tuple(args)))
        pos = m.end()
        while pos < len(text) and text[pos] in " \t,;":
            pos += 1
    if not out:
        raise _bad(spec, "no layers")
    if len(out) > MAX_LAYERS:
        raise _bad(spec, f"{len(out)} layers; at most {MAX_LAYERS}")
    return tuple(out)


def normalized_spec(spec: str) -> str:
    """``spec`` in canonical form (lower case, one space between tokens, no spaces in arguments)."""
    return " ".join(map(str, parse_layer_spec(spec)))


def spec_output_shape(layers: Sequence[LayerSpec], input_shape: Sequence[int], spec: str = "") -> tuple[tuple[int, ...], int]:
    """(output shape, parameter count) of ``layers`` on inputs of ``input_shape`` (C, H, W);
    a :class:`UserError` naming the first layer that does not fit."""
    shape = tuple(int(v) for v in input_shape)
    spec = spec or " ".join(map(str, layers))
    params = 0
    for i, layer in enumerate(layers):
        where = f"layer {i + 1} ({layer}) on input {shape}"
        if layer.kind == "conv":
            if len(shape) != 3:
                raise _bad(spec, f"{where}: conv needs an image (C, H, W); it cannot follow flatten or linear")
            out_c, k = layer.args[0], layer.args[1]
            s = layer.args[2] if len(layer.args) > 2 else 1
            p = layer.args[3] if len(layer.args) > 3 else 0
            if not 1 <= out_c <= MAX_WIDTH or not 1 <= k <= MAX_KERNEL or s < 1 or p > MAX_KERNEL:
                raise _bad(spec, f"{where}: needs 1 <= OUT <= {MAX_WIDTH}, 1 <= K <= {MAX_KERNEL}, stride >= 1, padding <= {MAX_KERNEL}")
            h, w = ((d + 2 * p - k) // s + 1 for d in shape[1:])
            if h < 1 or w < 1:
                raise _bad(spec, f"{where}: the kernel is larger than the padded input")
            params += out_c * shape[0] * k * k + out_c
            shape = (out_c, h, w)
        elif layer.kind == "linear":
            if len(shape) != 1:
                raise _bad(spec, f"{where}: linear needs a flat input; put flatten before it")
            if not 1 <= layer.args[0] <= MAX_WIDTH:
                raise _bad(spec, f"{where}: needs 1 <= OUT <= {MAX_WIDTH}")
            params += shape[0] * layer.args[0] + layer.args[0]
            shape = (layer.args[0],)
        elif layer.kind == "flatten":
            shape = (prod(shape),)
        elif layer.kind == "bn":
            if len(shape) not in (1, 3):
                raise _bad(spec, f"{where}: bn needs an image or a vector")
            params += 2 * shape[0]
        if params > MAX_PARAMS:
            raise _bad(spec, f"more than {MAX_PARAMS} parameters by {where}")
    return shape, params


def layer_net(
    input_shape: Sequence[int],
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    spec: str,
) -> nn.Sequential:
    """The model described by ``spec`` (see the module docstring), Normalize first."""
    layers = parse_layer_spec(spec)
    shape, _ = spec_output_shape(layers, input_shape, spec)
    if shape != (int(num_classes),):
        raise _bad(spec, f"the output has shape {shape}, expected ({int(num_classes)},) logits: end with linear({int(num_classes)})")
    c = int(input_shape[0])
    mean = list(mean) if mean is not None else [0.0] * c
    std = list(std) if std is not None else [1.0] * c
    modules: list[nn.Module] = [Normalize(mean, std)]
    shape = tuple(int(v) for v in input_shape)
    for layer in layers:
        if layer.kind == "conv":
            out_c, k = layer.args[0], layer.args[1]
            s = layer.args[2] if len(layer.args) > 2 else 1
            p = layer.args[3] if len(layer.args) > 3 else 0
            modules.append(nn.Conv2d(shape[0], out_c, k, stride=s, padding=p))
            shape = (out_c, *(((d + 2 * p - k) // s + 1) for d in shape[1:]))
        elif layer.kind == "linear":
            modules.append(nn.Linear(shape[0], layer.args[0]))
            shape = (layer.args[0],)
        elif layer.kind == "relu":
            modules.append(nn.ReLU())
        elif layer.kind == "flatten":
            modules.append(nn.Flatten())
            shape = (prod(shape),)
        elif layer.kind == "bn":
            modules.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
    return nn.Sequential(*modules)
