"""``mr-eval import-torch STATE.pth --arch SPEC --dataset NAME -o OUT.pt``: a torch state_dict
trained elsewhere becomes one of our checkpoints (then ``mr-eval verify|attack|info OUT.pt``).

STATE.pth is read with ``torch.load(..., weights_only=True)`` (a pickle that would run code is
refused; nothing in it runs): a bare state_dict, one under 'state_dict', 'model_state_dict',
'model', 'net' or 'network', or a list of them (--element picks one; default 0).

SPEC is an architecture of the registry (small, mlp, large; the number of classes and
``hidden`` are read from the tensor shapes, or give them: ``small(hidden=100)``), or a layer
spec such as "conv(16,4,2,1) relu conv(32,4,2,1) relu flatten linear(100) relu linear(10)"
(conv(OUT,K[,STRIDE[,PAD]]), linear(OUT), relu, flatten, bn). Tensors are matched to the
architecture's parameters by order and shape (names are ignored); ``mr-eval info STATE.pth``
lists the file's tensors. The input normalization the net expects is --mean/--std (default
none: it takes [0,1] pixels). The checkpoint is re-loaded and compared before it is kept, and
its metadata records the source file, its sha256 and SPEC.
"""

from __future__ import annotations

import argparse

from robustbench_mr.cli.common import nonneg_int

EPILOG = """\
example (Wong & Kolter 2018, MNIST, trained at eps 0.1):
  mr-eval import-torch mnist_wk2017_0_1.pth --arch small --dataset mnist -o wk.pt
  mr-eval verify wk.pt --eps 0.1 --n 100 --data-dir data/mnist
"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas, e.g. 0.485,0.456,0.406") from None
    if not values or not all(v == v and abs(v) != float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected finite numbers separated by commas")
    return values


def _shape(text: str) -> tuple[int, ...]:
    from robustbench_mr.errors import UserError
    from robustbench_mr.intake import parse_shape

    try:
        return parse_shape(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-torch", help="turn a foreign torch state_dict into a checkpoint", description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("state", help="the .pth / .pt file holding the state_dict")
    p.add_argument("--arch", required=True, help="small, mlp, large (optionally with arguments: small(hidden=100)) or a layer spec")
    p.add_argument("--dataset", required=True, help="the data set the net was trained on: digits, mnist or cifar10")
    p.add_argument("--input-shape", type=_shape, default=None, help="C,H,W (default: the dataset's; must match it)")
    p.add_argument("-o", "--out", required=True, help="where to write the checkpoint (.pt)")
    p.add_argument("--element", type=nonneg_int, default=None, help="which state_dict of a list (default 0)")
    p.add_argument("--mean", type=_floats, default=None, help="per-channel input mean the net expects (default 0)")
    p.add_argument("--std", type=_floats, default=None, help="per-channel input std the net expects (default 1)")
    p.add_argument("--data-dir", default=None, help="dataset folder: when given (or for digits), print the clean accuracy of the first 100 test inputs")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_mr.intake import import_torch

    r = import_torch(args.state, args.out, args.arch, args.dataset, input_shape=args.input_shape, mean=args.mean, std=args.std,
                     element=args.element)
    kept = f"; kept as built: {', '.join(r.kept)}" if r.kept else ""
    print(f"wrote {r.out}: {r.arch.label} on {args.dataset} {'x'.join(map(str, r.meta.input_shape))}, {r.meta.num_classes} classes; "
          f"{len(r.weights.tensors)} tensors from {args.state} ({r.weights.where}, sha256 {r.weights.sha256[:12]}){kept}")
    if args.dataset == "digits" or args.data_dir:
        import torch

        from robustbench_mr import load_dataset

        x, y = load_dataset(args.dataset, "test", args.data_dir, False)
        with torch.no_grad():
            acc = float((r.model(x[:100]).argmax(1) == y[:100]).float().mean())
        print(f"clean accuracy on the first {min(100, len(y))} {args.dataset} test inputs: {acc:.2%}")
    return 0
