"""The verifier's network form: a chain of affine maps and ReLUs in float64.

``Network.layers`` alternates ``Affine`` and ``ReLU`` and starts and ends with an
``Affine``; consecutive affine maps (Normalize, Flatten, BatchNorm, Conv followed by
Linear without ReLU between...) are composed into one. Inputs are flat vectors in the
order of ``input_shape`` (C, H, W row-major, as torch flattens). Both the torch converter
(``from_torch``) and the ONNX importer (``verifiers/form/chain_from_onnx.py``) produce this form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import numpy as np


@dataclass(frozen=True, eq=False)
class Affine:
    """y = weight @ x + bias, weight dense (out, in) float64."""

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weight, dtype=np.float64)
        b = np.asarray(self.bias, dtype=np.float64).reshape(-1)
        if w.ndim != 2 or b.shape[0] != w.shape[0]:
            raise ValueError(f"affine weight {w.shape} and bias {b.shape} do not match")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def __repr__(self) -> str:
        return f"Affine({self.in_features} -> {self.out_features})"

    def then(self, other: "Affine") -> "Affine":
        """The composition other(self(x))."""
        return Affine(other.weight @ self.weight, other.weight @ self.bias + other.bias)


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True, eq=False)
class Network:
    input_shape: tuple[int, ...]
    layers: tuple[Affine | ReLU, ...]
    source: str = field(default="")  # where it came from, for messages

    def __post_init__(self) -> None:
        if not self.layers or not isinstance(self.layers[0], Affine) or not isinstance(self.layers[-1], Affine):
            raise ValueError("a Network must start and end with an Affine layer")
        for a, b in zip(self.layers, self.layers[1:]):
            if type(a) is type(b):
                raise ValueError("Network layers must alternate Affine and ReLU (compose affine maps first)")
        if self.layers[0].in_features != prod(self.input_shape):
            raise ValueError(f"first layer takes {self.layers[0].in_features} inputs, shape {self.input_shape} has {prod(self.input_shape)}")

    def __repr__(self) -> str:
        """Shapes, not weights: ``Network(input_shape=(1, 28, 28), 784 -> relu 100 -> 10, source='m.onnx')``."""
        widths = " -> ".join(f"relu {w}" for w in self.relu_widths)
        body = f"{self.num_inputs} -> {widths + ' -> ' if widths else ''}{self.num_outputs}"
        src = f", source={self.source!r}" if self.source else ""
        return f"Network(input_shape={tuple(self.input_shape)}, {body}{src})"

    @property
    def affines(self) -> list[Affine]:
        return [l for l in self.layers if isinstance(l, Affine)]

    @property
    def num_inputs(self) -> int:
        return prod(self.input_shape)

    @property
    def num_outputs(self) -> int:
        return self.layers[-1].out_features

    @property
    def relu_widths(self) -> list[int]:
        """Number of ReLUs in each hidden layer."""
        return [a.out_features for a in self.affines[:-1]]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Float64 forward pass on flat inputs of shape (N, num_inputs) or (num_inputs,)."""
        z = np.asarray(x, dtype=np.float64)
        single = z.ndim == 1
        z = z.reshape(-1, self.num_inputs)
        for layer in self.layers:
            z = z @ layer.weight.T + layer.bias if isinstance(layer, Affine) else np.maximum(z, 0.0)
        return z[0] if single else z


def chain(input_shape: tuple[int, ...], parts: list[Affine | ReLU], source: str = "") -> Network:
    """Build a Network from affine maps and ReLUs in order, composing adjacent affines.

    An identity affine is inserted where the chain starts or ends with a ReLU, and
    ReLU-ReLU collapses to one ReLU (ReLU is idempotent).
    """
    out: list[Affine | ReLU] = []
    n = prod(input_shape)
    for part in parts:
        if isinstance(part, Affine):
            if out and isinstance(out[-1], Affine):
                out[-1] = out[-1].then(part)
            else:
                out.append(part)
        else:
            if not out:
                out.append(Affine(np.eye(n), np.zeros(n)))
            if not isinstance(out[-1], ReLU):
                out.append(ReLU())
    if not out:
        out.append(Affine(np.eye(n), np.zeros(n)))
    if isinstance(out[-1], ReLU):
        m = out[-2].out_features
        out.append(Affine(np.eye(m), np.zeros(m)))
    return Network(tuple(input_shape), tuple(out), source)
