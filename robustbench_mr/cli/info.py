"""``mr-eval info FILE``: print a checkpoint's metadata, an ONNX network's shapes, or a bare
state_dict's tensor names and shapes (what ``mr-eval import-torch --arch`` must match); a safe
way to inspect a file (weights-only loading, nothing in it runs)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a checkpoint's metadata (or an ONNX file's / a state_dict's shapes)", description=__doc__)
    p.add_argument("checkpoint", help="a .pt checkpoint, an .onnx file or a torch state_dict")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_mr.intake import describe_file

    d = describe_file(args.checkpoint)
    print(json.dumps(d, indent=2, sort_keys=True, default=str))
    return 0
