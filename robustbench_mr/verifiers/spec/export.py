"""Writing our problems in the exchange formats other verifiers read.

- :func:`export_onnx`: a torch model -> ONNX (the legacy TorchScript exporter,
  ``dynamo=False``: the dynamo exporter needs ``onnxscript``, which we do not depend on).
  The model takes [0,1] pixels of shape (1, *input_shape): normalization is inside it.
- :func:`robustness_vnnlib` / :func:`write_robustness_vnnlib`: a local-robustness property
  in VNN-COMP's form (input box, then ``(assert (or (and (>= Y_j Y_label)) ...))``: the
  unsafe set of :func:`property.robustness_property`, ties counted as not robust).
- :func:`counterexample_text`: VNN-COMP's witness format ``((X_0 v) ... (Y_0 v) ...)``.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from robustbench_mr.errors import UserError

OPSET = 17


def export_onnx(model, input_shape: tuple[int, ...], path: str | Path, opset: int = OPSET) -> Path:  # noqa: ANN001 - torch.nn.Module
    """Export ``model`` (eval mode, CPU) to ``path`` with a fixed batch of 1.

    Input ``input`` of shape (1, *input_shape), output ``output`` of shape (1, classes). The
    file is written to a temporary name and renamed, so a failed export leaves nothing.
    """
    import os

    import torch

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    dummy = torch.zeros((1, *input_shape), dtype=torch.float32)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model.cpu(),
                (dummy,),
                str(tmp),
                input_names=["input"],
                output_names=["output"],
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
        model.train(was_training)
    return p


def _num(v: float) -> str:
    """A float written so that reading it back gives the same float64 (repr round-trips)."""
    return repr(float(v))


def robustness_vnnlib(lower: np.ndarray, upper: np.ndarray, label: int, num_classes: int, comment: str = "") -> str:
    """VNN-LIB text: inputs in [lower, upper] (flat), unsafe iff some class j != label has
    y_j >= y_label. ``sat`` = not robust, ``unsat`` = robust."""
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lo.shape != hi.shape or np.any(lo > hi):
        raise UserError("input box: lower and upper differ in size or lower > upper")
    if not 0 <= label < num_classes:
        raise UserError(f"label {label} is not in 0..{num_classes - 1}")
    out = []
    for line in comment.splitlines():
        out.append(f"; {line}")
    out += [f"(declare-const X_{i} Real)" for i in range(lo.size)]
    out.append("")
    out += [f"(declare-const Y_{j} Real)" for j in range(num_classes)]
    out.append("")
    out.append("; input box")
    for i in range(lo.size):
        out.append(f"(assert (<= X_{i} {_num(hi[i])}))")
        out.append(f"(assert (>= X_{i} {_num(lo[i])}))")
    out.append("")
    out.append(f"; unsafe: some other class scores at least as high as class {label}")
    out.append("(assert (or")
    for j in range(num_classes):
        if j != label:
            out.append(f"    (and (>= Y_{j} Y_{label}))")
    out.append("))")
    return "\n".join(out) + "\n"


def write_robustness_vnnlib(path: str | Path, lower: np.ndarray, upper: np.ndarray, label: int, num_classes: int, comment: str = "") -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(robustness_vnnlib(lower, upper, label, num_classes, comment))
    return p


def counterexample_text(x: np.ndarray, y: np.ndarray) -> str:
    """VNN-COMP's witness: ``((X_0 v)\\n (X_1 v)\\n ... (Y_0 v)\\n ...)``."""
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    items = [f"(X_{i} {_num(v)})" for i, v in enumerate(xs)] + [f"(Y_{j} {_num(v)})" for j, v in enumerate(ys)]
    return "(" + "\n ".join(items) + ")\n"


def check_output_path(path: str | Path, what: str = "--out") -> Path:
    """Refuse, before any work, an output file that cannot be written: a directory, a missing
    or unwritable parent folder, an existing file without write permission."""
    import os

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {p}: is a directory; give a file name such as {p / 'result.txt'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{what} {p}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {p}: the folder {parent} is not writable; choose another location")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{what} {p}: the file exists and is not writable; remove it or choose another name")
    return p


def write_text_safely(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a fresh temporary file in the same folder and an atomic
    rename: a symbolic link planted at ``path`` is replaced, never followed (no file outside
    the folder is touched), and a reader never sees a half-written file."""
    import os
    import tempfile

    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)  # O_EXCL: never an existing file or link
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, p)  # replaces a link at p itself, not its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


def write_result(path: str | Path, status: str, x: np.ndarray | None = None, y: np.ndarray | None = None) -> Path:
    """A VNN-COMP result file: the status line, then the witness when ``sat`` (written safely:
    ``write_text_safely``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = status + "\n"
    if status == "sat" and x is not None and y is not None:
        text += counterexample_text(x, y)
    return write_text_safely(p, text)
