"""``mr-eval export`` and ``mr-eval export-vnnlib``: our models and properties in the formats
other verifiers read (ONNX and VNN-LIB), so anyone can run them on exactly our problems.

``export ckpt.pt model.onnx`` writes the model (input: [0,1] pixels of shape (1, C, H, W);
normalization is inside) and checks onnxruntime against torch on random inputs.

``export-vnnlib ckpt.pt --eps 8/255 --index 0..99 --dir props/`` writes, for each test image
of the checkpoint's dataset (correctly classified or not: the comment line of each file says
which), the L-inf robustness property around it (box clipped to [0,1], label = the true
label; sat = not robust), plus ``model.onnx`` and an ``instances.csv`` so that the folder is
a VNN-COMP benchmark (``mr-eval vnncomp props/`` runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from robustbench_mr.cli.common import eps_arg, positive_float
from robustbench_mr.errors import UserError


def parse_indices(text: str) -> list[int]:
    """``0..99`` (inclusive), ``5``, ``1,3,7`` and mixtures like ``0..9,20``; sorted, unique."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise UserError(f"--index {text!r} has an empty item; write e.g. 0..99, 5 or 1,3,7")
        try:
            if ".." in part:
                a, b = part.split("..", 1)
                lo, hi = int(a), int(b)
                if lo < 0 or hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                v = int(part)
                if v < 0:
                    raise ValueError
                out.add(v)
        except ValueError:
            raise UserError(f"--index item {part!r} is not an index or range; write e.g. 0..99 (inclusive), 5 or 1,3,7") from None
    return sorted(out)


def _index_arg(text: str) -> list[int]:
    try:
        return parse_indices(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint's model as ONNX", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .pt file written by mr-train")
    p.add_argument("onnx", help="where to write the .onnx file")
    p.set_defaults(handler=run_export)

    q = sub.add_parser("export-vnnlib", help="write local-robustness properties as VNN-LIB (plus model.onnx, instances.csv)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("checkpoint", help="a .pt checkpoint (mr-train, mr-eval import-torch) or an .onnx file")
    q.add_argument("--dataset", default=None, help="default: the checkpoint's dataset (ONNX: the one its input shape fits)")
    q.add_argument("--eps", type=eps_arg, required=True, help="L-inf radius in pixel units, e.g. 8/255")
    q.add_argument("--index", type=_index_arg, default=[0], help="test-set indices: 0..99 (inclusive), 5 or 1,3,7 (default 0)")
    q.add_argument("--dir", required=True, help="output folder")
    q.add_argument("--data-dir", help="dataset folder (mnist, cifar10; digits is built in)")
    q.add_argument("--timeout", type=positive_float, default=300.0, help="timeout written to instances.csv (default 300)")
    q.set_defaults(handler=run_export_vnnlib)


def _export_checked(checkpoint: str, onnx_path: Path, dataset: str | None = None) -> tuple[object, object, float]:
    """Export (an ONNX input: copy) and check onnxruntime against torch on random pixel inputs;
    returns (model, the LoadedModel, max diff)."""
    import shutil

    import torch

    from robustbench_mr.intake import ModelKind, load_model
    from robustbench_mr.verifiers.spec.export import export_onnx
    from robustbench_mr.verifiers.form.chain_from_onnx import onnxruntime_forward

    meta = load_model(checkpoint, dataset=dataset)
    model = meta.model
    if meta.kind is ModelKind.ONNX:  # the file itself is the exchange format: copy it, check our import of it
        if Path(checkpoint).resolve() != onnx_path.resolve():
            onnx_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(checkpoint, onnx_path)
    else:
        export_onnx(model, tuple(meta.input_shape), onnx_path)
    x = torch.rand((4, *meta.input_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y_torch = model(x).double().numpy()
    y_ort = onnxruntime_forward(onnx_path, x.reshape(4, -1).double().numpy())
    diff = float(np.max(np.abs(y_ort - y_torch)))
    scale = max(1.0, float(np.max(np.abs(y_torch))))
    if diff > 1e-4 * scale:
        raise UserError(f"{onnx_path}: onnxruntime disagrees with torch by {diff:.3g} on random inputs; the export is not faithful")
    return model, meta, diff


def run_export(args: argparse.Namespace) -> int:
    out = Path(args.onnx)
    _, meta, diff = _export_checked(args.checkpoint, out)
    print(f"wrote {out} (input [1, {', '.join(map(str, meta.input_shape))}] pixels in [0,1]; "
          f"onnxruntime vs torch max |diff| {diff:.2g})")
    return 0


def run_export_vnnlib(args: argparse.Namespace) -> int:
    import torch

    from robustbench_mr import load_dataset
    from robustbench_mr.utils.eps import format_eps
    from robustbench_mr.verifiers.spec.export import write_robustness_vnnlib

    out_dir = Path(args.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, meta, _ = _export_checked(args.checkpoint, out_dir / "model.onnx", args.dataset)
    x, y = load_dataset(meta.dataset, "test", args.data_dir, False)
    x = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    bad = [i for i in args.index if i >= len(x)]
    if bad:
        raise UserError(f"--index {bad[0]} is past the end of the {meta.dataset} test split ({len(x)} images, 0..{len(x) - 1})")
    idx = np.array(args.index)
    with torch.no_grad():
        pred = model(torch.as_tensor(x[idx])).argmax(1).numpy()
    eps_label = format_eps(args.eps).replace("/", "_")
    rows = []
    for k, i in enumerate(idx):
        flat = x[i].reshape(-1).astype(np.float64)
        label, p = int(y[i]), int(pred[k])
        name = f"prop_{i}_eps{eps_label}.vnnlib"
        comment = (f"{meta.dataset} test image {i}, label {label}, clean prediction {p} "
                   f"({'correct' if p == label else 'MISCLASSIFIED: sat at any eps'}), Linf eps {format_eps(args.eps)} = {args.eps!r}\n"
                   f"checkpoint sha256 {meta.sha256}")
        write_robustness_vnnlib(out_dir / name, np.clip(flat - args.eps, 0.0, 1.0), np.clip(flat + args.eps, 0.0, 1.0), label, meta.num_classes, comment)
        rows.append(f"model.onnx,{name},{args.timeout:g}")
    (out_dir / "instances.csv").write_text("\n".join(rows) + "\n")
    wrong = int(np.sum(pred != y[idx]))
    print(f"wrote {len(rows)} properties, model.onnx and instances.csv to {out_dir} ({wrong} of the images misclassified)", file=sys.stdout)
    return 0
